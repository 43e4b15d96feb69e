// Fused rotary position embedding: the kernel train_gpt.ts's rotary() hands to a backend that
// registers 'Rotary' (runFused), and its gradient. The composite rotary() in train_gpt.ts (split,
// four Multiplies, Add, Sub, concat) is the implementation everywhere else and the tests' oracle.
//   inputs x [B,T,H,h] float32 (h even), cos and sin [1,T,1,h/2] (train_gpt.ts's rotaryTables);
//   with x1, x2 the halves of x's last axis: y = concat(x1·cos + x2·sin, x2·cos − x1·sin).
// The gradient is the transpose rotation of dy ('RotaryGrad': the same native kernel with sin
// negated), so nothing but the tables is saved. The tables are constants (never variables): they
// get no gradient, and differentiating with respect to them fails in tfjs ("Cannot backprop through
// input cos") instead of saving x for a gradient nothing needs.
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const ROTARY = 'Rotary';
export const ROTARY_GRAD = 'RotaryGrad';

export const rotary: FusedKernelSpec = {
  name: ROTARY,
  supports: ({ x, cos, sin }) => x.rank !== 4 || (x.shape[3] ?? 0) % 2 ? `x [${x.shape}] is not [B,T,H,h] with h even` : float32Inputs({ x, cos, sin }, 'x', 'cos', 'sin'),
};

tf.registerGradient({
  kernelName: ROTARY,
  inputsToSave: ['cos', 'sin'],
  gradFunc: (dy, saved) => {
    const [cos, sin] = saved;
    return { x: () => tf.engine().runKernel(ROTARY_GRAD, { dy: dy as tf.Tensor, cos, sin }, {}) as tf.Tensor };
  },
});
