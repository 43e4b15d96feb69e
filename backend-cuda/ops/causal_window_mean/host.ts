// CPU reference of causal_window_mean.cu's launchers, on the host device's memory (tests without a GPU): plain
// loops over each token's window, summed in float64 and rounded once as the kernels do (the scratch is unused).
import type { HostDevice } from '../../host_device.ts';
import type { CausalWindowMeanNative } from './kernel.ts';

/** The number of tokens token t of row `row` sees: itself and up to window − 1 before it in its document. */
function windowSize(doc: Int32Array, row: number, t: number, window: number): number {
  let n = 1;
  while (n < window && t - n >= 0 && doc[row + t - n] === doc[row + t]) n++;
  return n;
}

export function causalWindowMeanHost(mem: HostDevice): CausalWindowMeanNative {
  return {
    causalWindowMean(x, xBf16, docIds, y, _chunkSums, B, T, C, window) {
      const n = B * T * C;
      if (n === 0) return;
      const xv = mem.input(x, n, xBf16), doc = mem.ints(docIds, B * T), yv = mem.floats(y, n);
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          const size = windowSize(doc, b * T, t, window);
          for (let c = 0; c < C; c++) {
            let sum = 0;
            for (let s = t - size + 1; s <= t; s++) sum += xv[(b * T + s) * C + c];
            yv[(b * T + t) * C + c] = sum / size;
          }
        }
      }
    },
    causalWindowMeanGrad(dy, docIds, accumulated, dx, _chunkSums, _invCounts, B, T, C, window) {
      const n = B * T * C;
      if (n === 0) return;
      const g = mem.floats(dy, n), doc = mem.ints(docIds, B * T), dxv = mem.floats(dx, n);
      const sums = new Float64Array(n);
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          const size = windowSize(doc, b * T, t, window);
          for (let s = t - size + 1; s <= t; s++) {
            for (let c = 0; c < C; c++) sums[(b * T + s) * C + c] += g[(b * T + t) * C + c] / size;
          }
        }
      }
      dxv.set(sums);  // rounded once, as the kernel's float(sum); then the gradient so far added in float32, as an Add
      if (accumulated) {
        const acc = mem.floats(accumulated, n);
        for (let i = 0; i < n; i++) dxv[i] = acc[i] + dxv[i];
      }
    },
  };
}
