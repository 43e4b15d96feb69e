import type { TensorInfo } from '@tensorflow/tfjs-core';
import { reshapeInfo } from '../kernel_utils.ts';
import { concat } from './Concat.ts';
import type { CudaKernel } from './types.ts';

// tf.stack: each input viewed with a unit axis inserted, then concatenated along it.
export const packConfig: CudaKernel = {
  kernelName: 'Pack',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const xs = inputs as unknown as TensorInfo[];
    const rank = xs[0].shape.length;
    const axis = (attrs.axis as number) < 0 ? (attrs.axis as number) + rank + 1 : (attrs.axis as number);
    const views = xs.map(x => {
      const shape = x.shape.slice();
      shape.splice(axis, 0, 1);
      return reshapeInfo(backend, x, shape);
    });
    const out = concat(backend, views, axis);
    views.forEach(v => backend.disposeIntermediateTensorInfo(v));
    return out;
  },
};
