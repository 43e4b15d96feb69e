// Fused SwiGLU activation y = silu(g)·u over the up projection's rows [g | u]: the kernel train_gpt.ts's swiglu()
// hands to a backend that registers 'Swiglu' (runFused), and its gradient. The composite (split, Sigmoid, two
// Multiplies) is the implementation everywhere else and the tests' oracle.
//   input x [..., 2F] float32 (the gate half, then the value half); output [..., F];
//   gradient ('SwigluGrad', one kernel): dx = [dy·u·σ(g)·(1 + g·(1 − σ(g))) | dy·g·σ(g)].
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const SWIGLU = 'Swiglu';
export const SWIGLU_GRAD = 'SwigluGrad';

export const swiglu: FusedKernelSpec = {
  name: SWIGLU,
  supports: ({ x }) => x.rank < 1 || (x.shape[x.rank - 1] ?? 0) % 2 ? `x [${x.shape}] has no even last axis` : float32Inputs({ x }, 'x'),
};

tf.registerGradient({
  kernelName: SWIGLU,
  inputsToSave: ['x'],
  gradFunc: (dy, saved) => {
    const [x] = saved;
    return { x: () => tf.engine().runKernel(SWIGLU_GRAD, { dy: dy as tf.Tensor, x }, {}) as tf.Tensor };
  },
});
