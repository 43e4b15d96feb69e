// Gradients of Sum and Mean that broadcast dy on the device. tfjs's own multiply dy by ones(x.shape),
// and tf.ones fills that array on the host and uploads it: for the logSumExp over the speedrun's
// logits ([B·T, 50304], 824 MB at B = 2) that was ~1.6 s of host time per micro-step, most of a step
// (measured with node --cpu-prof on an H100). The maths is the same on every backend (the registry of
// gradients is global), so registering them for all backends is safe.
import * as tf from '@tensorflow/tfjs-core';

/** dy [reduced shape] → dy / divisor broadcast back over the reduced axes of x. */
function broadcastBack(dy: tf.Tensor, x: tf.Tensor, axis: number | number[], divisor: number): tf.Tensor {
  const axes = tf.util.parseAxisParam(axis, x.shape);
  const expanded = x.shape.slice();
  for (const a of axes) expanded[a] = 1;
  let g = tf.reshape(dy.dtype === 'float32' ? dy : tf.cast(dy, 'float32'), expanded);
  if (divisor !== 1) g = tf.div(g, divisor);
  return tf.broadcastTo(g, x.shape);
}

export function registerReductionGradients(): void {
  tf.registerGradient({
    kernelName: 'Sum',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      return { x: () => broadcastBack(dy as tf.Tensor, x, attrs.axis as number | number[], 1) };
    },
  });
  tf.registerGradient({
    kernelName: 'Mean',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
      const reduceSize = axes.reduce((n, a) => n * x.shape[a], 1);
      return { x: () => broadcastBack(dy as tf.Tensor, x, axes, reduceSize) };
    },
  });
}
