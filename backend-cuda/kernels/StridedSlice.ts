import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { contiguousStrides, reshapeInfo, stridedCopy } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

// tfjs resolves masks and negative indices (slice_util.sliceInfo); what is left is a strided copy
// with source strides scaled by the slice strides (negative ones walk backwards).
export const stridedSliceConfig: CudaKernel = {
  kernelName: 'StridedSlice',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const info = tf.slice_util.sliceInfo(x.shape, attrs.begin as number[], attrs.end as number[], attrs.strides as number[],
      attrs.beginMask as number, attrs.endMask as number, attrs.ellipsisMask as number, attrs.newAxisMask as number,
      attrs.shrinkAxisMask as number);
    if (info.isIdentity) return reshapeInfo(backend, x, info.finalShape);
    // One extent per axis of x (shrunk and new axes are only a reshape of the result).
    const dims = tf.slice_util.computeOutShape(info.begin, info.end, info.strides);
    const out = backend.makeOutput(info.finalShape, x.dtype);
    if (tf.util.sizeFromShape(info.finalShape) === 0) return out;
    const xStrides = contiguousStrides(x.shape);
    const offset = info.begin.reduce((acc, b, k) => acc + b * xStrides[k], 0);
    stridedCopy(backend, x, offset, info.strides.map((s, k) => s * xStrides[k]), out, 0, contiguousStrides(dims), dims);
    return out;
  },
};
