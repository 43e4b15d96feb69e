// Fused causal attention: the kernel train_gpt.ts's attention() hands to a backend that registers
// 'CausalAttention' (runFused), and its gradient. The composite attention() in train_gpt.ts
// (scores materialised as [B,H,T,T]) is the implementation everywhere else and the tests' oracle.
//   inputs q [B,T,H,h], k, v [B,T,Hk,h] (query head i reads K/V head ⌊i/(H/Hk)⌋), docIds int32 [B,T]
//   (nondecreasing along T); attrs window (key j visible to query i iff j ≤ i, i − j < window, same
//   document), scale (multiplies q·k), score 'softmax' | 'softpick' | 'softmax1'. Output [B,T,H,h].
// The gradient kernel returns [dq, dk, dv] from the forward's output o (for D = dO·O) and the
// per-row statistics the forward keeps with o (CudaBackend.attachSaved), dv with v's gradient so far added where it
// is given (input accumulated); causal_attention.cu has the algorithm and the formulas.
// 'GatedCausalAttention': the same with the output gate y = o·σ(g) (g [B,T,H], one logit a head and token; HeadGate's
// maths) as one op, so that the kernels can run the gate in the attention's passes (kernel.ts); train_gpt.ts's
// gatedAttention() hands it to a backend that registers it, with headGate(attention()) as the composite. Its
// gradient kernel returns [dq, dk, dv, dg] from y, which carries o and the statistics.
import * as tf from '@tensorflow/tfjs-core';
import { type FusedKernelSpec, sharedGradients } from '../fused_kernel.ts';

export const CAUSAL_ATTENTION = 'CausalAttention';
export const CAUSAL_ATTENTION_GRAD = 'CausalAttentionGrad';
export const GATED_CAUSAL_ATTENTION = 'GatedCausalAttention';
export const GATED_CAUSAL_ATTENTION_GRAD = 'GatedCausalAttentionGrad';

/** The scores the kernels compute (the native codes): softmax, softpick or softmax1 over the visible keys. */
export const ATTENTION_SCORE = { softmax: 0, softpick: 1, softmax1: 2 } as const;
/** The largest head dim the kernels hold in registers (kMaxAttentionHead in causal_attention.h). */
export const MAX_HEAD_DIM = 128;

export interface CausalAttentionAttrs { window: number; scale: number; score: string }

const supportsAttention: FusedKernelSpec<CausalAttentionAttrs>['supports'] = ({ q, k, v, docIds }, { score }) => {
  const h = q.shape[3] ?? 0, T = q.shape[1] ?? 0;
  if (h > MAX_HEAD_DIM) return `head dim ${h} is above the kernels' ${MAX_HEAD_DIM}`;
  if (!(score in ATTENTION_SCORE)) return `no kernel for the score '${score}'`;
  if (T >= 2 ** 24) return `T = ${T} is too long (the statistics carry key indices as floats)`;
  if ([q, k, v].some(t => t.dtype !== 'float32') || docIds.dtype !== 'int32') return 'q, k, v must be float32 and docIds int32';
  return true;
};

export const causalAttention: FusedKernelSpec<CausalAttentionAttrs> = { name: CAUSAL_ATTENTION, supports: supportsAttention };

export const gatedCausalAttention: FusedKernelSpec<CausalAttentionAttrs> = {
  name: GATED_CAUSAL_ATTENTION,
  supports: (inputs, attrs) => {
    const { q, g } = inputs, attention = supportsAttention(inputs, attrs);
    if (attention !== true) return attention;
    if (g.dtype !== 'float32' || !tf.util.arraysEqual(g.shape, q.shape.slice(0, 3))) return 'g must be float32 [B,T,H]';
    return true;
  },
};

tf.registerGradient({
  kernelName: CAUSAL_ATTENTION,
  inputsToSave: ['q', 'k', 'v', 'docIds'],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [q, k, v, docIds, o] = saved;
    // [dq, dk, dv] from one kernel, run by v's thunk where it is handed v's gradient so far (shaped attention's X: the
    // kernel adds it in dv's store, no Add)
    const { output, summing } = sharedGradients(({ v: accumulated }) => tf.engine().runKernel(CAUSAL_ATTENTION_GRAD,
      { dy: dy as tf.Tensor, q, k, v, docIds, o, ...(accumulated ? { accumulated } : {}) }, attrs) as tf.Tensor[]);
    return { q: () => output(0), k: () => output(1), v: summing(2, 'v'), docIds: () => tf.zerosLike(docIds) };
  },
});

tf.registerGradient({
  kernelName: GATED_CAUSAL_ATTENTION,
  inputsToSave: ['q', 'k', 'v', 'docIds', 'g'],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [q, k, v, docIds, g, y] = saved;
    const [dq, dk, dv, dg] = tf.engine().runKernel(GATED_CAUSAL_ATTENTION_GRAD, { dy: dy as tf.Tensor, q, k, v, docIds, g, y }, attrs) as tf.Tensor[];
    return { q: () => dq, k: () => dk, v: () => dv, g: () => dg, docIds: () => tf.zerosLike(docIds) };
  },
});
