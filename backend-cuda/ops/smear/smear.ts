// Token smear x[t] + λ·σ(x[t][:k]·w)·x[t−1] (modded-nanogpt; train_gpt.ts's smear()): the kernel train_gpt.ts hands to a
// backend that registers 'Smear' (runFused), and its gradient. The composite (Slice of the gate's channels, Linear,
// Sigmoid, Multiply by λ, Pad and Slice for x[t−1], the mask's Multiply, Multiply, Add: four passes over [B, T, d] forward
// and six backward, plus the sum of x's two gradients) is the implementation everywhere else and the tests' oracle.
//   inputs x [B, T, d] float32 (row t − 1 of the same batch row; none before t = 0), w [k, 1] (k ≤ 32, k ≤ d: the gate
//   reads x's first k channels), lambda [1], docIds [B, T] int32; attr acrossDocs: every t > 0 reads x[t − 1], as the
//   2025-11 record's packed stream does; else only within its document
//   gradient ('SmearGrad', one kernel and a fixed-order sum): dx, dw, dlambda; the gate's dot and its gradient's products
//   take their operands rounded to bf16 where the backend's matmuls do (its Linear's, in the composite).
import * as tf from '@tensorflow/tfjs-core';
import type { FusedKernelSpec } from '../fused_kernel.ts';

export const SMEAR = 'Smear';
export const SMEAR_GRAD = 'SmearGrad';
/** The most gate channels the kernels take (one warp's lanes). */
export const SMEAR_MAX_GATE_CHANNELS = 32;

export const smear: FusedKernelSpec = {
  name: SMEAR,
  supports: ({ x, w, lambda, docIds }) => {
    const bad = [x, w, lambda].find((t) => t.dtype !== 'float32');
    if (bad) return `an input is ${bad.dtype}, the kernel takes float32`;
    if (x.rank !== 3) return `x [${x.shape}] is not [B, T, d]`;
    if (w.rank !== 2 || w.shape[1] !== 1 || w.shape[0]! > Math.min(SMEAR_MAX_GATE_CHANNELS, x.shape[2]!)) {
      return `w [${w.shape}] is not [k, 1] with k ≤ ${SMEAR_MAX_GATE_CHANNELS} and ≤ d`;
    }
    if (lambda.size !== 1) return `lambda [${lambda.shape}] is not one value`;
    return docIds.dtype !== 'int32' || docIds.shape.join() !== x.shape.slice(0, 2).join() ? `docIds ${docIds.dtype}[${docIds.shape}] are not int32 [B, T]` : true;
  },
};

tf.registerGradient({
  kernelName: SMEAR,
  inputsToSave: ['x', 'w', 'lambda', 'docIds'],
  gradFunc: (dy, saved, attrs) => {
    const [x, w, lambda, docIds] = saved;
    const [dx, dw, dlambda] = tf.engine().runKernel(SMEAR_GRAD, { dy: dy as tf.Tensor, x, w, lambda, docIds }, attrs) as tf.Tensor[];
    return { x: () => dx, w: () => dw, lambda: () => dlambda, docIds: () => tf.zeros(docIds.shape) };  // integer ids get none
  },
});
