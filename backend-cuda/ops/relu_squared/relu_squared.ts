// Fused ReLU², the MLP's activation: the kernel train_gpt.ts's reluSquared() hands to a backend that
// registers 'ReluSquared' (runFused), and its gradient. The composite tf.relu(x).square() is the
// implementation everywhere else and the tests' oracle.
//   forward y = relu(x)², gradient dx = dy·2·relu(x) ('ReluSquaredGrad', from the saved x).
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const RELU_SQUARED = 'ReluSquared';
export const RELU_SQUARED_GRAD = 'ReluSquaredGrad';

export const reluSquared: FusedKernelSpec = { name: RELU_SQUARED, supports: inputs => float32Inputs(inputs, 'x') };

tf.registerGradient({
  kernelName: RELU_SQUARED,
  inputsToSave: ['x'],
  gradFunc: (dy, saved) => {
    const [x] = saved;
    return { x: () => tf.engine().runKernel(RELU_SQUARED_GRAD, { dy: dy as tf.Tensor, x }, {}) as tf.Tensor };
  },
});
