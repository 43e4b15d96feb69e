import type { TensorInfo } from '@tensorflow/tfjs-core';
import { reshapeInfo } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

// A view with a size-1 axis inserted at `dim` (negative counts from the end, as in tfjs).
export const expandDimsConfig: CudaKernel = {
  kernelName: 'ExpandDims',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.input as TensorInfo;
    const rank = x.shape.length;
    let dim = attrs.dim as number;
    if (dim < 0) dim += rank + 1;
    if (!(dim >= 0 && dim <= rank)) throw new Error(`ExpandDims: dim ${attrs.dim} is outside [${-(rank + 1)}, ${rank}]`);
    const shape = x.shape.slice();
    shape.splice(dim, 0, 1);
    return reshapeInfo(backend, x, shape);
  },
};
