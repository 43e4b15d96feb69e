// Fused attention inputs: the kernels train_gpt.ts's attentionInputs() hands to a backend that
// registers them (runFused), and their gradient. The composite attentionInputs() in train_gpt.ts
// (split, reshapes, RMSNorm on q and k, rotary on q and k, the value-embedding mix) is the
// implementation everywhere else and the tests' oracle.
//   inputs qkv [B,T,(H+2·Hk)·h] float32 (the QKV projection: q heads, then k heads, then v heads),
//   cos and sin [1,T,1,h/2] (train_gpt.ts's rotaryTables), lambdas [2] = [λa, λb], and for
//   'AttentionInputsVE' the value embeddings ve [B,T,Hk,h]; attrs numHeads H, kvHeads Hk, qkNorm, eps.
//   outputs q = rot(norm(q_raw)) [B,T,H,h], k = rot(norm(k_raw)) [B,T,Hk,h], v = λa·v_raw + λb·ve
//   [B,T,Hk,h] (λa·v_raw without ve); norm(x) = x·(mean(x²) + eps)^-½ over h when qkNorm, else x.
// 'AttentionInputsQK' ({qkv, cos, sin} → [q, k]): the shaped blocks' q and k, qkv [B,T,(H+Hk)·h] holding no v heads
// (so no lambdas); its gradient 'AttentionInputsQKGrad' ({dq, dk, qkv, cos, sin}) returns dqkv, in one pass too.
// Three forward names, with ve, without, and without v, because tfjs saves a gradient's inputsToSave by name
// and fails on a name the call did not pass: one kernel with an optional ve (or lambdas) could not save it.
// The gradient keeps qkv (the raw projection: the norms' backward needs q_raw and k_raw, λa's needs
// v_raw; the composite keeps the same three as separate split outputs) and recomputes each row's
// rstd from it. 'AttentionInputsGrad' ({dq, dk, dv, qkv, cos, sin, lambdas, ve?, veAccumulated?}) returns
// [dqkv, dlambdas, dve?] in one pass: dqkv written directly (no concat), dve = λb·dv (+ ve's gradient so far), and
// dlambdas = [Σ dv·v_raw, Σ dv·ve] (0 for λb without ve) from deterministic partial sums.
// The tables are constants (never variables) and get no gradient, as for 'Rotary'.
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec, sharedGradients } from '../fused_kernel.ts';

export const ATTENTION_INPUTS = 'AttentionInputs';
export const ATTENTION_INPUTS_VE = 'AttentionInputsVE';
export const ATTENTION_INPUTS_GRAD = 'AttentionInputsGrad';
export const ATTENTION_INPUTS_QK = 'AttentionInputsQK';
export const ATTENTION_INPUTS_QK_GRAD = 'AttentionInputsQKGrad';

export interface AttentionInputsAttrs { numHeads: number; kvHeads: number; qkNorm: boolean; eps: number }

/** The spec of a forward kernel whose qkv holds v heads (Hk of them) or none. */
const spec = (name: string, withV: boolean): FusedKernelSpec<AttentionInputsAttrs> => ({
  name,
  supports: (inputs, { numHeads, kvHeads }) => {
    const width = inputs.qkv.shape[2] ?? 0, heads = numHeads + (withV ? 2 : 1) * kvHeads;
    if (width % heads || (width / heads) % 2) return `qkv width ${width} is not (H + ${withV ? '2·' : ''}Hk)·h with h even`;
    return float32Inputs(inputs, 'qkv', 'cos', 'sin', 'lambdas', 've');
  },
});
export const attentionInputs = spec(ATTENTION_INPUTS, true);
export const attentionInputsVE = spec(ATTENTION_INPUTS_VE, true);
export const attentionInputsQK = spec(ATTENTION_INPUTS_QK, false);

for (const [kernelName, withVe] of [[ATTENTION_INPUTS, false], [ATTENTION_INPUTS_VE, true]] as const) {
  tf.registerGradient({
    kernelName,
    inputsToSave: withVe ? ['qkv', 'cos', 'sin', 'lambdas', 've'] : ['qkv', 'cos', 'sin', 'lambdas'],
    gradFunc: (dys, saved, attrs) => {
      // tfjs passes zeros (made on the host) for an output the loss does not use.
      const [dq, dk, dv] = dys as tf.Tensor[];
      const [qkv, cos, sin, lambdas, ve] = saved;
      const inputs: tf.NamedTensorMap = withVe ? { dq, dk, dv, qkv, cos, sin, lambdas, ve } : { dq, dk, dv, qkv, cos, sin, lambdas };
      // [dqkv, dlambdas, dve?] from one kernel, run by the first of ve's and the lambdas' thunks with the gradients so far it
      // is handed (a value embedding feeds two layers, the lambdas are summed over a gradient accumulation's micro-steps):
      // the kernel adds them in dve's store and dlambdas' final sum, no Add
      const { output, summing } = sharedGradients(({ ve: veAccumulated, lambdas: lambdasAccumulated }) => tf.engine().runKernel(ATTENTION_INPUTS_GRAD,
        { ...inputs, ...(veAccumulated ? { veAccumulated } : {}), ...(lambdasAccumulated ? { lambdasAccumulated } : {}) }, attrs) as tf.Tensor[]);
      const grads: Record<string, () => tf.Tensor> = { qkv: () => output(0), lambdas: summing(1, 'lambdas', withVe ? ['ve'] : []) };
      if (withVe) grads.ve = summing(2, 've', ['lambdas']);
      return grads;
    },
  });
}

tf.registerGradient({
  kernelName: ATTENTION_INPUTS_QK,
  inputsToSave: ['qkv', 'cos', 'sin'],
  gradFunc: (dys, saved, attrs) => {
    const [dq, dk] = dys as tf.Tensor[], [qkv, cos, sin] = saved;
    return { qkv: () => tf.engine().runKernel(ATTENTION_INPUTS_QK_GRAD, { dq, dk, qkv, cos, sin }, attrs) as tf.Tensor };
  },
});
