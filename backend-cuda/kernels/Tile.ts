import type { TensorInfo } from '@tensorflow/tfjs-core';
import { contiguousStrides, stridedCopy } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

// out[r_0·d_0 + i_0, ...] = x[i_0, ...]: a strided copy over the doubled index space
// [reps_0, d_0, reps_1, d_1, ...] with source stride 0 along each reps axis.
export const tileConfig: CudaKernel = {
  kernelName: 'Tile',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const reps = attrs.reps as number[];
    const outShape = x.shape.map((d, k) => d * reps[k]);
    const out = backend.makeOutput(outShape, x.dtype);
    const xStrides = contiguousStrides(x.shape);
    const outStrides = contiguousStrides(outShape);
    const dims = x.shape.flatMap((d, k) => [reps[k], d]);
    const src = x.shape.flatMap((_, k) => [0, xStrides[k]]);
    const dst = x.shape.flatMap((d, k) => [d * outStrides[k], outStrides[k]]);
    stridedCopy(backend, x, 0, src, out, 0, dst, dims);
    return out;
  },
};
