import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { contiguousStrides, copyElements, stridedCopy } from '../kernel_utils.ts';
import type { CudaBackend } from '../backend.ts';
import type { CudaKernel } from './types.ts';

/** Each input copied into its slab of the output along `axis`. */
export function concat(backend: CudaBackend, xs: TensorInfo[], axis: number): TensorInfo {
  const outShape = tf.backend_util.computeOutShape(xs.map(x => x.shape), axis);
  const dtype = xs.map(x => x.dtype).reduce((a, b) => tf.upcastType(a, b));
  if (xs.some(x => x.dtype !== dtype)) throw new Error(`Concat of mixed dtypes ${xs.map(x => x.dtype)}`);
  const outStrides = contiguousStrides(outShape);
  const slabs = (copy: (x: TensorInfo, at: number, i: number) => void) => {
    let offset = 0;
    xs.forEach((x, i) => {
      copy(x, offset * outStrides[axis], i);
      offset += x.shape[axis];
    });
  };
  const stored = xs.map(x => backend.storedValues(x));
  if (stored.every(v => v.bf16)) {
    // Inputs all bf16-only (Canon B's normed q, k and v) give a bf16-only output: their bf16 values copied, with no
    // float32 copy of each input made (and kept: tfjs saves Concat's inputs for its gradient).
    const y = backend.makeBf16Only(outShape);
    slabs((x, at, i) => copyElements(backend, 2, stored[i].ptr, contiguousStrides(x.shape), y.ptr + at * 2, outStrides, x.shape));
    return y.out;
  }
  const out = backend.makeOutput(outShape, dtype);
  slabs((x, at) => stridedCopy(backend, x, 0, contiguousStrides(x.shape), out, at, outStrides, x.shape));
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
