// CPU reference of shaped_mix.cu's launchers, on the host device's memory (tests without a GPU): plain loops over each
// token's window, the window sums in float64 and rounded once, the mix's products, sums and differences rounded to
// float32 (Math.fround) as the kernels round them; the coefficients' sums in float64 (the scratch is unused).
import type { HostDevice } from '../../host_device.ts';
import type { ShapedMixNative } from './kernel.ts';

/** The first token of token t's window in row `row`: itself and up to window − 1 before it in its document. */
function windowStart(doc: Int32Array, row: number, t: number, window: number): number {
  let lo = t;
  while (t - lo + 1 < window && lo > 0 && doc[row + lo - 1] === doc[row + t]) lo--;
  return lo;
}

export function shapedMixHost(mem: HostDevice): ShapedMixNative {
  return {
    shapedMix(x, xBf16, m, mBf16, coef, docIds, y, _chunkSums, B, T, H, h, window) {
      const C = H * h, n = B * T * C;
      if (n === 0) return;
      const r = Math.fround, xv = mem.input(x, n, xBf16), mv = mem.input(m, n, mBf16), k = mem.floats(coef, 3 * H);
      const doc = mem.ints(docIds, B * T), yv = mem.floats(y, n);
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          const lo = windowStart(doc, b * T, t, window);
          for (let c = 0; c < C; c++) {
            let sum = 0;
            for (let s = lo; s <= t; s++) sum += xv[(b * T + s) * C + c];
            const i = (b * T + t) * C + c, head = Math.floor(c / h), mean = r(sum / (t - lo + 1));
            yv[i] = r(r(r(k[head] * xv[i]) + r(k[H + head] * mv[i])) - r(k[2 * H + head] * mean));
          }
        }
      }
    },
    shapedMixGrad(dy, x, xBf16, m, mBf16, coef, docIds, accumulated, dx, dm, dmBf16, dcoef, _chunkSums, _invCounts, _partials,
      B, T, H, h, window) {
      const C = H * h, n = B * T * C, sums = new Float64Array(3 * H);
      if (n > 0) {
        const r = Math.fround, g = mem.floats(dy, n), xv = mem.input(x, n, xBf16), mv = mem.input(m, n, mBf16);
        const k = mem.floats(coef, 3 * H), doc = mem.ints(docIds, B * T), dxv = mem.floats(dx, n), dmv = mem.output(dm, n, dmBf16);
        const acc = accumulated ? mem.floats(accumulated, n) : null;
        const S = new Float64Array(n);  // Cᵀ·dy: each token's dy / n(t) spread over its window
        for (let b = 0; b < B; b++) {
          for (let t = 0; t < T; t++) {
            const lo = windowStart(doc, b * T, t, window), size = t - lo + 1;
            for (let s = lo; s <= t; s++) {
              for (let c = 0; c < C; c++) S[(b * T + s) * C + c] += g[(b * T + t) * C + c] / size;
            }
          }
        }
        for (let i = 0; i < n; i++) {
          const head = Math.floor((i % C) / h), own = r(r(k[head] * g[i]) + r(-k[2 * H + head] * S[i]));
          sums[head] += g[i] * xv[i];
          sums[H + head] += g[i] * mv[i];
          sums[2 * H + head] -= xv[i] * S[i];
          dxv[i] = acc ? r(acc[i] + own) : own;
          dmv[i] = r(k[H + head] * g[i]);
        }
        mem.flush(dm, dmv, dmBf16);
      }
      mem.floats(dcoef, 3 * H).set(sums);
    },
  };
}
