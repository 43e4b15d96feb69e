import type { TensorInfo } from '@tensorflow/tfjs-core';
import { contiguousStrides, fill, stridedCopy } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

// Fill the padded shape with the constant, then copy x into its interior.
export const padV2Config: CudaKernel = {
  kernelName: 'PadV2',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const paddings = attrs.paddings as Array<[number, number]>;
    const outShape = x.shape.map((d, k) => paddings[k][0] + d + paddings[k][1]);
    const out = fill(backend, outShape, x.dtype, attrs.constantValue as number);
    const outStrides = contiguousStrides(outShape);
    const offset = paddings.reduce((acc, [before], k) => acc + before * outStrides[k], 0);
    stridedCopy(backend, x, 0, contiguousStrides(x.shape), out, offset, outStrides, x.shape);
    return out;
  },
};
