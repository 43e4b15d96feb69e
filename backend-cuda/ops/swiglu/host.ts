// CPU reference of swiglu.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { SwigluNative } from './kernel.ts';

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

export function swigluHost(mem: HostDevice): SwigluNative {
  return {
    swiglu(x, xBf16, y, yBf16, rows, F) {
      if (rows * F === 0) return;
      const xv = mem.input(x, rows * 2 * F, xBf16), yv = mem.output(y, rows * F, yBf16);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < F; j++) {
          const g = xv[r * 2 * F + j], u = xv[r * 2 * F + F + j];
          yv[r * F + j] = g * sigmoid(g) * u;
        }
      }
      mem.flush(y, yv, yBf16);
    },
    swigluGrad(dy, dyBf16, x, xBf16, dx, dxBf16, rows, F) {
      if (rows * F === 0) return;
      const d = mem.input(dy, rows * F, dyBf16), xv = mem.input(x, rows * 2 * F, xBf16), o = mem.output(dx, rows * 2 * F, dxBf16);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < F; j++) {
          const g = xv[r * 2 * F + j], u = xv[r * 2 * F + F + j], s = sigmoid(g), dv = d[r * F + j];
          o[r * 2 * F + j] = dv * u * s * (1 + g * (1 - s));
          o[r * 2 * F + F + j] = dv * g * s;
        }
      }
      mem.flush(dx, o, dxBf16);
    },
  };
}
