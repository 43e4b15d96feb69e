// CPU reference of rms_norm.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { RmsNormNative } from './kernel.ts';

export function rmsNormHost(mem: HostDevice): RmsNormNative {
  return {
    rmsNorm(x, xBf16, y, yBf16, rows, cols, outCols, eps, lead, leadCols) {
      if (rows * cols === 0) return;
      const xv = mem.input(x, rows * cols, xBf16), yv = mem.output(y, rows * outCols, yBf16);
      const lv = lead ? mem.output(lead, rows * leadCols, yBf16) : null;
      for (let r = 0; r < rows; r++) {
        let ss = 0;
        for (let j = 0; j < cols; j++) ss += xv[r * cols + j] ** 2;
        const rstd = 1 / Math.sqrt(ss / cols + eps);
        for (let j = 0; j < outCols; j++) yv[r * outCols + j] = xv[r * cols + j] * rstd;
        if (lv) for (let j = 0; j < leadCols; j++) lv[r * leadCols + j] = xv[r * cols + j] * rstd;
      }
      mem.flush(y, yv, yBf16);
      if (lv) mem.flush(lead, lv, yBf16);
    },
    rmsNormGrad(dy, dyBf16, x, xBf16, acc, dx, rows, cols, outCols, eps, dLead, dLeadBf16, leadCols, dxBf16) {
      if (rows * cols === 0) return;
      const a = acc ? mem.floats(acc, rows * cols) : null, dl = dLead ? mem.input(dLead, rows * leadCols, dLeadBf16) : null;
      const g = mem.input(dy, rows * outCols, dyBf16), xv = mem.input(x, rows * cols, xBf16), o = mem.floats(dx, rows * cols);
      // dy is 0 past the output's channels; the leading output's gradient is added in its channels (in float32, as the Add)
      const grad = (r: number, j: number) => {
        const d = j < outCols ? g[r * outCols + j] : 0;
        return dl && j < leadCols ? Math.fround(d + dl[r * leadCols + j]) : d;
      };
      for (let r = 0; r < rows; r++) {
        let ss = 0, dot = 0;
        for (let j = 0; j < cols; j++) { ss += xv[r * cols + j] ** 2; dot += grad(r, j) * xv[r * cols + j]; }
        const rstd = 1 / Math.sqrt(ss / cols + eps);
        const c = rstd ** 3 * dot / cols;
        for (let j = 0; j < cols; j++) {
          const d = Math.fround(rstd * grad(r, j) - c * xv[r * cols + j]);
          o[r * cols + j] = a ? d + a[r * cols + j] : d;  // d in float32, then the sum rounded on store: a separate Add's value
        }
      }
      if (dxBf16) mem.flush(dxBf16, o.slice(), true);
    },
  };
}
