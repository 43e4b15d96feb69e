// Fused soft-capped cross-entropy (softcap_cross_entropy.cu), behind train_gpt.ts's hook
//   runFused(softcapCrossEntropy, { logits, targets }, { cap, scale, temp, reduction })
// logits [N, V] float32 are raw (before the cap), targets int32 [N]; the output is the scalar
//   Σ_i (or mean_i) logsumexp_j(z_ij) − z_i,t_i,   z = cap(x): sigmoid scale·σ(x/temp) | tanh scale·tanh(x/scale) | none x
// equal to train_gpt.ts's composite crossEntropy(logitSoftcap(logits)), which is its oracle (and the
// implementation on backends without the kernel). The forward keeps each row's logsumexp with its
// output (CudaBackend.attachSaved), so the gradient kernel needs one read of the logits and one write.
import * as tf from '@tensorflow/tfjs-core';
import type { FusedKernelSpec } from '../fused_kernel.ts';

export const SOFTCAP_CROSS_ENTROPY = 'SoftcapCrossEntropy';
export const SOFTCAP_CROSS_ENTROPY_GRAD = 'SoftcapCrossEntropyGrad';

/** The logit soft caps the kernel computes, z = cap(x): x | scale·σ(x/temp) | scale·tanh(x/scale) (the native codes). */
export const LOGIT_CAP = { none: 0, sigmoid: 1, tanh: 2 } as const;

export interface SoftcapCrossEntropyAttrs { cap: string; scale: number; temp: number; reduction: 'sum' | 'mean' }

export const softcapCrossEntropy: FusedKernelSpec<SoftcapCrossEntropyAttrs> = {
  name: SOFTCAP_CROSS_ENTROPY,
  supports: ({ logits, targets }, { cap }) => !(cap in LOGIT_CAP) ? `no kernel for the logit cap '${cap}'`
    : logits.dtype !== 'float32' || targets.dtype !== 'int32' ? `logits ${logits.dtype} and targets ${targets.dtype} (the kernel takes float32 and int32)` : true,
};

tf.registerGradient({
  kernelName: SOFTCAP_CROSS_ENTROPY,
  inputsToSave: ['logits', 'targets'],
  outputsToSave: [true],  // the loss: its buffer carries the rows' logsumexp
  gradFunc: (dy, saved, attrs) => {
    const [logits, targets, loss] = saved;
    return {
      logits: () => tf.engine().runKernel(SOFTCAP_CROSS_ENTROPY_GRAD, { dy: dy as tf.Tensor, logits, targets, loss }, attrs) as tf.Tensor,
      targets: () => tf.zeros(targets.shape),  // integer targets get no gradient
    };
  },
});
