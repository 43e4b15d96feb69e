// CPU reference of relu_squared.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { ReluSquaredNative } from './kernel.ts';

export function reluSquaredHost(mem: HostDevice): ReluSquaredNative {
  return {
    reluSquared(x, xBf16, y, yBf16, n) {
      if (n === 0) return;
      const xv = mem.input(x, n, xBf16), yv = mem.output(y, n, yBf16);
      for (let i = 0; i < n; i++) yv[i] = xv[i] > 0 ? xv[i] * xv[i] : 0;  // NaN → 0, as fmaxf in relu_squared.cu
      mem.flush(y, yv, yBf16);
    },
    reluSquaredGrad(dy, dyBf16, x, xBf16, dx, dxBf16, n) {
      if (n === 0) return;
      const g = mem.input(dy, n, dyBf16), xv = mem.input(x, n, xBf16), o = mem.output(dx, n, dxBf16);
      for (let i = 0; i < n; i++) o[i] = 2 * g[i] * (xv[i] > 0 ? xv[i] : 0);
      mem.flush(dx, o, dxBf16);
    },
  };
}
