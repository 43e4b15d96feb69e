// CPU reference of attention_inputs.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { AttentionInputsNative } from './kernel.ts';

/** Each (token, head) row of qkv: [its offset in qkv, kind (0 q, 1 k, 2 v), its offset in q, k or v (and dq, dk or dv), position t].
 * Hv: the v heads a token holds, Hk or 0 (q and k only). */
function qkvRows(B: number, T: number, H: number, Hk: number, Hv: number, h: number): Array<[number, number, number, number]> {
  const rows: Array<[number, number, number, number]> = [], heads = H + Hk + Hv;
  for (let token = 0; token < B * T; token++) {
    for (let j = 0; j < heads; j++) {
      const kind = j < H ? 0 : j < H + Hk ? 1 : 2;
      const out = kind === 0 ? (token * H + j) * h : (token * Hk + j - H - (kind === 2 ? Hk : 0)) * h;
      rows.push([(token * heads + j) * h, kind, out, token % T]);
    }
  }
  return rows;
}

export function attentionInputsHost(mem: HostDevice): AttentionInputsNative {
  return {
    attentionInputs(qkv, qkvBf16, cos, sin, lambdas, ve, q, k, v, outBf16, B, T, H, Hk, h, qkNorm, eps) {
      if (B * T === 0) return;
      const f = (p: number, n: number) => mem.floats(p, n), half = h / 2, Hv = v ? Hk : 0;  // v 0: q and k heads only
      const x = mem.input(qkv, B * T * (H + Hk + Hv) * h, qkvBf16), c = f(cos, T * half), s = f(sin, T * half);
      const [la, lb] = v ? f(lambdas, 2) : [0, 0], ptrs = v ? [q, k, v] : [q, k], sizes = [B * T * H * h, B * T * Hk * h, B * T * Hk * h];
      const outs = ptrs.map((p, i) => mem.output(p, sizes[i], outBf16)), e = ve ? f(ve, B * T * Hk * h) : null;
      for (const [i, kind, o, t] of qkvRows(B, T, H, Hk, Hv, h)) {
        const y = outs[kind];
        if (kind === 2) {
          for (let j = 0; j < h; j++) y[o + j] = la * x[i + j] + (e ? lb * e[o + j] : 0);
          continue;
        }
        let ss = 0;
        for (let j = 0; j < h; j++) ss += x[i + j] ** 2;
        const rstd = qkNorm ? 1 / Math.sqrt(ss / h + eps) : 1;
        for (let j = 0; j < half; j++) {
          const x1 = x[i + j] * rstd, x2 = x[i + half + j] * rstd, cj = c[t * half + j], sj = s[t * half + j];
          y[o + j] = x1 * cj + x2 * sj;
          y[o + half + j] = x2 * cj - x1 * sj;
        }
      }
      ptrs.forEach((p, i) => mem.flush(p, outs[i], outBf16));
    },
    attentionInputsGrad(dq, dk, dv, kvBf16, qkv, qkvBf16, cos, sin, lambdas, ve, dqkv, dqkvBf16, dlambdas, dve, veAcc, B, T, H, Hk, h, qkNorm,
      eps, lambdasAcc) {
      const f = (p: number, n: number) => mem.floats(p, n), half = h / 2, Hv = dv ? Hk : 0;  // dv 0: q and k heads only, no dλ
      const dl = dv ? f(dlambdas, 2) : null, lambdaSums = lambdasAcc ? f(lambdasAcc, 2).slice() : [0, 0];
      dl?.set(lambdaSums);  // the sums so far (an empty problem adds nothing to them)
      if (B * T === 0) return;
      const x = mem.input(qkv, B * T * (H + Hk + Hv) * h, qkvBf16), dx = mem.output(dqkv, B * T * (H + Hk + Hv) * h, dqkvBf16);
      const c = f(cos, T * half), s = f(sin, T * half), [la, lb] = dv ? f(lambdas, 2) : [0, 0];
      const dys = [f(dq, B * T * H * h), mem.input(dk, B * T * Hk * h, kvBf16), ...(dv ? [mem.input(dv, B * T * Hk * h, kvBf16)] : [])];
      const e = ve ? f(ve, B * T * Hk * h) : null, de = ve ? f(dve, B * T * Hk * h) : null, acc = veAcc ? f(veAcc, B * T * Hk * h) : null;
      let dla = 0, dlb = 0;
      for (const [i, kind, o, t] of qkvRows(B, T, H, Hk, Hv, h)) {
        const dy = dys[kind];
        if (kind === 2) {
          for (let j = 0; j < h; j++) {
            dx[i + j] = la * dy[o + j];
            dla += dy[o + j] * x[i + j];
            if (e && de) {
              const g = Math.fround(lb * dy[o + j]);
              de[o + j] = acc ? acc[o + j] + g : g;  // rounded once to float32 on store: the Add's value
              dlb += dy[o + j] * e[o + j];
            }
          }
          continue;
        }
        // g: the gradient of the normed row, the transpose rotation of dy
        const g = new Float64Array(h);
        let ss = 0, dot = 0;
        for (let j = 0; j < half; j++) {
          const d1 = dy[o + j], d2 = dy[o + half + j], cj = c[t * half + j], sj = s[t * half + j];
          g[j] = d1 * cj - d2 * sj;
          g[half + j] = d1 * sj + d2 * cj;
        }
        for (let j = 0; j < h; j++) { ss += x[i + j] ** 2; dot += g[j] * x[i + j]; }
        const rstd = qkNorm ? 1 / Math.sqrt(ss / h + eps) : 1, coef = qkNorm ? rstd ** 3 * dot / h : 0;
        for (let j = 0; j < h; j++) dx[i + j] = rstd * g[j] - coef * x[i + j];
      }
      mem.flush(dqkv, dx, dqkvBf16);
      if (!dl) return;
      dl[0] = lambdasAcc ? Math.fround(dla) + lambdaSums[0] : dla;  // float32 sums, then the Add's
      dl[1] = lambdasAcc ? Math.fround(dlb) + lambdaSums[1] : dlb;
    },
  };
}
