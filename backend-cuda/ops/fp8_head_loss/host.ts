// CPU reference of fp8_head_loss.cu's launcher, on the host device's memory (tests without a GPU): by its definition,
// the three launchers it fuses one after the other (their own references), through a scratch buffer of the gradient.
import type { HostDevice } from '../../host_device.ts';
import { fp8MatmulHost } from '../fp8_matmul/host.ts';
import { softcapCrossEntropyHost } from '../softcap_cross_entropy/host.ts';
import type { Fp8HeadLossNative } from './kernel.ts';

export function fp8HeadLossHost(mem: HostDevice): Fp8HeadLossNative {
  const ce = softcapCrossEntropyHost(mem), fp8 = fp8MatmulHost(mem);
  return {
    softcapLossGradFp8(dy, logits, logitsBf16, targets, rowStats, loss, gBf16, rows, cols, cap, scale, temp, mean, gradScale, g8, g8t) {
      ce.softcapCrossEntropy(logits, logitsBf16, targets, rowStats, loss, rows, cols, cap, scale, temp, mean);
      if (rows * cols === 0) return;
      const g = mem.alloc(rows * cols * (gBf16 ? 2 : 4));
      try {
        ce.softcapCrossEntropyGrad(dy, logits, logitsBf16, targets, rowStats, g, gBf16, rows, cols, cap, scale, temp, mean);
        fp8.fp8Quantise(g, gBf16, rows, cols, gradScale, true, g8, g8t);
      } finally {
        mem.free(g);
      }
    },
  };
}
