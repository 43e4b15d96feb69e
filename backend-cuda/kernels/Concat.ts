import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { contiguousStrides, stridedCopy } from '../kernel_utils.ts';
import type { CudaBackend } from '../backend.ts';
import type { CudaKernel } from './types.ts';

/** Each input copied into its slab of the output along `axis`. */
export function concat(backend: CudaBackend, xs: TensorInfo[], axis: number): TensorInfo {
  const outShape = tf.backend_util.computeOutShape(xs.map(x => x.shape), axis);
  const dtype = xs.map(x => x.dtype).reduce((a, b) => tf.upcastType(a, b));
  if (xs.some(x => x.dtype !== dtype)) throw new Error(`Concat of mixed dtypes ${xs.map(x => x.dtype)}`);
  const out = backend.makeOutput(outShape, dtype);
  const outStrides = contiguousStrides(outShape);
  let offset = 0;
  for (const x of xs) {
    stridedCopy(backend, x, 0, contiguousStrides(x.shape), out, offset * outStrides[axis], outStrides, x.shape);
    offset += x.shape[axis];
  }
  return out;
}

export const concatConfig: CudaKernel = {
  kernelName: 'Concat',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const xs = inputs as unknown as TensorInfo[];
    const axis = tf.util.parseAxisParam(attrs.axis as number, xs[0].shape)[0];
    tf.backend_util.assertParamsConsistent(xs.map(x => x.shape), axis);
    return concat(backend, xs, axis);
  },
};
