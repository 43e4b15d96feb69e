// Fused soft-capped cross-entropy (native/cross_entropy.cu), behind train_gpt.ts's hook
//   runFused('SoftcapCrossEntropy', { logits, targets }, { cap, scale, temp, reduction })
// logits [N, V] float32 are raw (before the cap), targets int32 [N]; the output is the scalar
//   Σ_i (or mean_i) logsumexp_j(z_ij) − z_i,t_i,   z = cap(x): sigmoid scale·σ(x/temp) | tanh scale·tanh(x/scale) | none x
// equal to train_gpt.ts's composite crossEntropy(logitSoftcap(logits)), which is its oracle (and the
// implementation on backends without the kernel). The forward keeps each row's logsumexp with its
// output (CudaBackend.attachSaved), so the gradient kernel needs one read of the logits and one write.
import * as tf from '@tensorflow/tfjs-core';

export const SOFTCAP_CROSS_ENTROPY = 'SoftcapCrossEntropy';
export const SOFTCAP_CROSS_ENTROPY_GRAD = 'SoftcapCrossEntropyGrad';

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
