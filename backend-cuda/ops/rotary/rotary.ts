// Fused rotary position embedding: the kernel train_gpt.ts's rotary() hands to a backend that
// registers 'Rotary' (runFused), and its gradient. The composite rotary() in train_gpt.ts (split,
// four Multiplies, Add, Sub, concat) is the implementation everywhere else and the tests' oracle.
//   inputs x [B,T,H,h] float32 (h even), cos and sin [1,T,1,h/2] (train_gpt.ts's rotaryTables);
//   with x1, x2 the halves of x's last axis: y = concat(x1·cos + x2·sin, x2·cos − x1·sin).
// The gradient is the transpose rotation of dy ('RotaryGrad': the same native kernel with sin
// negated), so nothing but the tables is saved. The tables are constants (never variables): they
// get no gradient, and differentiating with respect to them fails in tfjs ("Cannot backprop through
// input cos") instead of saving x for a gradient nothing needs.
// 'NormedRotary' ({x, cos, sin} → y, attr eps): rotary(rmsNorm(x)) over each head, the shaped blocks' q and k under
// QK-norm, in one pass; its gradient ('NormedRotaryGrad', {dy, x, cos, sin} → dx) keeps x, which the norm kept.
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const ROTARY = 'Rotary';
export const ROTARY_GRAD = 'RotaryGrad';

export const rotary: FusedKernelSpec = {
  name: ROTARY,
  supports: ({ x, cos, sin }) => x.rank !== 4 || (x.shape[3] ?? 0) % 2 ? `x [${x.shape}] is not [B,T,H,h] with h even` : float32Inputs({ x, cos, sin }, 'x', 'cos', 'sin'),
};

export const NORMED_ROTARY = 'NormedRotary';
export const NORMED_ROTARY_GRAD = 'NormedRotaryGrad';

/** Why the fused kernel cannot norm and turn heads of h channels, or true: a head's h / 8 lanes (4 pairs each) must
 * be a power of two within a warp (h = 8, 16, …, 256). */
export function normedRotaryFits(h: number): true | string {
  const lanes = h / 8;
  return Number.isInteger(lanes) && lanes >= 1 && lanes <= 32 && (lanes & (lanes - 1)) === 0 ? true
    : `heads of ${h} (the kernel takes 8, 16, …, 256: 4 pairs a lane, a head's lanes a power of two within a warp)`;
}

export const normedRotary: FusedKernelSpec<{ eps: number }> = {
  name: NORMED_ROTARY,
  supports: ({ x, cos, sin }) => x.rank !== 4 ? `x [${x.shape}] is not [B,T,H,h]`
    : normedRotaryFits(x.shape[3]!) === true ? float32Inputs({ x, cos, sin }, 'x', 'cos', 'sin') : normedRotaryFits(x.shape[3]!),
};

tf.registerGradient({
  kernelName: NORMED_ROTARY,
  inputsToSave: ['x', 'cos', 'sin'],
  gradFunc: (dy, saved, attrs) => {
    const [x, cos, sin] = saved;
    return { x: () => tf.engine().runKernel(NORMED_ROTARY_GRAD, { dy: dy as tf.Tensor, x, cos, sin }, attrs) as tf.Tensor };
  },
});

tf.registerGradient({
  kernelName: ROTARY,
  inputsToSave: ['cos', 'sin'],
  gradFunc: (dy, saved) => {
    const [cos, sin] = saved;
    return { x: () => tf.engine().runKernel(ROTARY_GRAD, { dy: dy as tf.Tensor, cos, sin }, {}) as tf.Tensor };
  },
});
