// Fused causal attention: the kernel train_gpt.ts's attention() hands to a backend that registers
// 'CausalAttention' (runFused), and its gradient. The composite attention() in train_gpt.ts
// (scores materialised as [B,H,T,T]) is the implementation everywhere else and the tests' oracle.
//   inputs q [B,T,H,h], k, v [B,T,Hk,h] (query head i reads K/V head ⌊i/(H/Hk)⌋), docIds int32 [B,T]
//   (nondecreasing along T); attrs window (key j visible to query i iff j ≤ i, i − j < window, same
//   document), scale (multiplies q·k), score 'softmax' | 'softpick' | 'softmax1'. Output [B,T,H,h].
// The gradient kernel returns [dq, dk, dv] from the forward's output o (for D = dO·O) and the
// per-row statistics the forward keeps with o (CudaBackend.attachSaved); native/attention.cu has
// the algorithm and the formulas.
import * as tf from '@tensorflow/tfjs-core';

export const CAUSAL_ATTENTION = 'CausalAttention';
export const CAUSAL_ATTENTION_GRAD = 'CausalAttentionGrad';

tf.registerGradient({
  kernelName: CAUSAL_ATTENTION,
  inputsToSave: ['q', 'k', 'v', 'docIds'],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [q, k, v, docIds, o] = saved;
    // One kernel computes all three: run it once here, not in each input's closure (each closure
    // runs in its own tidy, which would dispose the other two).
    const [dq, dk, dv] = tf.engine().runKernel(CAUSAL_ATTENTION_GRAD, { dy: dy as tf.Tensor, q, k, v, docIds, o }, attrs) as tf.Tensor[];
    return { q: () => dq, k: () => dk, v: () => dv, docIds: () => tf.zerosLike(docIds) };
  },
});
