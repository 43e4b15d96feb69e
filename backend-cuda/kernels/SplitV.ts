import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { slice } from './Slice.ts';
import type { CudaKernel } from './types.ts';

export const splitVConfig: CudaKernel = {
  kernelName: 'SplitV',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x, attrs.numOrSizeSplits as number[] | number, axis);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map(s => {
      const size = x.shape.slice();
      size[axis] = s;
      const part = slice(backend, x, begin.slice(), size);
      begin[axis] += s;
      return part;
    });
  },
};
