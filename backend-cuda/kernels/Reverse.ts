import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { contiguousStrides, stridedCopy } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

// Reversed axes are read from their last element with a negative stride.
export const reverseConfig: CudaKernel = {
  kernelName: 'Reverse',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const axes = new Set(tf.util.parseAxisParam(attrs.dims as number[], x.shape));
    const xStrides = contiguousStrides(x.shape);
    const out = backend.makeOutput(x.shape, x.dtype);
    let offset = 0;
    const src = xStrides.map((s, k) => {
      if (!axes.has(k)) return s;
      offset += (x.shape[k] - 1) * s;
      return -s;
    });
    stridedCopy(backend, x, offset, src, out, 0, xStrides, x.shape);
    return out;
  },
};
