import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { contiguousStrides, stridedCopy } from '../kernel_utils.ts';
import type { CudaBackend } from '../backend.ts';
import type { CudaKernel } from './types.ts';

export function slice(backend: CudaBackend, x: TensorInfo, begin: number[], size: number[]): TensorInfo {
  const out = backend.makeOutput(size, x.dtype);
  const xStrides = contiguousStrides(x.shape);
  const offset = begin.reduce((acc, b, k) => acc + b * xStrides[k], 0);
  stridedCopy(backend, x, offset, xStrides, out, 0, contiguousStrides(size), size);
  return out;
}

export const sliceConfig: CudaKernel = {
  kernelName: 'Slice',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs.begin as number[], attrs.size as number[]);
    tf.slice_util.assertParamsValid(x as tf.Tensor, begin, size);
    return slice(backend, x, begin, size);
  },
};
