// CPU reference of rms_norm.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { RmsNormNative } from './kernel.ts';

export function rmsNormHost(mem: HostDevice): RmsNormNative {
  return {
    rmsNorm(x, y, rows, cols, eps) {
      if (rows * cols === 0) return;
      const xv = mem.floats(x, rows * cols), yv = mem.floats(y, rows * cols);
      for (let r = 0; r < rows; r++) {
        let ss = 0;
        for (let j = 0; j < cols; j++) ss += xv[r * cols + j] ** 2;
        const rstd = 1 / Math.sqrt(ss / cols + eps);
        for (let j = 0; j < cols; j++) yv[r * cols + j] = xv[r * cols + j] * rstd;
      }
    },
    rmsNormGrad(dy, x, dx, rows, cols, eps) {
      if (rows * cols === 0) return;
      const g = mem.floats(dy, rows * cols), xv = mem.floats(x, rows * cols), o = mem.floats(dx, rows * cols);
      for (let r = 0; r < rows; r++) {
        let ss = 0, dot = 0;
        for (let j = 0; j < cols; j++) { ss += xv[r * cols + j] ** 2; dot += g[r * cols + j] * xv[r * cols + j]; }
        const rstd = 1 / Math.sqrt(ss / cols + eps);
        const c = rstd ** 3 * dot / cols;
        for (let j = 0; j < cols; j++) o[r * cols + j] = rstd * g[r * cols + j] - c * xv[r * cols + j];
      }
    },
  };
}
