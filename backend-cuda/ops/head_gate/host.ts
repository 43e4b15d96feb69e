// CPU reference of head_gate.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { HeadGateNative } from './kernel.ts';

export function headGateHost(mem: HostDevice): HeadGateNative {
  return {
    headGate(o, oBf16, g, y, yBf16, rows, h) {
      if (rows * h === 0) return;
      const ov = mem.input(o, rows * h, oBf16), gv = mem.floats(g, rows), yv = mem.output(y, rows * h, yBf16);
      for (let r = 0; r < rows; r++) {
        const s = 1 / (1 + Math.exp(-gv[r]));
        for (let j = 0; j < h; j++) yv[r * h + j] = ov[r * h + j] * s;
      }
      mem.flush(y, yv, yBf16);
    },
    headGateGrad(dy, dyBf16, o, oBf16, g, dO, dOBf16, dg, delta, rows, h) {
      if (rows === 0) return;
      const d = mem.input(dy, rows * h, dyBf16), ov = mem.input(o, rows * h, oBf16), gv = mem.floats(g, rows);
      const dov = mem.output(dO, rows * h, dOBf16), dgv = mem.floats(dg, rows);
      for (let r = 0; r < rows; r++) {
        const s = 1 / (1 + Math.exp(-gv[r]));
        let dot = 0;
        for (let j = 0; j < h; j++) { dot += d[r * h + j] * ov[r * h + j]; dov[r * h + j] = d[r * h + j] * s; }
        dgv[r] = s * (1 - s) * dot;
      }
      mem.flush(dO, dov, dOBf16);
      if (delta === 0) return;
      // D = Σ do·o from do as stored (read back: rounded where bf16)
      const stored = mem.input(dO, rows * h, dOBf16), dv = mem.floats(delta, rows);
      for (let r = 0; r < rows; r++) {
        let D = 0;
        for (let j = 0; j < h; j++) D += stored[r * h + j] * ov[r * h + j];
        dv[r] = D;
      }
    },
  };
}
