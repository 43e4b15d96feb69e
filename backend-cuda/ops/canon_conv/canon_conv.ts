// Fused Canon layer: the kernel train_gpt.ts's canon() hands to a backend that registers 'CanonConv' (runFused),
// and its gradient. The composite (three padded, masked shifts of x and their weighted sum) is the
// implementation everywhere else and the tests' oracle.
//   inputs x [B,T,C] float32, w [C,4] float32 (tap k multiplies the token 3 − k back; tap 3 the token itself,
//   on top of the residual), docIds int32 [B,T]; output y [B,T,C]: y = x + Σ_k w[:,k]⊙x_{t−3+k}, a tap reading
//   zero before the sequence or across a document start.
//   attrs (CanonAttrs) normChannels, normGroup, eps: Canon B under QK-norm convolves z, x with each head of normGroup
//   channels among its first normChannels RMS-normed (eps); normChannels 0: z = x. rowNorm: Canon A and C convolve z =
//   rmsNorm(x) over whole rows (x the residual stream; the gradient kernel takes dx through the norm too, summing the
//   residual's gradient in: input accumulated). leading (with rowNorm; 0: none): a second output, z's first `leading`
//   channels of each row (Canon A's normed input as the attention gate's input, made in the same pass), whose gradient
//   the gradient kernel takes as the input dLead. xFromProjection: x is a projection's output (Canon B and D), so dx
//   feeds only its gradient matmuls (a backend may store dx as they read it, in bf16). relu2: y = relu(the conv)², Canon
//   D and the relu2 MLP's activation in one op (no norm), whose gradient kernel takes dy of that.
// The gradient kernel ('CanonConvGrad', one call for both; accumulated: the row norm's x's gradient so far;
// wAccumulated: w's; dLead: the second output's) returns [dx, dw], dw summed in a fixed order.
import * as tf from '@tensorflow/tfjs-core';
import { type FusedKernelSpec, sharedGradients } from '../fused_kernel.ts';

export const CANON_CONV = 'CanonConv';
export const CANON_CONV_GRAD = 'CanonConvGrad';

/** The norm before the taps: Canon B's (heads of normGroup channels among the first normChannels) or Canon A's and C's
 * (rowNorm: whole rows), and with the row norm its first `leading` channels as a second output (0: none); whether x is a
 * projection's output (whose gradient only that projection's matmuls read); relu2: the relu2 MLP's activation after the
 * taps (Canon D). */
export interface CanonAttrs {
  normChannels: number; normGroup: number; eps: number; rowNorm: boolean; leading: number; xFromProjection: boolean; relu2: boolean;
}

/** The most leading channels the fused kernel gives as a second output (kCanonMaxLeadCols in canon_conv.h). */
export const CANON_MAX_LEADING = 32;

/** Why the fused kernel cannot norm heads of `group` channels over the first `channels` of C (and the rows, where
 * rowNorm), or true: the head's channels must be the lanes of one warp (4 each: a power of two from 4 to 128) and C a
 * multiple of 4; one norm at a time. */
export function canonNormFits(channels: number, group: number, C: number, rowNorm: boolean, relu2: boolean, leading = 0): true | string {
  if (channels > 0 && rowNorm) return `a head norm (over ${channels} channels) and the row norm together`;
  if (leading !== 0 && !rowNorm) return `${leading} leading channels without the row norm (they are its output's)`;
  // the leading channels go whole vectors of 4 a thread (where the row does), up to kCanonMaxLeadCols
  if (leading !== 0 && !(Number.isInteger(leading) && leading > 0 && leading % 4 === 0 && leading <= Math.min(C, CANON_MAX_LEADING))) {
    return `${leading} leading channels of ${C} (the kernel takes a multiple of 4 up to ${Math.min(C, CANON_MAX_LEADING)})`;
  }
  // the row norm's gradient takes a row a block: a thread 4 channels (1 where C is not a multiple of 4), up to 512
  if (rowNorm && (C % 4 === 0 ? C / 4 : C) > 512) return `the row norm over ${C} channels (the kernel takes up to 2048, a multiple of 4, or 512)`;
  if (relu2 && (channels > 0 || rowNorm)) return 'relu2 with a norm (relu2 is Canon D\'s, which has none)';
  if (channels === 0) return true;
  const fits = group >= 4 && group <= 128 && (group & (group - 1)) === 0 && channels % group === 0 && channels <= C && C % 4 === 0;
  return fits || `a head norm over ${channels} of ${C} channels in heads of ${group} (the kernel takes heads of 4 to 128 channels, a power of two, and C a multiple of 4)`;
}

export const canonConv: FusedKernelSpec<CanonAttrs> = {
  name: CANON_CONV,
  supports: ({ x, w, docIds }, { normChannels, normGroup, rowNorm, relu2, leading }) => x.rank !== 3 || w.rank !== 2 || w.shape[1] !== 4 || w.shape[0] !== x.shape[2]
    ? `x [${x.shape}] and w [${w.shape}] are not [B,T,C] and [C,4]`
    : x.dtype !== 'float32' || w.dtype !== 'float32' || docIds.dtype !== 'int32' ? 'x and w must be float32 and docIds int32'
    : canonNormFits(normChannels, normGroup, x.shape[2]!, rowNorm, relu2, leading),
};

tf.registerGradient({
  kernelName: CANON_CONV,
  inputsToSave: ['x', 'w', 'docIds'],
  gradFunc: (dys, saved, attrs) => {
    const [x, w, docIds] = saved;
    // with attr leading, the gradients of both outputs (tfjs gives zeros for an unused one): the second's goes in as dLead
    const [dy, dLead] = Array.isArray(dys) ? dys : [dys];
    // [dx, dw] from one run, shared by the thunks (see scaled_add.ts). With the row norm, x (the residual stream) sums:
    // the run adds x's gradient so far (the residual add's, which tfjs_node.ts's backward hands to x's thunk) into dx. w's
    // gradient so far (a gradient accumulation's earlier micro-steps: variableGradsSummed) is added into dw.
    const { output, summing } = sharedGradients(({ x: accumulated, w: wAccumulated }) => tf.engine().runKernel(CANON_CONV_GRAD,
      { dy, x, w, docIds, ...(dLead ? { dLead } : {}), ...(accumulated ? { accumulated } : {}), ...(wAccumulated ? { wAccumulated } : {}) },
      attrs) as tf.Tensor[]);
    return {
      x: attrs.rowNorm ? summing(0, 'x', ['w']) : () => output(0), w: summing(1, 'w', attrs.rowNorm ? ['x'] : []),
      docIds: () => tf.zerosLike(docIds),
    };
  },
});
