// CPU reference of smear.cu's launchers, on the host device's memory (tests without a GPU).
import { bf16Value, type HostDevice } from '../../host_device.ts';
import type { SmearNative } from './kernel.ts';

// float32 operations in smear.cu's order (Math.fround); the gate's dot and the sums in float64 (the GPU's are float32
// in another order: the tests allow for it).
export function smearHost(mem: HostDevice): SmearNative {
  const r = Math.fround;
  const view = (x: number, w: number, lambda: number, docIds: number, rows: number, d: number, gate: number) => ({
    xv: mem.floats(x, rows * d), wv: mem.floats(w, gate), lam: mem.floats(lambda, 1)[0], mv: docIds ? mem.ints(docIds, rows) : null,
  });
  /** σ and λ·σ of row t's gate, and its operands (rounded to bf16 where bf16). */
  const gateOf = (xv: Float32Array, wv: Float32Array, lam: number, t: number, d: number, gate: number, bf16: boolean) => {
    const round = (v: number) => (bf16 ? bf16Value(v) : v);
    const lead = Array.from({ length: gate }, (_, j) => round(xv[t * d + j])), w = Array.from(wv.subarray(0, gate), round);
    const sigma = r(1 / (1 + Math.exp(-lead.reduce((s, a, j) => s + a * w[j], 0))));
    return { sigma, gate: r(sigma * lam), lead, w };
  };
  const maskAt = (docs: Int32Array | null, t: number, T: number) => (t % T === 0 ? 0 : !docs || docs[t] === docs[t - 1] ? 1 : 0);
  return {
    smear(x, w, lambda, docIds, y, rows, T, d, gate, bf16) {
      if (rows * d === 0) return;
      const { xv, wv, lam, mv } = view(x, w, lambda, docIds, rows, d, gate), yv = mem.floats(y, rows * d);
      for (let t = 0; t < rows; t++) {
        const g = gateOf(xv, wv, lam, t, d, gate, bf16).gate, m = maskAt(mv, t, T);
        for (let c = 0; c < d; c++) yv[t * d + c] = r(xv[t * d + c] + r(r((t % T === 0 ? 0 : xv[(t - 1) * d + c]) * m) * g));
      }
    },
    smearGrad(dy, x, w, lambda, docIds, dx, dw, dlambda, rows, T, d, gate, bf16) {
      const { xv, wv, lam, mv } = view(x, w, lambda, docIds, rows, d, gate);
      const g = mem.floats(dy, rows * d), o = mem.floats(dx, rows * d), dwv = mem.floats(dw, gate);
      const dwSum = new Float64Array(gate);
      let dl = 0;
      for (let t = 0; t < rows; t++) {
        const here = gateOf(xv, wv, lam, t, d, gate, bf16), m = maskAt(mv, t, T), last = (t + 1) % T === 0;
        const next = last ? 0 : gateOf(xv, wv, lam, t + 1, d, gate, bf16).gate, mNext = last ? 0 : maskAt(mv, t + 1, T);
        let dg = 0;
        if (t % T !== 0) for (let c = 0; c < d; c++) dg += g[t * d + c] * r(xv[(t - 1) * d + c] * m);
        dl += dg * here.sigma;
        let dpre = r(r(r(dg) * lam) * r(here.sigma * r(1 - here.sigma)));
        if (bf16) dpre = bf16Value(dpre);
        for (let j = 0; j < gate; j++) dwSum[j] += here.lead[j] * dpre;
        for (let c = 0; c < d; c++) {
          let v = r(g[t * d + c] + r(r((last ? 0 : g[(t + 1) * d + c]) * next) * mNext));
          if (c < gate) v = r(v + r(dpre * here.w[c]));
          o[t * d + c] = v;
        }
      }
      dwv.set(dwSum);
      mem.floats(dlambda, 1)[0] = dl;
    },
  };
}
