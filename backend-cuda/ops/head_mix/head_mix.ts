// Fused head mix y = α·x + β·m − γ·c with per-head α, β, γ (train_gpt.ts's shapedAttention(): the three terms of
// He & Hofmann's shaped attention, x the heads' input, m the attention's output, c the causal window mean of x): the
// kernel headMix() hands to a backend that registers 'HeadMix' (runFused), and its gradient. The composite (per-head
// Multiplies, an Add and a Sub) is the implementation everywhere else and the tests' oracle.
//   inputs x, m, c float32 [..., H, h] of one shape, coef float32 [3, H] (rows α, β, γ);
//   gradient ('HeadMixGrad', one kernel): dx = α·dy, dm = β·dy, dc = −γ·dy, dcoef = (Σ dy·x, Σ dy·m, −Σ dy·c) per head
//   (sums over every axis but the head's).
// The composite keeps x·α-sized products and sums its coefficient gradients by transposing [B,T,H,h] (a reduction
// over axes 0, 1 and 3): 5 kernels forward, 9 backward, over tensors of the residual stream's size; here one each way.
// The gradient kernel runs once in gradFunc (the four thunks take its outputs; see scaled_add.ts).
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const HEAD_MIX = 'HeadMix';
export const HEAD_MIX_GRAD = 'HeadMixGrad';

export const headMix: FusedKernelSpec = {
  name: HEAD_MIX,
  supports: ({ x, m, c, coef }) => x.shape.join() !== m.shape.join() || x.shape.join() !== c.shape.join()
    ? `x [${x.shape}], m [${m.shape}] and c [${c.shape}] differ in shape`
    : x.rank < 2 || coef.shape.join() !== [3, x.shape[x.rank - 2]].join() ? `coef [${coef.shape}] is not [3, heads] of x [${x.shape}]`
      : float32Inputs({ x, m, c, coef }, 'x', 'm', 'c', 'coef'),
};

tf.registerGradient({
  kernelName: HEAD_MIX,
  inputsToSave: ['x', 'm', 'c', 'coef'],
  gradFunc: (dy, saved) => {
    const [x, m, c, coef] = saved;
    const [dx, dm, dc, dcoef] = tf.engine().runKernel(HEAD_MIX_GRAD, { dy: dy as tf.Tensor, x, m, c, coef }, {}) as tf.Tensor[];
    return { x: () => dx, m: () => dm, c: () => dc, coef: () => dcoef };
  },
});
