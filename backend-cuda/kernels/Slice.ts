import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { contiguousStrides, copyElements, stridedCopy } from '../kernel_utils.ts';
import type { CudaBackend } from '../backend.ts';
import type { CudaKernel } from './types.ts';

export function slice(backend: CudaBackend, x: TensorInfo, begin: number[], size: number[]): TensorInfo {
  const xStrides = contiguousStrides(x.shape);
  const offset = begin.reduce((acc, b, k) => acc + b * xStrides[k], 0);
  const stored = backend.storedValues(x);
  if (stored.bf16) {
    // A slice of a bf16-only activation (the attention gate's channels of the normed input) stays bf16: its bf16 values
    // copied, with no float32 copy of the whole tensor made.
    const y = backend.makeBf16Only(size);
    copyElements(backend, 2, stored.ptr + offset * 2, xStrides, y.ptr, contiguousStrides(size), size);
    return y.out;
  }
  const out = backend.makeOutput(size, x.dtype);
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
