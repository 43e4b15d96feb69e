// CPU reference of causal_attention.cu's launchers, on the host device's memory: the SAME tiles, skips and
// online algorithm as the CUDA kernels, as plain loops (one "block" at a time, one "lane" per key of a tile),
// so the CI tests against the composite validate the algorithm the GPU runs, not just the maths.
// causal_attention.cu's header has the formulas (scores, online rescale, gradients).
import type { HostDevice } from '../../host_device.ts';
import { headGateHost } from '../head_gate/host.ts';
import { ATTENTION_SCORE } from './causal_attention.ts';
import { ATTENTION_STATS, type CausalAttentionNative } from './kernel.ts';

const BLOCK_Q = 16;           // queries per block (forward, dq, the dk/dv kernel's inner tile)
const BLOCK_K = 32;           // keys per tile (one per lane)
const SOFTPICK_EPS = 1e-6;
const SOFTPICK_FLOOR = -60;

export interface AttentionArgs {
  q: Float32Array; k: Float32Array; v: Float32Array; docIds: Int32Array;
  B: number; T: number; H: number; Hk: number; h: number; window: number; scale: number; score: number;
}

function checkArgs(a: AttentionArgs): number {
  if (a.h < 1 || a.h > 128 || a.H < 1 || a.Hk < 1 || a.H % a.Hk !== 0 || a.window < 1 || a.T >= 2 ** 24 ||
    !Object.values(ATTENTION_SCORE).includes(a.score as 0)) {
    throw new Error(`host device: attention arguments out of range (H ${a.H}, Hk ${a.Hk}, h ${a.h}, window ${a.window}, score ${a.score})`);
  }
  return Math.min(a.window, a.T);
}

/** The visible-key test of every kernel: causal, within the window, same document. */
function visible(i: number, j: number, jEnd: number, window: number, doc: Int32Array, docBase: number): boolean {
  return j < jEnd && j <= i && i - j < window && doc[docBase + j] === doc[docBase + i];
}

function initialMax(score: number): number {
  return score === ATTENTION_SCORE.softmax ? -Infinity : score === ATTENTION_SCORE.softmax1 ? 0 : SOFTPICK_FLOOR;
}

function probability(score: number, s: number, m: number, den: number): number {
  if (score === ATTENTION_SCORE.softpick) return Math.max(Math.exp(s - m) - Math.exp(-m), 0) / den;
  return Math.exp(s - m) / den;
}

function scoreGrad(score: number, s: number, g: number, m: number, den: number, D: number, isArgmax: boolean): number {
  if (score === ATTENTION_SCORE.softpick) {
    const e = Math.exp(s - m), d = e - Math.exp(-m);
    const ds = e / den * (d > 0 ? g - D : D);  // g·[d>0] − sgn(d)·D
    return isArgmax ? ds - D * SOFTPICK_EPS / den : ds;
  }
  return Math.exp(s - m) / den * (g - D);
}

const dot = (x: Float32Array, xOff: number, y: Float32Array, yOff: number, n: number) => {
  let acc = 0;
  for (let c = 0; c < n; c++) acc += x[xOff + c] * y[yOff + c];
  return acc;
};

/** The forward kernel: o (when given) and the per-row stats m, den, argmax (when given). */
export function attentionForward(a: AttentionArgs, o: Float32Array | null, stats: Float32Array | null): void {
  const window = checkArgs(a);
  const { q, k, v, docIds, B, T, H, Hk, h, scale, score } = a;
  const group = H / Hk;
  const m = new Float64Array(BLOCK_Q), l = new Float64Array(BLOCK_Q), argmax = new Int32Array(BLOCK_Q);
  const acc = new Float64Array(BLOCK_Q * h), s = new Float64Array(BLOCK_K), p = new Float64Array(BLOCK_K);
  const vis = new Uint8Array(BLOCK_K);
  for (let b = 0; b < B; b++) for (let head = 0; head < H; head++) for (let q0 = 0; q0 < T; q0 += BLOCK_Q) {
    const kvHead = Math.floor(head / group), docBase = b * T, q1 = Math.min(q0 + BLOCK_Q, T);
    m.fill(initialMax(score)); l.fill(0); argmax.fill(-1); acc.fill(0);
    const firstDoc = docIds[docBase + q0];
    for (let k0 = Math.floor(Math.max(0, q0 - window + 1) / BLOCK_K) * BLOCK_K; k0 < q1; k0 += BLOCK_K) {
      const k1 = Math.min(k0 + BLOCK_K, T);
      if (docIds[docBase + k1 - 1] < firstDoc) continue;  // the whole tile is in earlier documents
      for (let r = 0; r < q1 - q0; r++) {
        const i = q0 + r, qOff = ((b * T + i) * H + head) * h;
        let tileMax = -Infinity;
        for (let lane = 0; lane < BLOCK_K; lane++) {
          const j = k0 + lane;
          vis[lane] = visible(i, j, k1, window, docIds, docBase) ? 1 : 0;
          s[lane] = vis[lane] ? dot(q, qOff, k, ((b * T + j) * Hk + kvHead) * h, h) * scale : -Infinity;
          tileMax = Math.max(tileMax, s[lane]);
        }
        const mNew = Math.max(m[r], tileMax);
        if (tileMax > m[r]) argmax[r] = k0 + s.findIndex((x, lane) => vis[lane] === 1 && x === tileMax);
        const alpha = mNew === m[r] ? 1 : Math.exp(m[r] - mNew);
        let termSum = 0;
        for (let lane = 0; lane < BLOCK_K; lane++) {
          p[lane] = 0;
          if (!vis[lane]) continue;
          if (score === ATTENTION_SCORE.softpick) {
            const d = Math.exp(s[lane] - mNew) - Math.exp(-mNew);
            p[lane] = Math.max(d, 0);
            termSum += Math.abs(d);
          } else {
            p[lane] = Math.exp(s[lane] - mNew);
            termSum += p[lane];
          }
        }
        l[r] = l[r] * alpha + termSum;
        m[r] = mNew;
        if (o == null) continue;
        for (let c = 0; c < h; c++) acc[r * h + c] *= alpha;
        for (let lane = 0; lane < k1 - k0; lane++) {
          if (p[lane] === 0) continue;
          const vOff = ((b * T + k0 + lane) * Hk + kvHead) * h;
          for (let c = 0; c < h; c++) acc[r * h + c] += p[lane] * v[vOff + c];
        }
      }
    }
    for (let r = 0; r < q1 - q0; r++) {
      const den = score === ATTENTION_SCORE.softmax1 ? l[r] + Math.exp(-m[r])
        : score === ATTENTION_SCORE.softpick ? l[r] + SOFTPICK_EPS : l[r];
      const row = (b * T + q0 + r) * H + head;
      if (stats != null) {
        stats[row * ATTENTION_STATS] = m[r];
        stats[row * ATTENTION_STATS + 1] = den;
        stats[row * ATTENTION_STATS + 2] = argmax[r];
      }
      if (o != null) {
        const inv = den > 0 ? 1 / den : 0;  // den = 0 only for a row that sees no key
        for (let c = 0; c < h; c++) o[row * h + c] = acc[r * h + c] * inv;
      }
    }
  }
}

/** The backward: statistics pass unless statsReady, then the dq kernel, then the dk/dv kernel; dvAccumulated (v's
 * gradient so far) added to dv as a float32 Add would. */
export function attentionBackward(a: AttentionArgs, o: Float32Array, dO: Float32Array, stats: Float32Array, statsReady: boolean,
  dq: Float32Array, dk: Float32Array, dv: Float32Array, dvAccumulated: Float32Array | null = null): void {
  const window = checkArgs(a);
  if (!statsReady) attentionForward(a, null, stats);
  const { q, k, v, docIds, B, T, H, Hk, h, scale, score } = a;
  const group = H / Hk;
  const rowStats = (row: number) => ({
    m: stats[row * ATTENTION_STATS], den: stats[row * ATTENTION_STATS + 1], argmax: stats[row * ATTENTION_STATS + 2],
    D: dot(dO, row * h, o, row * h, h),
  });

  // dq: query blocks over key tiles
  const accQ = new Float64Array(h);
  for (let b = 0; b < B; b++) for (let head = 0; head < H; head++) for (let q0 = 0; q0 < T; q0 += BLOCK_Q) {
    const kvHead = Math.floor(head / group), docBase = b * T, q1 = Math.min(q0 + BLOCK_Q, T);
    const firstDoc = docIds[docBase + q0];
    for (let i = q0; i < q1; i++) {
      const row = (b * T + i) * H + head, st = rowStats(row);
      accQ.fill(0);
      for (let k0 = Math.floor(Math.max(0, q0 - window + 1) / BLOCK_K) * BLOCK_K; k0 < q1; k0 += BLOCK_K) {
        const k1 = Math.min(k0 + BLOCK_K, T);
        if (docIds[docBase + k1 - 1] < firstDoc) continue;
        for (let j = k0; j < k1; j++) {
          if (!visible(i, j, k1, window, docIds, docBase)) continue;
          const kOff = ((b * T + j) * Hk + kvHead) * h;
          const sc = dot(q, row * h, k, kOff, h) * scale, g = dot(dO, row * h, v, kOff, h);
          const ds = scoreGrad(score, sc, g, st.m, st.den, st.D, j === st.argmax);
          for (let c = 0; c < h; c++) accQ[c] += ds * k[kOff + c];
        }
      }
      for (let c = 0; c < h; c++) dq[row * h + c] = accQ[c] * scale;
    }
  }

  // dk, dv: key tiles over the group's query heads and their query blocks
  const accK = new Float64Array(BLOCK_K * h), accV = new Float64Array(BLOCK_K * h);
  for (let b = 0; b < B; b++) for (let kvHead = 0; kvHead < Hk; kvHead++) for (let k0 = 0; k0 < T; k0 += BLOCK_K) {
    const docBase = b * T, k1 = Math.min(k0 + BLOCK_K, T), qEnd = Math.min(T, k1 - 1 + window);
    const lastDoc = docIds[docBase + k1 - 1];
    accK.fill(0); accV.fill(0);
    for (let head = kvHead * group; head < (kvHead + 1) * group; head++) {
      for (let q0 = Math.floor(k0 / BLOCK_Q) * BLOCK_Q; q0 < qEnd; q0 += BLOCK_Q) {
        if (docIds[docBase + q0] > lastDoc) break;  // this and later query blocks are in later documents
        for (let i = q0; i < Math.min(q0 + BLOCK_Q, T); i++) {
          const row = (b * T + i) * H + head, st = rowStats(row);
          for (let j = k0; j < k1; j++) {
            if (!visible(i, j, k1, window, docIds, docBase)) continue;
            const kOff = ((b * T + j) * Hk + kvHead) * h;
            const sc = dot(q, row * h, k, kOff, h) * scale, g = dot(dO, row * h, v, kOff, h);
            const p = probability(score, sc, st.m, st.den);
            const ds = scoreGrad(score, sc, g, st.m, st.den, st.D, j === st.argmax);
            for (let c = 0; c < h; c++) {
              accV[(j - k0) * h + c] += p * dO[row * h + c];
              accK[(j - k0) * h + c] += ds * q[row * h + c];
            }
          }
        }
      }
    }
    for (let j = k0; j < k1; j++) {
      const kOff = ((b * T + j) * Hk + kvHead) * h;
      for (let c = 0; c < h; c++) {
        dk[kOff + c] = accK[(j - k0) * h + c] * scale;
        const grad = Math.fround(accV[(j - k0) * h + c]);
        dv[kOff + c] = dvAccumulated ? dvAccumulated[kOff + c] + grad : grad;  // rounded once to float32: the Add's value
      }
    }
  }
}

// The reference is exact. Its bf16 entries (the GPU's tensor-core kernels) read q, k, v and dO16 as the bf16 values
// they are and compute exactly from there, o rounded to bf16 once where oBf16 (D from dO16 and o as stored, as the
// GPU takes it, or as the gate's backward wrote it: the same value); the gated output is head_gate's reference on o
// as stored, as the GPU's epilogue computes HeadGate's maths; delta is unused.
export function causalAttentionHost(mem: HostDevice): CausalAttentionNative {
  const args = (floats: (ptr: number, n: number) => Float32Array, q: number, k: number, v: number, docIds: number, B: number,
    T: number, H: number, Hk: number, h: number, window: number, scale: number, score: number): AttentionArgs => ({
    q: floats(q, B * T * H * h), k: floats(k, B * T * Hk * h), v: floats(v, B * T * Hk * h),
    docIds: mem.ints(docIds, B * T), B, T, H, Hk, h, window, scale, score,
  });
  const float32 = (ptr: number, n: number) => mem.floats(ptr, n), bf16 = (ptr: number, n: number) => mem.bf16Floats(ptr, n);
  const forward = (a: AttentionArgs, o: number, oBf16: boolean, stats: number) => {
    const n = a.B * a.T * a.H, ov = mem.output(o, n * a.h, oBf16);
    attentionForward(a, ov, stats === 0 ? null : mem.floats(stats, n * ATTENTION_STATS));
    mem.flush(o, ov, oBf16);
  };
  const backward = (a: AttentionArgs, o: number, oBf16: boolean, dO: Float32Array, stats: number, statsReady: boolean, dq: number,
    dk: number, dv: number, kvBf16: boolean, dvAccumulated: number) => {
    const nq = a.B * a.T * a.H, nk = a.B * a.T * a.Hk * a.h;
    if (kvBf16 && dvAccumulated !== 0) throw new Error('host device: attentionGradBf16 takes kvBf16 without dvAccumulated');
    const dkv = mem.output(dk, nk, kvBf16), dvv = mem.output(dv, nk, kvBf16);
    attentionBackward(a, mem.input(o, nq * a.h, oBf16), dO, mem.floats(stats, nq * ATTENTION_STATS), statsReady, mem.floats(dq, nq * a.h),
      dkv, dvv, dvAccumulated === 0 ? null : mem.floats(dvAccumulated, nk));
    mem.flush(dk, dkv, kvBf16);
    mem.flush(dv, dvv, kvBf16);
  };
  return {
    attention(q, k, v, docIds, o, stats, B, T, H, Hk, h, window, scale, score) {
      if (B * T > 0) forward(args(float32, q, k, v, docIds, B, T, H, Hk, h, window, scale, score), o, false, stats);
    },
    attentionGrad(q, k, v, docIds, o, dO, stats, statsReady, dq, dk, dv, dvAccumulated, B, T, H, Hk, h, window, scale, score) {
      if (B * T === 0) return;
      backward(args(float32, q, k, v, docIds, B, T, H, Hk, h, window, scale, score), o, false, mem.floats(dO, B * T * H * h),
        stats, statsReady, dq, dk, dv, false, dvAccumulated);
    },
    attentionBf16(q, k, v, docIds, o, oBf16, stats, gate, y, B, T, H, Hk, h, window, scale, score) {
      if (B * T === 0) return;
      if ((gate === 0) !== (y === 0)) throw new Error('host device: attentionBf16 takes gate and y both or neither');
      forward(args(bf16, q, k, v, docIds, B, T, H, Hk, h, window, scale, score), o, oBf16, stats);
      if (gate !== 0) headGateHost(mem).headGate(o, oBf16, gate, y, true, B * T * H, h);
    },
    attentionGradBf16(q, k, v, docIds, o, oBf16, dO16, stats, _delta, _deltaReady, dq, dk, dv, kvBf16, dvAccumulated, B, T, H,
      Hk, h, window, scale, score) {
      if (B * T === 0) return;
      backward(args(bf16, q, k, v, docIds, B, T, H, Hk, h, window, scale, score), o, oBf16, mem.bf16Floats(dO16, B * T * H * h),
        stats, true, dq, dk, dv, kvBf16, dvAccumulated);
    },
  };
}
