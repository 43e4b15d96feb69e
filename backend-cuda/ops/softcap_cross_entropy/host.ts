// CPU reference of softcap_cross_entropy.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { SoftcapCrossEntropyNative } from './kernel.ts';
import { LOGIT_CAP } from './softcap_cross_entropy.ts';

/** The soft cap: [z, dz/dx] for raw logit x (as softcap_cross_entropy.cu computes them). */
function cappedLogit(cap: number, x: number, scale: number, temp: number): [number, number] {
  if (cap === LOGIT_CAP.sigmoid) {
    const sig = 1 / (1 + Math.exp(-x / temp));
    return [scale * sig, (scale / temp) * sig * (1 - sig)];
  }
  if (cap === LOGIT_CAP.tanh) {
    const th = Math.tanh(x / scale);
    return [scale * th, 1 - th * th];
  }
  if (cap === LOGIT_CAP.none) return [x, 1];
  throw new Error(`host device: logit cap ${cap}`);
}

export function softcapCrossEntropyHost(mem: HostDevice): SoftcapCrossEntropyNative {
  const values = (ptr: number, n: number, bf16: boolean) => bf16 ? mem.bf16Floats(ptr, n) : mem.floats(ptr, n);
  return {
    softcapCrossEntropy(logits, logitsBf16, targets, rowStats, loss, rows, cols, cap, scale, temp, mean) {
      let total = 0;
      if (rows > 0) {
        const x = values(logits, rows * cols, logitsBf16), t = mem.ints(targets, rows), stats = mem.floats(rowStats, 2 * rows);
        for (let r = 0; r < rows; r++) {
          const z = Array.from(x.subarray(r * cols, (r + 1) * cols), v => cappedLogit(cap, v, scale, temp)[0]);
          const m = z.reduce((p, v) => Math.max(p, v), -Infinity);
          let s = 0;
          for (let j = 0; j < cols; j++) s += Math.exp(z[j] - m);
          stats[r] = m + Math.log(s);
          stats[rows + r] = t[r] >= 0 && t[r] < cols ? stats[r] - z[t[r]] : NaN;
          total += stats[rows + r];
        }
      }
      mem.floats(loss, 1)[0] = mean && rows > 0 ? total / rows : total;  // an empty mean is 0, as tfjs's
    },
    softcapCrossEntropyGrad(dy, logits, logitsBf16, targets, rowStats, dlogits, dlogitsBf16, rows, cols, cap, scale, temp, mean) {
      if (rows === 0) return;
      const x = values(logits, rows * cols, logitsBf16), t = mem.ints(targets, rows);
      const stats = mem.floats(rowStats, 2 * rows), o = mem.output(dlogits, rows * cols, dlogitsBf16);
      const w = mem.floats(dy, 1)[0] * (mean ? 1 / rows : 1);
      for (let r = 0; r < rows; r++) {
        const g = t[r] >= 0 && t[r] < cols ? w : NaN;
        for (let j = 0; j < cols; j++) {
          const [z, dz] = cappedLogit(cap, x[r * cols + j], scale, temp);
          o[r * cols + j] = g * (Math.exp(z - stats[r]) - (j === t[r] ? 1 : 0)) * dz;
        }
      }
      mem.flush(dlogits, o, dlogitsBf16);
    },
  };
}
