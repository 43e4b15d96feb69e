import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { reshapeInfo } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

// A view: same buffer, new shape (the dataId's refcount goes up by one).
export const reshapeConfig: CudaKernel = {
  kernelName: 'Reshape',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const size = tf.util.sizeFromShape(x.shape);
    const shape = tf.util.inferFromImplicitShape(attrs.shape as number[], size);
    if (tf.util.sizeFromShape(shape) !== size) {
      throw new Error(`cannot reshape [${x.shape}] (${size} elements) to [${shape}]`);
    }
    return reshapeInfo(backend, x, shape);
  },
};
