// Fused causal windowed mean: the kernel train_gpt.ts's windowMean() (shaped attention's C·X) hands to a backend
// that registers 'CausalWindowMean' (runFused), and its gradient. The composite (window sums by doubling over
// shifted copies) is the implementation everywhere else and the tests' oracle.
//   inputs x [B,T,...] float32 (the channels: the trailing dims), docIds int32 [B,T] (nondecreasing along T, as
//   CausalAttention takes them); attr window (≥ 1). Output y of x's shape: y[b,t] = the mean of x[b,s] over
//   s ∈ (t − window, t] in t's document.
// The gradient kernel ('CausalWindowMeanGrad', {dy, docIds, accumulated?} → dx) needs nothing of the forward: the mean
// is linear, dx[b,s] = Σ over the t that see s of dy[b,t] / (the number of tokens t sees), plus x's gradient so far
// where tfjs_node.ts's backward hands it (shapedAttention's X also feeds HeadMix, whose gradient comes first).
import * as tf from '@tensorflow/tfjs-core';
import type { FusedKernelSpec } from '../fused_kernel.ts';

export const CAUSAL_WINDOW_MEAN = 'CausalWindowMean';
export const CAUSAL_WINDOW_MEAN_GRAD = 'CausalWindowMeanGrad';

export interface CausalWindowMeanAttrs { window: number }

export const causalWindowMean: FusedKernelSpec<CausalWindowMeanAttrs> = {
  name: CAUSAL_WINDOW_MEAN,
  supports: ({ x, docIds }) => x.rank < 3 ? `x [${x.shape}] is not [B,T,...]`
    : x.dtype !== 'float32' || docIds.dtype !== 'int32' ? 'x must be float32 and docIds int32' : true,
};

tf.registerGradient({
  kernelName: CAUSAL_WINDOW_MEAN,
  inputsToSave: ['docIds'],
  gradFunc: (dy, saved, attrs) => {
    const [docIds] = saved;
    return {
      x: (accumulated?: tf.Tensor) =>
        tf.engine().runKernel(CAUSAL_WINDOW_MEAN_GRAD, { dy: dy as tf.Tensor, docIds, ...(accumulated ? { accumulated } : {}) }, attrs) as tf.Tensor,
      docIds: () => tf.zerosLike(docIds),
    };
  },
});
