// Fused shaped mix y = α·x + β·m − γ·C·x per head (train_gpt.ts's shapedMix(): the sum of He & Hofmann's shaped
// attention, x the heads' input, m the attention's output, C the causal uniform average over each token's window in its
// document): the kernel shapedMix() hands to a backend that registers 'ShapedMix' (runFused), and its gradient. The
// composite (windowMean()'s window sums by doubling, per-head Multiplies, an Add and a Sub) is the implementation
// everywhere else and the tests' oracle.
//   inputs x, m float32 [B,T,H,h] of one shape, coef float32 [3, H] (rows α, β, γ), docIds int32 [B,T] (nondecreasing
//   along T, as CausalAttention takes them); attr window (≥ 1): token t averages x over the window latest tokens of its
//   document, itself included (attention()'s keys).
// The gradient kernel ('ShapedMixGrad', {dy, x, m, coef, docIds, accumulated?} → [dx, dm, dcoef]) needs no C·x: dx =
// α·dy − γ·Cᵀ·dy (plus x's gradient so far where tfjs_node.ts's backward hands it), dm = β·dy, dcoef = (Σ dy·x, Σ dy·m,
// −Σ x·Cᵀ·dy) per head, from one backwards walk. It runs once in gradFunc (sharedGradients: the thunks take its outputs).
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec, sharedGradients } from '../fused_kernel.ts';

export const SHAPED_MIX = 'ShapedMix';
export const SHAPED_MIX_GRAD = 'ShapedMixGrad';

export interface ShapedMixAttrs { window: number }

export const shapedMix: FusedKernelSpec<ShapedMixAttrs> = {
  name: SHAPED_MIX,
  supports: ({ x, m, coef, docIds }) => x.rank !== 4 ? `x [${x.shape}] is not [B,T,H,h]`
    : x.shape.join() !== m.shape.join() ? `x [${x.shape}] and m [${m.shape}] differ in shape`
      : coef.shape.join() !== [3, x.shape[2]].join() ? `coef [${coef.shape}] is not [3, heads] of x [${x.shape}]`
        : docIds.dtype !== 'int32' ? 'docIds must be int32' : float32Inputs({ x, m, coef }, 'x', 'm', 'coef'),
};

tf.registerGradient({
  kernelName: SHAPED_MIX,
  inputsToSave: ['x', 'm', 'coef', 'docIds'],
  gradFunc: (dy, saved, attrs) => {
    const [x, m, coef, docIds] = saved;
    // [dx, dm, dcoef] from one kernel; x's thunk hands it x's gradient so far, summed in dx's store (no Add)
    const { output, summing } = sharedGradients(({ x: accumulated }) => tf.engine().runKernel(SHAPED_MIX_GRAD,
      { dy: dy as tf.Tensor, x, m, coef, docIds, ...(accumulated ? { accumulated } : {}) }, attrs) as tf.Tensor[]);
    return { x: summing(0, 'x'), m: () => output(1), coef: () => output(2), docIds: () => tf.zerosLike(docIds) };
  },
});
