// Fused causal attention: the kernel train_gpt.ts's attention() hands to a backend that registers
// 'CausalAttention' (runFused), and its gradient. The composite attention() in train_gpt.ts
// (scores materialised as [B,H,T,T]) is the implementation everywhere else and the tests' oracle.
//   inputs q [B,T,H,h], k, v [B,T,Hk,h] (query head i reads K/V head ⌊i/(H/Hk)⌋), docIds int32 [B,T]
//   (nondecreasing along T); attrs window (key j visible to query i iff j ≤ i, i − j < window, same
//   document), scale (multiplies q·k), score 'softmax' | 'softpick' | 'softmax1'. Output [B,T,H,h].
// The gradient kernel returns [dq, dk, dv] from the forward's output o (for D = dO·O) and the
// per-row statistics the forward keeps with o (CudaBackend.attachSaved), dv with v's gradient so far added where it
// is given (input accumulated); causal_attention.cu has the algorithm and the formulas.
import * as tf from '@tensorflow/tfjs-core';
import type { FusedKernelSpec } from '../fused_kernel.ts';

export const CAUSAL_ATTENTION = 'CausalAttention';
export const CAUSAL_ATTENTION_GRAD = 'CausalAttentionGrad';

/** The scores the kernels compute (the native codes): softmax, softpick or softmax1 over the visible keys. */
export const ATTENTION_SCORE = { softmax: 0, softpick: 1, softmax1: 2 } as const;
/** The largest head dim the kernels hold in registers (kMaxAttentionHead in causal_attention.h). */
export const MAX_HEAD_DIM = 128;

export interface CausalAttentionAttrs { window: number; scale: number; score: string }

export const causalAttention: FusedKernelSpec<CausalAttentionAttrs> = {
  name: CAUSAL_ATTENTION,
  supports: ({ q, k, v, docIds }, { score }) => {
    const h = q.shape[3] ?? 0, T = q.shape[1] ?? 0;
    if (h > MAX_HEAD_DIM) return `head dim ${h} is above the kernels' ${MAX_HEAD_DIM}`;
    if (!(score in ATTENTION_SCORE)) return `no kernel for the score '${score}'`;
    if (T >= 2 ** 24) return `T = ${T} is too long (the statistics carry key indices as floats)`;
    if ([q, k, v].some(t => t.dtype !== 'float32') || docIds.dtype !== 'int32') return 'q, k, v must be float32 and docIds int32';
    return true;
  },
};

tf.registerGradient({
  kernelName: CAUSAL_ATTENTION,
  inputsToSave: ['q', 'k', 'v', 'docIds'],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [q, k, v, docIds, o] = saved;
    // One kernel computes all three: the first thunk to run runs it (v's, where it is handed v's gradient so far: then
    // the kernel adds that in dv's store, and shaped attention's X needs no Add); the others take its results, or run it
    // again where tfjs's own backward disposed them (it runs each thunk in a tidy of its own).
    let results: tf.Tensor[] | null = null;  // [dq, dk, dv] of the last run
    const run = (accumulated?: tf.Tensor) => (results = tf.engine().runKernel(CAUSAL_ATTENTION_GRAD,
      { dy: dy as tf.Tensor, q, k, v, docIds, o, ...(accumulated ? { accumulated } : {}) }, attrs) as tf.Tensor[]);
    const ready = (i: number) => results !== null && !results[i].isDisposed;
    const output = (i: number) => (ready(i) ? results! : run())[i];
    return {
      q: () => output(0),
      k: () => output(1),
      // where the results exist already (v is the same tensor as q or k, whose thunk tfjs_node.ts then keeps first), an
      // Add, as tfjs's backward would
      v: (accumulated?: tf.Tensor) => !accumulated ? output(2) : ready(2) ? tf.add(accumulated, results![2]) : run(accumulated)[2],
      docIds: () => tf.zerosLike(docIds),
    };
  },
});
