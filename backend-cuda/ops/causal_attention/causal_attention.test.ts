// The fused causal attention ('CausalAttention', causal_attention.cu) against the
// composite attention() of train_gpt.ts on tfjs-backend-cpu (the oracle): output and the gradients
// of q, k, v, for softmax, softpick and softmax1, on fresh random inputs: T not a multiple of the
// tiles, B > 1, grouped-query heads, documents of varied lengths (length 1 too), windows smaller
// and larger than T, head dims 16 to 128. On the host reference device (the same tiled online
// algorithm as plain loops: CI) and on the GPU where there is one, with a speedrun-sized case there. Then the gated
// attention ('GatedCausalAttention': the attention with its output gate as one op) against its composite and against
// the two ops it replaces.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { CudaBackend } from '../../backend.ts';
import { attention, ForwardContext, gatedAttention } from '../../../train_gpt.ts';
import { atMatmulPrecision, bf16, checkFusionHook, compare, describeOrSkip, type HostTensor, randFloat, random, relError, storedInBf16, targets,
  useBackend } from '../../../test/cuda_harness.ts';

type Score = 'softmax' | 'softpick' | 'softmax1';
const SCORES: Score[] = ['softmax', 'softpick', 'softmax1'];

interface Case { B: number; T: number; H: number; Hk: number; h: number; window: number; docs: 'varied' | 'one' }

/** Nondecreasing document ids per row, starting anywhere; 'varied': lengths from 1 (often) to T/2. */
function docIds(B: number, T: number, docs: Case['docs']): HostTensor {
  const v = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let id = Math.floor(random() * 1000), left = 0;
    for (let t = 0; t < T; t++) {
      if (docs === 'varied' && left === 0) {
        id += 1;
        left = random() < 0.3 ? 1 : 1 + Math.floor(random() * Math.max(1, T / 2));
      }
      v[b * T + t] = id;
      left = Math.max(0, left - 1);
    }
  }
  return { shape: [B, T], dtype: 'int32', values: v };
}

/** [out, dq, dk, dv] of sum(attention(q, k, v)·w), fused where the backend has the kernel. */
function attentionAndGrads(c: Case, score: Score, scale: number) {
  return (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, ids: tf.Tensor, w: tf.Tensor): tf.Tensor[] => {
    const ctx = new ForwardContext(ids as tf.Tensor2D);
    const out = attention(q, k, v, ctx, c.window, scale, score);
    const loss = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => tf.sum(tf.mul(attention(a, b, d, ctx, c.window, scale, score), w));
    return [out, ...tf.grads(loss)([q, k, v])];
  };
}

/**
 * Softpick's gradient is ill-conditioned where a row's S = Σ|e^{s−m} − e^{−m}| is small (∂p/∂s ~ ε/S²): a
 * query that sees few keys (the first tokens of a document), all with s ≈ 0. There the composite's own fp32
 * rounding (of s and of 1 − e^{−s}) moves its gradient by ~1e-3 relative (an H200 saw 3 % on a query with a
 * handful of keys). And relu(e^s − 1) has a kink at s = 0: a score that rounding (bf16 operands move s by
 * ~5e-3 here) carries across 0 changes that entry's ∂p/∂s by 1/S, a large share of a short row's gradient.
 * So every query is redrawn until its row has S ≥ 0.25 over its visible keys and its scores within 0.03 of
 * the kink number at most 0.05·S (none in a short row; in a long row their flips are a small share).
 */
function conditionSoftpick(q: HostTensor, k: HostTensor, ids: HostTensor, c: Case, scale: number): void {
  const qv = q.values as Float32Array, kv = k.values as Float32Array, group = c.H / c.Hk;
  const wellConditioned = (b: number, t: number, qOff: number, kvHead: number): boolean => {
    let S = 0, nearKink = 0;
    for (let j = t; j >= 0 && j > t - c.window && ids.values[b * c.T + j] === ids.values[b * c.T + t]; j--) {
      const kOff = ((b * c.T + j) * c.Hk + kvHead) * c.h;
      let s = 0;
      for (let d = 0; d < c.h; d++) s += qv[qOff + d] * kv[kOff + d];
      if (Math.abs(s * scale) < 0.03) nearKink++;
      S += Math.abs(Math.expm1(s * scale));
    }
    return S >= 0.25 && nearKink <= 0.05 * S;
  };
  for (let b = 0; b < c.B; b++) for (let t = 0; t < c.T; t++) for (let head = 0; head < c.H; head++) {
    const qOff = ((b * c.T + t) * c.H + head) * c.h;
    while (!wellConditioned(b, t, qOff, Math.floor(head / group))) for (let d = 0; d < c.h; d++) qv[qOff + d] = -2 + 4 * random();
  }
}

function inputsFor(c: Case, score: Score, scale: number): HostTensor[] {
  const inputs = [randFloat([c.B, c.T, c.H, c.h]), randFloat([c.B, c.T, c.Hk, c.h]), randFloat([c.B, c.T, c.Hk, c.h]),
    docIds(c.B, c.T, c.docs), randFloat([c.B, c.T, c.H, c.h])];
  if (score === 'softpick') conditionSoftpick(inputs[0], inputs[1], inputs[3], c, scale);
  return inputs;
}
const label = (c: Case, score: Score) => `${score} B${c.B} T${c.T} H${c.H}/${c.Hk} h${c.h} window ${c.window} ${c.docs} docs`;
/**
 * Softpick's dq carries fp32 rounding of ~1e-5 absolute on the GPU (the ill-conditioning above,
 * milder: FMA contraction and summation order move it; the host reference computes in float64).
 */
const tolerance = (score: Score) => score === 'softpick' ? { rtol: 1e-4, atol: 3e-5 } : { rtol: 1e-4, atol: 1e-5 };

/** Fused on `target` against the composite on cpu. */
async function check(target: string, c: Case, score: Score): Promise<void> {
  const scale = 1 / Math.sqrt(c.h);  // scores of order 1: both signs for softpick, rows far from one-hot
  await compare(target, label(c, score), inputsFor(c, score, scale), attentionAndGrads(c, score, scale), tolerance(score));
}

/**
 * Fused against the composite both on `target` (the GPU: fp32 matmuls), for sizes where the cpu
 * backend would take minutes: the composite runs with the fused kernel unregistered for the moment.
 */
async function checkOnDevice(target: string, c: Case, score: Score): Promise<void> {
  await useBackend(target);
  const scale = 1 / Math.sqrt(c.h), inputs = inputsFor(c, score, scale), fn = attentionAndGrads(c, score, scale);
  const run = () => tf.tidy(() => {
    const [q, k, v, ids, w] = inputs.map(x => tf.tensor(x.values, x.shape, x.dtype));
    return fn(q, k, v, ids, w).map(t => t.dataSync());
  });
  const fused = run();
  const kernel = tf.getKernel('CausalAttention', target)!;
  tf.unregisterKernel('CausalAttention', target);
  let composite: ReturnType<typeof run>;
  try {
    assert.equal(tf.getKernel('CausalAttention', target), undefined, 'the composite runs without the fused kernel');
    composite = run();
  } finally {
    tf.registerKernel(kernel);
  }
  const tol = tolerance(score);
  fused.forEach((got, o) => {
    const want = composite[o];
    for (let i = 0; i < want.length; i++) {
      if (!(Math.abs(got[i] - want[i]) <= tol.atol + tol.rtol * Math.abs(want[i]))) {
        assert.fail(`${label(c, score)}: output ${o} differs at flat index ${i}: fused ${got[i]}, composite ${want[i]}`);
      }
    }
  });
}

const CASES: Case[] = [
  { B: 2, T: 37, H: 4, Hk: 2, h: 16, window: 8, docs: 'varied' },      // window < tile, GQA, B > 1
  { B: 1, T: 70, H: 2, Hk: 1, h: 64, window: 1000, docs: 'varied' },   // window > T, one K/V head
  { B: 1, T: 45, H: 2, Hk: 2, h: 128, window: 40, docs: 'varied' },    // largest head dim
  { B: 2, T: 50, H: 3, Hk: 3, h: 24, window: 50, docs: 'one' },        // head dim not a multiple of 32, window = T
  { B: 1, T: 81, H: 2, Hk: 1, h: 16, window: 18, docs: 'one' },        // window alone skips key tiles; 18: tile edges line up
];
const HOST_DEVICE_CASES: Case[] = [{ B: 1, T: 40, H: 2, Hk: 1, h: 32, window: 24, docs: 'varied' }];
const GPU_CASES: Case[] = [
  { B: 1, T: 2048, H: 6, Hk: 6, h: 128, window: 1664, docs: 'varied' }, // speedrun-sized (long window, 13 blocks)
  { B: 2, T: 1000, H: 6, Hk: 2, h: 128, window: 384, docs: 'varied' },
];

for (const target of targets) {
  describeOrSkip(`fused CausalAttention on ${target.name}`, target.skip, () => {
    for (const score of SCORES) {
      it(`${score}: output and q/k/v gradients match the composite attention on cpu`, async () => {
        for (const c of CASES) await check(target.name, c, score);
        await useBackend(target.name);
        assert.ok(tf.getKernel('CausalAttention', target.name) != null, 'the fused kernel is registered on this backend');
      });
      const sameDevice = target.name === 'cuda' ? 'speedrun-sized cases: T up to 2048, h 128, 6 heads' : 'a small case';
      it(`${score}: fused equals the composite on the same device (${sameDevice})`, async () => {
        for (const c of target.name === 'cuda' ? GPU_CASES : HOST_DEVICE_CASES) await checkOnDevice(target.name, c, score);
        assert.ok(tf.getKernel('CausalAttention', target.name) != null, 'the fused kernel is registered again');
      });
    }

    it('the gradient of an o without saved statistics (made elsewhere) recomputes them: same dq, dk, dv (exact and bf16 paths)', async () => {
      await useBackend(target.name);
      const backend = tf.backend() as CudaBackend, before = backend.matmulPrecision;
      // h 32: the exact kernels under either precision; h 64 under bf16: the tensor-core entries
      for (const [precision, h] of [['fp32', 32], ['bf16', 32], ['bf16', 64]] as const) {
        backend.setMatmulPrecision(precision);
        const c: Case = { B: 2, T: 40, H: 4, Hk: 2, h, window: 24, docs: 'varied' }, scale = 1 / Math.sqrt(c.h);
        const host = [randFloat([c.B, c.T, c.H, c.h]), randFloat([c.B, c.T, c.Hk, c.h]), randFloat([c.B, c.T, c.Hk, c.h]),
          docIds(c.B, c.T, c.docs), randFloat([c.B, c.T, c.H, c.h])];
        const [q, k, v, ids, dy] = host.map(x => tf.tensor(x.values, x.shape, x.dtype));
        for (const score of SCORES) {
          const attrs = { window: c.window, scale, score };
          const o = tf.engine().runKernel('CausalAttention', { q, k, v, docIds: ids }, attrs) as tf.Tensor;
          const oCopy = tf.add(o, 0);
          const fromSaved = tf.engine().runKernel('CausalAttentionGrad', { dy, q, k, v, docIds: ids, o }, attrs) as tf.Tensor[];
          const recomputed = tf.engine().runKernel('CausalAttentionGrad', { dy, q, k, v, docIds: ids, o: oCopy }, attrs) as tf.Tensor[];
          for (let n = 0; n < 3; n++) {
            const a = fromSaved[n].dataSync(), b = recomputed[n].dataSync();
            assert.ok(relError(b, a) < 1e-6, `${precision} h ${h} ${score}: gradient ${'qkv'[n]} with recomputed statistics, rel. error ${relError(b, a)}`);
          }
          tf.dispose([o, oCopy, ...fromSaved, ...recomputed]);
        }
        tf.dispose([q, k, v, ids, dy]);
      }
      backend.setMatmulPrecision(before);
    });

    it("v's gradient so far is added in dv's store as tfjs's Add would (exact and bf16 paths); a v that feeds a later op too gets no Add of its shape", async () => {
      await useBackend(target.name);
      const backend = tf.backend() as CudaBackend, before = backend.matmulPrecision;
      const tensor = (x: HostTensor) => tf.tensor(x.values, x.shape, x.dtype);
      try {
        // h 32 under fp32: the exact kernels; h 64 under bf16: the tensor-core entries
        for (const [precision, h] of [['fp32', 32], ['bf16', 64]] as const) {
          backend.setMatmulPrecision(precision);
          const c: Case = { B: 2, T: 40, H: 4, Hk: 2, h, window: 24, docs: 'varied' }, attrs = { window: c.window, scale: 1 / Math.sqrt(h), score: 'softmax' };
          const [q, k, v, ids, dy, acc] = [randFloat([c.B, c.T, c.H, h]), randFloat([c.B, c.T, c.Hk, h]), randFloat([c.B, c.T, c.Hk, h]),
            docIds(c.B, c.T, c.docs), randFloat([c.B, c.T, c.H, h]), randFloat([c.B, c.T, c.Hk, h])].map(tensor);
          const o = tf.engine().runKernel('CausalAttention', { q, k, v, docIds: ids }, attrs) as tf.Tensor;
          const plain = tf.engine().runKernel('CausalAttentionGrad', { dy, q, k, v, docIds: ids, o }, attrs) as tf.Tensor[];
          const summed = tf.engine().runKernel('CausalAttentionGrad', { dy, q, k, v, docIds: ids, o, accumulated: acc }, attrs) as tf.Tensor[];
          // the tensor cores store dk and dv in bf16 (FlashAttention-3's), but not with a sum so far: a sum stays float32
          const tensorCores = precision === 'bf16';
          assert.deepEqual([storedInBf16(plain[1]), storedInBf16(plain[2])], [tensorCores, tensorCores], `${precision}: dk and dv stored in bf16 only on the tensor cores`);
          assert.deepEqual([storedInBf16(summed[1]), storedInBf16(summed[2])], [false, false], `${precision}: with accumulated, dk and dv float32`);
          if (tensorCores) {
            // the same sums, rounded to bf16 or not: dk bit for bit once rounded, dv within the bf16 rounding of its term
            assert.deepEqual(Array.from(summed[1].dataSync(), bf16), Array.from(plain[1].dataSync()), `${precision}: dk`);
            const got = summed[2].dataSync(), accs = acc.dataSync(), dv16 = plain[2].dataSync();
            got.forEach((x, i) => {
              const bound = 2 ** (Math.floor(Math.log2(Math.abs(dv16[i]) || 2 ** -126)) - 8) + 2 ** -23 * Math.abs(x);
              assert.ok(Math.abs(x - accs[i] - dv16[i]) <= bound, `${precision}: dv with accumulated [${i}] ${x}, acc ${accs[i]} + dv ${dv16[i]}`);
            });
          } else {
            const sum = tf.add(acc, plain[2]);
            assert.deepEqual(Array.from(summed[2].dataSync()), Array.from(sum.dataSync()), `${precision}: dv with accumulated, against acc + dv`);
            assert.deepEqual(Array.from(summed[1].dataSync()), Array.from(plain[1].dataSync()), `${precision}: dk`);
            sum.dispose();
          }
          assert.ok(relError(summed[0].dataSync(), plain[0].dataSync()) < 1e-6, `${precision}: dq (summed by atomics: not bit-reproducible)`);
          assert.throws(() => tf.engine().runKernel('CausalAttentionGrad', { dy, q, k, v, docIds: ids, o, accumulated: dy }, attrs),
            new RegExp(`CausalAttentionGrad: accumulated float32\\[${c.B},${c.T},${c.H},${h}\\] and v float32\\[${c.B},${c.T},${c.Hk},${h}\\] differ in shape`));
          tf.dispose([q, k, v, ids, dy, acc, o, ...plain, ...summed]);
        }
        // shaped attention's X: the values, and an input of an op made after the attention (its gradient comes first)
        backend.setMatmulPrecision('fp32');
        const c: Case = { B: 2, T: 30, H: 2, Hk: 2, h: 16, window: 12, docs: 'varied' }, scale = 1 / Math.sqrt(c.h);
        const host = [randFloat([c.B, c.T, c.H, c.h]), randFloat([c.B, c.T, c.H, c.h]), randFloat([c.B, c.T, c.H, c.h]),
          randFloat([c.B, c.T, c.H, c.h]), randFloat([c.B, c.T, c.H, c.h]), docIds(c.B, c.T, c.docs)];
        const loss = (ids: tf.Tensor, q: tf.Tensor, k: tf.Tensor, w: tf.Tensor, u: tf.Tensor) => (x: tf.Tensor) => {
          const ctx = new ForwardContext(ids as tf.Tensor2D);
          return tf.add(tf.sum(tf.mul(attention(q, k, x, ctx, c.window, scale, 'softmax'), w)), tf.sum(tf.mul(x, u)));
        };
        const [x, q, k, w, u, ids] = host.map(tensor);
        let dx: tf.Tensor | null = null;
        const profile = await tf.profile(() => { dx = tf.grad(loss(ids, q, k, w, u))(x); return dx; });
        const adds = profile.kernels.filter((kernel) => kernel.name === 'Add' && kernel.inputShapes[0]?.join() === x.shape.join()).length;
        assert.equal(adds, 0, `Adds of x's shape in the backward: ${adds}`);
        assert.ok(profile.kernels.some((kernel) => kernel.name === 'CausalAttentionGrad'), 'the fused gradient ran');
        const got = dx!.dataSync() as Float32Array;
        await tf.setBackend('cpu');
        const [xc, qc, kc, wc, uc, idsc] = host.map(tensor);
        const want = tf.grad(loss(idsc, qc, kc, wc, uc))(xc);
        assert.ok(relError(got, want.dataSync()) < 1e-5, `dx against the composite on cpu: rel. error ${relError(got, want.dataSync())}`);
        tf.dispose([xc, qc, kc, wc, uc, idsc, want]);
        await useBackend(target.name);
        tf.dispose([x, q, k, w, u, ids, dx!]);
      } finally {
        await useBackend(target.name);
        (tf.backend() as CudaBackend).setMatmulPrecision(before);
      }
    });

    it('an empty sequence gives an empty output; a window far over T acts as T', async () => {
      await useBackend(target.name);
      const run = (q: tf.Tensor, k: tf.Tensor, ids: tf.Tensor, window: number) =>
        tf.engine().runKernel('CausalAttention', { q, k, v: k, docIds: ids }, { window, scale: 0.5, score: 'softmax' }) as tf.Tensor;
      const empty = run(tf.zeros([2, 0, 2, 8]), tf.zeros([2, 0, 1, 8]), tf.zeros([2, 0], 'int32'), 4);
      assert.deepEqual(empty.shape, [2, 0, 2, 8]);
      const c: Case = { B: 1, T: 20, H: 2, Hk: 1, h: 8, window: 20, docs: 'varied' };
      const [q, k, , ids] = inputsFor(c, 'softmax', 0.5).map(x => tf.tensor(x.values, x.shape, x.dtype));
      assert.deepEqual(run(q, k, ids, 2 ** 40).dataSync(), run(q, k, ids, 20).dataSync());
      tf.dispose([empty, q, k, ids]);
    });

    it('bad inputs and attrs fail with a message naming them', async () => {
      await useBackend(target.name);
      const q = tf.zeros([1, 4, 2, 8]), k = tf.zeros([1, 4, 1, 8]), ids = tf.zeros([1, 4], 'int32');
      const run = (inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) => () =>
        tf.engine().runKernel('CausalAttention', inputs, { window: 4, scale: 1, score: 'softmax', ...attrs });
      assert.throws(run({ q, k, v: k, docIds: ids }, { window: 0 }), /window must be a positive integer, got 0/);
      assert.throws(run({ q, k, v: k, docIds: ids }, { score: 'sparsemax' }), /score must be one of softmax, softpick, softmax1, got sparsemax/);
      assert.throws(run({ q, k, v: k, docIds: tf.zeros([1, 4]) }, {}), /docIds must be int32, got float32/);
      const k2 = tf.zeros([1, 4, 2, 8]);
      assert.throws(run({ q: tf.zeros([1, 4, 3, 8]), k: k2, v: k2, docIds: ids }, {}), /CausalAttention: the query heads \(3\) must be a multiple of the key\/value heads \(2\)/);
      assert.throws(run({ q: tf.zeros([1, 4, 2, 130]), k: tf.zeros([1, 4, 1, 130]), v: tf.zeros([1, 4, 1, 130]), docIds: ids }, {}),
        /head dim 130 is outside the kernel's 1\.\.128/);
    });
  });
}

/**
 * The bf16 tensor-core kernels (causal_attention_mma.cu: --matmul-precision bf16, head dims 64 and
 * 128) against the exact fp32 kernels on the same GPU, which the tests above hold to the composite:
 * output (stored in bf16 only) and q/k/v gradients within bf16 rounding (‖Δ‖/‖ref‖), never NaN, and not
 * bit-equal (the bf16 path did run). Other head dims fall back to the exact kernels under bf16 too.
 */
const TENSOR_CORE_CASES: Case[] = [
  { B: 2, T: 150, H: 4, Hk: 2, h: 64, window: 40, docs: 'varied' },     // T cut mid-tile, GQA, window < tile
  { B: 1, T: 300, H: 2, Hk: 2, h: 128, window: 1000, docs: 'one' },     // window > T: full causal, tiles unmasked
  { B: 1, T: 2048, H: 6, Hk: 6, h: 128, window: 1664, docs: 'varied' }, // speedrun-sized
  { B: 2, T: 1000, H: 6, Hk: 2, h: 128, window: 384, docs: 'varied' },
];
/** ‖Δ‖/‖ref‖ bounds: bf16 operands give ~3e-3 (output, dv) to ~4e-3 (dq, dk) on an H100; softpick's
 * dq and dk ~3e-2 (its ds divides by a den that can be small, amplifying the bf16 rounding of s). */
const BF16_TOL: Record<Score, number> = { softmax: 1.5e-2, softmax1: 1.5e-2, softpick: 8e-2 };
const cudaTarget = targets.find(t => t.name === 'cuda')!;
describeOrSkip('fused CausalAttention on bf16 tensor cores (cuda)', cudaTarget.skip, () => {
  /** [out, dq, dk, dv] at a matmul precision, on the GPU, as host arrays. */
  function run(c: Case, score: Score, inputs: HostTensor[], precision: 'bf16' | 'fp32'): Float32Array[] {
    return atMatmulPrecision(precision, () => tf.tidy(() => {
      const [q, k, v, ids, w] = inputs.map(x => tf.tensor(x.values, x.shape, x.dtype));
      const outputs = attentionAndGrads(c, score, 1 / Math.sqrt(c.h))(q, k, v, ids, w);
      const onTensorCores = precision === 'bf16' && (c.h === 64 || c.h === 128);
      assert.equal(storedInBf16(outputs[0]), onTensorCores, `${label(c, score)}: o stored in bf16 only on the tensor cores`);
      return outputs.map(t => t.dataSync() as Float32Array);
    }));
  }
  for (const score of SCORES) {
    it(`${score}: output and gradients within bf16 rounding of the exact kernels`, async () => {
      await useBackend('cuda');
      for (const c of TENSOR_CORE_CASES) {
        const inputs = inputsFor(c, score, 1 / Math.sqrt(c.h));
        const exact = run(c, score, inputs, 'fp32'), bf16 = run(c, score, inputs, 'bf16');
        exact.forEach((want, o) => {
          const got = bf16[o], err = relError(got, want);
          assert.ok(got.every(Number.isFinite), `${label(c, score)}: output ${o} has a non-finite value`);
          assert.ok(err < BF16_TOL[score], `${label(c, score)}: output ${o} rel. error ${err.toExponential(2)} against the exact kernels`);
          assert.ok(err > 0, `${label(c, score)}: output ${o} is bit-equal: the tensor-core kernel did not run`);
        });
      }
    });
  }
  it('other head dims run the exact kernels under bf16 too', async () => {
    await useBackend('cuda');
    const c: Case = { B: 1, T: 70, H: 2, Hk: 1, h: 32, window: 50, docs: 'varied' };
    const inputs = inputsFor(c, 'softmax', 1 / Math.sqrt(c.h));
    const exact = run(c, 'softmax', inputs, 'fp32'), bf16 = run(c, 'softmax', inputs, 'bf16');
    exact.forEach((want, o) => assert.deepEqual(bf16[o], want, `output ${o}`));
  });
});

/**
 * The tensor-core entries' contract, checked on the host device (CI): under bf16 matmul precision the kernels take q,
 * k, v and dO in bf16 (the backend's copies of float32 tensors here; AttentionInputs' bf16-only outputs in the model),
 * compute from those values, which the host reference does exactly, and store o in bf16 only (FlashAttention-3's
 * output, record-2025-11.md §5). So o is the composite on cpu of q, k, v rounded to bf16, rounded to bf16 (within one
 * bf16 step: a value at a rounding midpoint may round either way); and the gradients are the exact entries' on those
 * rounded q, k, v and that o (D = dO·O from the o stored in bf16), which the tests above hold to the composite, with dk
 * and dv rounded to bf16 and stored so (FlashAttention-3's).
 */
const hostTarget = targets.find(t => t.name === 'cuda-host')!;
describeOrSkip('fused CausalAttention under bf16 matmul precision on cuda-host (the tensor-core entries)', hostTarget.skip, () => {
  const cases: Case[] = [
    { B: 1, T: 70, H: 2, Hk: 1, h: 64, window: 40, docs: 'varied' },
    { B: 2, T: 30, H: 2, Hk: 2, h: 128, window: 1000, docs: 'one' },
  ];
  const rounded = (t: tf.Tensor) => tf.tensor(Float32Array.from(t.dataSync(), bf16), t.shape);
  for (const score of SCORES) {
    it(`${score}: o is the composite on cpu of q, k, v rounded to bf16, stored in bf16; the gradients the exact entries' from that o (dk, dv rounded to bf16)`, async () => {
      for (const c of cases) {
        const scale = 1 / Math.sqrt(c.h), inputs = inputsFor(c, score, scale), attrs = { window: c.window, scale, score };
        inputs[4] = { ...inputs[4], values: Float32Array.from(inputs[4].values, bf16) };  // dO, drawn in bf16 (dO16 = dO)
        await useBackend('cpu');
        const want = tf.tidy(() => {
          const [q, k, v, ids] = inputs.map(x => tf.tensor(x.values, x.shape, x.dtype));
          return attention(rounded(q), rounded(k), rounded(v), new ForwardContext(ids as tf.Tensor2D), c.window, scale, score).dataSync();
        });
        await useBackend('cuda-host');
        const [q, k, v, ids, dy] = inputs.map(x => tf.tensor(x.values, x.shape, x.dtype));
        const o = atMatmulPrecision('bf16', () => tf.engine().runKernel('CausalAttention', { q, k, v, docIds: ids }, attrs) as tf.Tensor);
        assert.ok(storedInBf16(o), `${label(c, score)}: o is stored in bf16 only`);
        // one bf16 step at want[i], plus the fp32 comparisons' atol: a sum that cancels near 0 carries the composite's
        // float32 rounding of its terms
        const got = o.dataSync(), { atol } = tolerance(score);
        for (let i = 0; i < want.length; i++) {
          const step = 2 ** (Math.floor(Math.log2(Math.abs(want[i]) || 2 ** -126)) - 7);
          assert.ok(Math.abs(got[i] - want[i]) <= step + atol, `${label(c, score)}: o[${i}] ${got[i]}, composite ${want[i]}`);
          assert.equal(got[i], bf16(got[i]), `${label(c, score)}: o[${i}] is a bf16 value`);
        }
        const grads = atMatmulPrecision('bf16', () => tf.engine().runKernel('CausalAttentionGrad', { dy, q, k, v, docIds: ids, o }, attrs) as tf.Tensor[]);
        const [qr, kr, vr] = [q, k, v].map(rounded), oValues = tf.tensor(got, o.shape);  // o's values, stored in float32
        const exact = atMatmulPrecision('fp32', () => tf.engine().runKernel('CausalAttentionGrad', { dy, q: qr, k: kr, v: vr, docIds: ids, o: oValues }, attrs) as tf.Tensor[]);
        const dq = relError(grads[0].dataSync(), exact[0].dataSync());
        assert.ok(dq < 1e-6, `${label(c, score)}: gradient q against the exact entry's from the bf16 o, rel. error ${dq}`);
        // dk and dv stored in bf16 only (FlashAttention-3's): the exact entry's, rounded to bf16
        for (const n of [1, 2]) {
          assert.ok(storedInBf16(grads[n]), `${label(c, score)}: gradient ${'qkv'[n]} is stored in bf16 only`);
          assert.deepEqual(Array.from(grads[n].dataSync()), Array.from(exact[n].dataSync(), bf16), `${label(c, score)}: gradient ${'qkv'[n]} against the exact entry's from the bf16 o, rounded to bf16`);
        }
        tf.dispose([q, k, v, ids, dy, o, qr, kr, vr, oValues, ...grads, ...exact]);
      }
    });
  }
});

/** [y, dq, dk, dv, dg] of sum(gatedAttention(q, k, v, g)·w): the fused 'GatedCausalAttention' where the backend has it,
 * else its composite headGate(attention()). */
function gatedAndGrads(c: Case, score: Score, scale: number) {
  return (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, ids: tf.Tensor, w: tf.Tensor, g: tf.Tensor): tf.Tensor[] => {
    const ctx = new ForwardContext(ids as tf.Tensor2D);
    const gated = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor, e: tf.Tensor) => gatedAttention(a, b, d, e, ctx, c.window, scale, score);
    return [gated(q, k, v, g), ...tf.grads((a: tf.Tensor, b: tf.Tensor, d: tf.Tensor, e: tf.Tensor) => tf.sum(tf.mul(gated(a, b, d, e), w)))([q, k, v, g])];
  };
}
/** inputsFor's, and the gate's logits: both signs, saturating gates included. */
const gatedInputsFor = (c: Case, score: Score, scale: number): HostTensor[] => [...inputsFor(c, score, scale), randFloat([c.B, c.T, c.H], -4, 4)];
const GATED_KERNELS = ['GatedCausalAttention', 'GatedCausalAttentionGrad'];

/**
 * The gated attention ('GatedCausalAttention': the attention and its output gate as one op) against its composite,
 * headGate(attention()) on cpu, and, under bf16 on the same device, against the two fused ops it replaces
 * (CausalAttention, HeadGate and their gradients): the gate in the forward's epilogue gives the same y bit for bit, and
 * the gate's backward's D (deltaReady: no row-dot pass) the same gradients.
 */
for (const target of targets) {
  describeOrSkip(`fused GatedCausalAttention on ${target.name}`, target.skip, () => {
    for (const score of SCORES) {
      it(`${score}: y and the q, k, v and g gradients match headGate(attention()) on cpu`, async () => {
        for (const c of [CASES[0], CASES[1]]) {
          const scale = 1 / Math.sqrt(c.h);
          await compare(target.name, `gated ${label(c, score)}`, gatedInputsFor(c, score, scale), gatedAndGrads(c, score, scale), tolerance(score));
        }
      });
    }

    it('train_gpt.ts\'s gatedAttention runs the gated op each way, and --fused off the composite', async () => {
      await useBackend(target.name);
      const c = CASES[0], scale = 1 / Math.sqrt(c.h);
      const [q, k, v, ids, w, g] = gatedInputsFor(c, 'softmax', scale).map(x => tf.tensor(x.values, x.shape, x.dtype));
      await checkFusionHook(() => gatedAndGrads(c, 'softmax', scale)(q, k, v, ids, w, g), {
        fused: GATED_KERNELS, composite: ['Sigmoid', 'BatchMatMul'],
        compositeOnly: ['CausalAttention', 'CausalAttentionGrad', 'HeadGate', 'HeadGateGrad', 'Sigmoid', 'BatchMatMul'],
      });
      tf.dispose([q, k, v, ids, w, g]);
    });

    it('under bf16, y (bf16 only) equals HeadGate(CausalAttention()) bit for bit, and the gradients theirs (the tensor-core entries, head dims 64 and 128)', async () => {
      await useBackend(target.name);
      const backend = tf.backend() as CudaBackend;
      const cases: Case[] = target.name === 'cuda' ? [TENSOR_CORE_CASES[0], TENSOR_CORE_CASES[3]]
        : [{ B: 1, T: 70, H: 2, Hk: 1, h: 64, window: 40, docs: 'varied' }, { B: 2, T: 30, H: 2, Hk: 2, h: 128, window: 1000, docs: 'one' }];
      atMatmulPrecision('bf16', () => {
        for (const score of SCORES) for (const c of cases) {
          const scale = 1 / Math.sqrt(c.h), attrs = { window: c.window, scale, score }, name = label(c, score);
          const [q, k, v, ids, dy, g] = gatedInputsFor(c, score, scale).map(x => tf.tensor(x.values, x.shape, x.dtype));
          const run = (kernel: string, inputs: tf.NamedTensorMap, a: tf.NamedAttrMap = attrs) => tf.engine().runKernel(kernel, inputs, a);
          const o = run('CausalAttention', { q, k, v, docIds: ids }) as tf.Tensor, y2 = run('HeadGate', { o, g }, {}) as tf.Tensor;
          const [dO, dg2] = run('HeadGateGrad', { dy, o, g }, {}) as tf.Tensor[];
          const grads2 = run('CausalAttentionGrad', { dy: dO, q, k, v, docIds: ids, o }) as tf.Tensor[];
          const y = run('GatedCausalAttention', { q, k, v, docIds: ids, g }) as tf.Tensor;
          const grads = run('GatedCausalAttentionGrad', { dy, q, k, v, docIds: ids, g, y }) as tf.Tensor[];
          assert.ok(storedInBf16(y), `${name}: y is stored in bf16 only`);
          assert.equal(backend.savedBytes(y) >= c.B * c.T * c.H * c.h * 2, true, `${name}: y carries o in bf16`);
          assert.deepEqual(Array.from(y.dataSync()), Array.from(y2.dataSync()), `${name}: y against HeadGate(CausalAttention())`);
          assert.deepEqual(Array.from(grads[3].dataSync()), Array.from(dg2.dataSync()), `${name}: dg against HeadGateGrad's`);
          for (let n = 0; n < 3; n++) {
            const err = relError(grads[n].dataSync(), grads2[n].dataSync());
            assert.ok(err < 1e-6, `${name}: gradient ${'qkv'[n]} against CausalAttentionGrad's, rel. error ${err}`);
          }
          tf.dispose([q, k, v, ids, dy, g, o, y2, dO, dg2, ...grads2, y, ...grads]);
        }
      });
    });

    it('bad inputs fail with a message naming the kernel: g\'s shape, a y the forward did not make, a precision changed in between', async () => {
      await useBackend(target.name);
      const q = tf.ones([1, 4, 2, 64]), k = tf.ones([1, 4, 1, 64]), ids = tf.zeros([1, 4], 'int32'), g = tf.zeros([1, 4, 2]);
      const attrs = { window: 4, scale: 1, score: 'softmax' };
      const run = (kernel: string, inputs: tf.NamedTensorMap) => () => tf.engine().runKernel(kernel, inputs, attrs);
      try {
        assert.throws(run('GatedCausalAttention', { q, k, v: k, docIds: ids, g: tf.zeros([1, 4]) }), /GatedCausalAttention: g must be \[1,4,2\], got float32\[1,4\]/);
        assert.throws(run('GatedCausalAttention', { q, k, v: k, docIds: tf.zeros([1, 4]), g }), /GatedCausalAttention: docIds must be int32/);
        assert.throws(run('GatedCausalAttentionGrad', { dy: q, q, k, v: k, docIds: ids, g, y: tf.ones([1, 4, 2, 64]) }),
          /GatedCausalAttentionGrad: y float32\[1,4,2,64\] is not a GatedCausalAttention output/);
        const y = atMatmulPrecision('bf16', () => tf.engine().runKernel('GatedCausalAttention', { q, k, v: k, docIds: ids, g }, attrs) as tf.Tensor);
        atMatmulPrecision('fp32', () => assert.throws(run('GatedCausalAttentionGrad', { dy: q, q, k, v: k, docIds: ids, g, y }),
          /GatedCausalAttentionGrad: y .* was made under another matmul precision than its gradient's \(fp32\)/));
        y.dispose();
      } finally {
        tf.dispose([q, k, ids, g]);
      }
    });
  });
}
