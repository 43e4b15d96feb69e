import type { TensorInfo } from '@tensorflow/tfjs-core';
import { reshapeInfo } from '../kernel_utils.ts';
import { slice } from './Slice.ts';
import type { CudaKernel } from './types.ts';

// tf.unstack: one slice per index along `axis`, the axis dropped.
export const unpackConfig: CudaKernel = {
  kernelName: 'Unpack',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.value as TensorInfo;
    const axis = (attrs.axis as number) < 0 ? (attrs.axis as number) + x.shape.length : (attrs.axis as number);
    const outShape = x.shape.filter((_, k) => k !== axis);
    const size = x.shape.slice();
    size[axis] = 1;
    const outs: TensorInfo[] = [];
    for (let i = 0; i < x.shape[axis]; i++) {
      const begin = new Array<number>(x.shape.length).fill(0);
      begin[axis] = i;
      const part = slice(backend, x, begin, size);
      outs.push(reshapeInfo(backend, part, outShape));
      backend.disposeIntermediateTensorInfo(part);
    }
    return outs;
  },
};
