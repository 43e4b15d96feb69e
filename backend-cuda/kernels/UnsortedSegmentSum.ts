import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { checkDtype } from '../backend.ts';
import { DTYPE } from '../device.ts';
import { cast, fill } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

// The gradient of Gather: out[ids[r], ...] += x[r, ...] by atomic adds into a zeroed output.
export const unsortedSegmentSumConfig: CudaKernel = {
  kernelName: 'UnsortedSegmentSum',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const ids = inputs.segmentIds as TensorInfo;
    const numSegments = attrs.numSegments as number;
    const dtype = x.dtype === 'bool' ? 'int32' : x.dtype;
    const xc = x.dtype === dtype ? x : cast(backend, x, dtype);
    const idc = ids.dtype === 'int32' ? ids : cast(backend, ids, 'int32');
    const rows = tf.util.sizeFromShape(ids.shape);
    const rest = x.shape.slice(ids.shape.length);
    const out = fill(backend, [numSegments, ...rest], dtype, 0);
    backend.device.segmentSum(DTYPE[checkDtype(dtype, 'UnsortedSegmentSum')], backend.ptr(xc), backend.ptr(idc), backend.ptr(out),
      rows, tf.util.sizeFromShape(rest), numSegments);
    if (xc !== x) backend.disposeIntermediateTensorInfo(xc);
    if (idc !== ids) backend.disposeIntermediateTensorInfo(idc);
    return out;
  },
};
