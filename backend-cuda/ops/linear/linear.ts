// A projection whose output is an activation: the kernel train_gpt.ts's linear() (without a residual: the QKV, MLP
// up and gate projections) hands to a backend that registers 'Linear' (runFused). The record keeps every activation
// in bf16 (record-2025-11.md §5: a bf16 matmul writes bf16), so under bf16 matmul precision the cuda kernel writes
// x·W in bf16 only (rounded from the fp32 sum, in cuBLASLt's epilogue): half the bytes written, read by its
// consumers (AttentionInputs, ReLU², SwiGLU read bf16 as stored) and kept for their gradients. tf.matMul is the
// composite everywhere else and the oracle.
//   {x [n, k], w [k, m]} → x·w [n, m].
// Gradient: BatchMatMul's (dx = dy·wᵀ, dw = xᵀ·dy, float32: dw sums over micro-steps).
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const LINEAR = 'Linear';

export const linear: FusedKernelSpec = {
  name: LINEAR,
  supports: ({ x, w }) => x.rank !== 2 || w.rank !== 2 ? `x [${x.shape}] and w [${w.shape}] must be matrices` : float32Inputs({ x, w }, 'x', 'w'),
};

tf.registerGradient({
  kernelName: LINEAR,
  inputsToSave: ['x', 'w'],
  gradFunc: (dy, saved) => {
    const [x, w] = saved, g = dy as tf.Tensor;
    return { x: () => tf.matMul(g, w, false, true), w: () => tf.matMul(x, g, true, false) };
  },
});
