// A projection whose output is an activation: the kernel train_gpt.ts's linear() (without a residual: the QKV, MLP
// up and gate projections) hands to a backend that registers 'Linear' (runFused). The record keeps every activation
// in bf16 (record-2025-11.md §5: a bf16 matmul writes bf16), so under bf16 matmul precision the cuda kernel writes
// x·W in bf16 only (rounded from the fp32 sum, in cuBLASLt's epilogue): half the bytes written, read by its
// consumers (AttentionInputs, ReLU², SwiGLU read bf16 as stored) and kept for their gradients. tf.matMul is the
// composite everywhere else and the oracle.
//   {x [..., k], w [k, m]} → x·w [..., m] (x taken as it is, not through a Reshape: its gradient then lands on x itself,
//   where the sum below can find the other consumers' gradient).
// Gradient: BatchMatMul's (dx = dy·wᵀ, dw = xᵀ·dy). dw is float32 (it sums over micro-steps); dx, the gradient of the
// normed activation, is stored in bf16 under bf16 matmul precision as the record's bf16 autograd gives it (§5), and its
// readers (RMSNormGrad, CanonConvGrad) take it as stored: half the bytes written and read. Where x already has a gradient
// from another consumer (tfjs_node.ts's backward hands it over: the normed input's attention-gate slice), dx comes
// from 'MatMulAdd' with it as C, the sum in cuBLASLt's epilogue instead of an Add over both; so does dw where w has
// one (the earlier micro-steps' sum: tfjs_node.ts's variableGradsSummed).
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';
import { matMulPlus, productInBf16 } from '../matmul_add/matmul_add.ts';

export const LINEAR = 'Linear';

export const linear: FusedKernelSpec = {
  name: LINEAR,
  supports: ({ x, w }) => x.rank < 1 || w.rank !== 2 ? `x [${x.shape}] must have a last axis and w [${w.shape}] be a matrix`
    : float32Inputs({ x, w }, 'x', 'w'),
};

tf.registerGradient({
  kernelName: LINEAR,
  inputsToSave: ['x', 'w'],
  gradFunc: (dy, saved) => {
    const [x, w] = saved, [k, m] = w.shape, g = (dy as tf.Tensor).reshape([-1, m]), x2 = x.reshape([-1, k]);
    return {
      x: (accumulated?: tf.Tensor) => (accumulated ? matMulPlus(g, w, accumulated.reshape([-1, k]), false, true) : productInBf16(g, w, false, true)).reshape(x.shape),
      w: (accumulated?: tf.Tensor) => (accumulated ? matMulPlus(x2, g, accumulated, true, false) : tf.matMul(x2, g, true, false)),
    };
  },
});
