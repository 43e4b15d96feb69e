// CPU reference of head_mix.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { HeadMixNative } from './kernel.ts';

// Products, sums and differences rounded to float32 (Math.fround and the Float32Array stores) as head_mix.cu (no FMA)
// and the composite round them; the coefficients' sums in float64 (the GPU's are float32 partial sums).
export function headMixHost(mem: HostDevice): HeadMixNative {
  return {
    headMix(x, xBf16, m, mBf16, c, cBf16, coef, y, rows, H, h) {
      const n = rows * H * h;
      if (n === 0) return;
      const r = Math.fround, xv = mem.input(x, n, xBf16), mv = mem.input(m, n, mBf16), cv = mem.input(c, n, cBf16);
      const k = mem.floats(coef, 3 * H), yv = mem.floats(y, n);
      for (let i = 0; i < n; i++) {
        const head = Math.floor(i / h) % H;
        yv[i] = r(r(k[head] * xv[i]) + r(k[H + head] * mv[i])) - r(k[2 * H + head] * cv[i]);
      }
    },
    headMixGrad(dy, x, xBf16, m, mBf16, c, cBf16, coef, dx, dm, dc, dcoef, rows, H, h) {
      const n = rows * H * h, sums = new Float64Array(3 * H);
      if (n > 0) {
        const g = mem.floats(dy, n), xv = mem.input(x, n, xBf16), mv = mem.input(m, n, mBf16), cv = mem.input(c, n, cBf16);
        const k = mem.floats(coef, 3 * H), dxv = mem.floats(dx, n), dmv = mem.floats(dm, n), dcv = mem.floats(dc, n);
        for (let i = 0; i < n; i++) {
          const head = Math.floor(i / h) % H;
          sums[head] += g[i] * xv[i];
          sums[H + head] += g[i] * mv[i];
          sums[2 * H + head] -= g[i] * cv[i];
          dxv[i] = k[head] * g[i];
          dmv[i] = k[H + head] * g[i];
          dcv[i] = -(k[2 * H + head] * g[i]);
        }
      }
      mem.floats(dcoef, 3 * H).set(sums);
    },
  };
}
