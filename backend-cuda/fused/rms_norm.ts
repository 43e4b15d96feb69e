// A fused op, the pattern for the rest: a custom tfjs kernel name with its own registered
// gradient, used where the active backend has the kernel; elsewhere (cpu, wasm) the composite
// tfjs version, which is also the tests' oracle.
//   rmsNorm(x) = x / sqrt(mean(x², last axis) + eps)   (the model's weightless norm())
import * as tf from '@tensorflow/tfjs-core';

export const RMS_NORM = 'RMSNorm';
export const RMS_NORM_GRAD = 'RMSNormGrad';

/** The composite version: any backend, gradients by tfjs autodiff. */
export function rmsNormComposite(x: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))));
}

tf.registerGradient({
  kernelName: RMS_NORM,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved;
    return { x: () => tf.engine().runKernel(RMS_NORM_GRAD, { dy: dy as tf.Tensor, x }, attrs) as tf.Tensor };
  },
});

/** RMSNorm over the last axis: the fused kernel where the backend has one, else the composite. */
export function rmsNorm(x: tf.Tensor, eps = 1e-6): tf.Tensor {
  if (tf.getKernel(RMS_NORM, tf.getBackend()) == null) return rmsNormComposite(x, eps);
  return tf.engine().runKernel(RMS_NORM, { x }, { eps }) as tf.Tensor;
}
