// Canon B inside the attention's inputs: the kernels train_gpt.ts's canonAttentionInputs() hands to a backend that
// registers them (runFused), and their gradient. The composite, attentionInputs() of canon() with the q and k heads
// normed where qkNorm (train_gpt.ts), is the implementation everywhere else and the tests' oracle.
//   inputs x [B,T,(H+2·Hk)·h] float32 (the QKV projection's output: q heads, k heads, v heads), w [(H+2·Hk)·h, 4] (Canon
//   B's taps, canon_conv.ts's), docIds int32 [B,T], cos and sin [1,T,1,h/2], lambdas [2] = [λa, λb], and for
//   'CanonAttentionInputsVE' the value embeddings ve [B,T,Hk,h]; attrs AttentionInputsAttrs (numHeads, kvHeads, qkNorm,
//   eps). Outputs q [B,T,H,h], k and v [B,T,Hk,h]: attention_inputs.ts's outputs for qkv = canon(x) (with its norm in the
//   Canon layer: the taps read the normed q and k heads, and the heads are not normed again after).
// Two forward names, with ve and without, as AttentionInputs has (tfjs saves a gradient's inputs by name). The gradient
// keeps x (not Canon's output: the backward makes what it needs of it from x's rows) and 'CanonAttentionInputsGrad'
// ({dq, dk, dv, x, w, docIds, cos, sin, lambdas, ve?, veAccumulated?, wAccumulated?, lambdasAccumulated?}) returns [dx, dw,
// dlambdas, dve?] in one pass: dx where canon_conv.ts's gradient would (x is a projection's output), dw summed in a fixed
// order, dlambdas and dve as AttentionInputsGrad's, with the gradients so far of ve, w and the lambdas added in.
import * as tf from '@tensorflow/tfjs-core';
import type { AttentionInputsAttrs } from '../attention_inputs/attention_inputs.ts';
import { float32Inputs, type FusedKernelSpec, sharedGradients } from '../fused_kernel.ts';

export const CANON_ATTENTION_INPUTS = 'CanonAttentionInputs';
export const CANON_ATTENTION_INPUTS_VE = 'CanonAttentionInputsVE';
export const CANON_ATTENTION_INPUTS_GRAD = 'CanonAttentionInputsGrad';

/** Why the kernels cannot take heads of h channels, or true: a lane holds 4 channels of one half of a head and its pair's
 * lane sits in the same warp, so h is a power of two from 8 to 128. */
export function canonHeadsFit(h: number): true | string {
  return (h >= 8 && h <= 128 && (h & (h - 1)) === 0) || `heads of ${h} channels (the kernel takes a power of two from 8 to 128)`;
}

const spec = (name: string): FusedKernelSpec<AttentionInputsAttrs> => ({
  name,
  supports: (inputs, { numHeads, kvHeads }) => {
    const { x, w, docIds } = inputs, width = x.shape[2] ?? 0, heads = numHeads + 2 * kvHeads;
    if (x.rank !== 3 || width % heads !== 0) return `x [${x.shape}] is not [B,T,(H + 2·Hk)·h] for H = ${numHeads}, Hk = ${kvHeads}`;
    if (w.shape.join() !== [width, 4].join()) return `w [${w.shape}] is not [${width},4]`;
    if (docIds.dtype !== 'int32') return 'docIds must be int32';
    const fits = canonHeadsFit(width / heads);
    return fits !== true ? fits : float32Inputs(inputs, 'x', 'w', 'cos', 'sin', 'lambdas', 've');
  },
});
export const canonAttentionInputs = spec(CANON_ATTENTION_INPUTS);
export const canonAttentionInputsVE = spec(CANON_ATTENTION_INPUTS_VE);

for (const [kernelName, withVe] of [[CANON_ATTENTION_INPUTS, false], [CANON_ATTENTION_INPUTS_VE, true]] as const) {
  tf.registerGradient({
    kernelName,
    inputsToSave: ['x', 'w', 'docIds', 'cos', 'sin', 'lambdas', ...(withVe ? ['ve'] : [])],
    gradFunc: (dys, saved, attrs) => {
      const [dq, dk, dv] = dys as tf.Tensor[];
      const [x, w, docIds, cos, sin, lambdas, ve] = saved;
      const inputs: tf.NamedTensorMap = { dq, dk, dv, x, w, docIds, cos, sin, lambdas, ...(withVe ? { ve } : {}) };
      // [dx, dw, dlambdas, dve?] from one kernel, run by the first thunk to ask, with the gradients so far of ve, w and the
      // lambdas added in its stores (attention_inputs.ts's gradient: a value embedding feeds two layers; w and the lambdas
      // sum over a gradient accumulation's micro-steps)
      const { output, summing } = sharedGradients(({ ve: veAccumulated, w: wAccumulated, lambdas: lambdasAccumulated }) => tf.engine().runKernel(
        CANON_ATTENTION_INPUTS_GRAD, { ...inputs, ...(veAccumulated ? { veAccumulated } : {}), ...(wAccumulated ? { wAccumulated } : {}),
          ...(lambdasAccumulated ? { lambdasAccumulated } : {}) }, attrs) as tf.Tensor[]);
      const others = (input: string) => ['w', 'lambdas', ...(withVe ? ['ve'] : [])].filter((o) => o !== input);
      const grads: Record<string, () => tf.Tensor> = { x: () => output(0), w: summing(1, 'w', others('w')), lambdas: summing(2, 'lambdas', others('lambdas')) };
      if (withVe) grads.ve = summing(3, 've', others('ve'));
      return grads;
    },
  });
}
