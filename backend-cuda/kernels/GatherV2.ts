import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { bytesPerElement } from '../backend.ts';
import { cast } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

// out[b, o, j, i] = x[b, o, indices[b, j], i]; an out-of-range index reads 0 (the kernel cannot
// throw mid-stream).
export const gatherV2Config: CudaKernel = {
  kernelName: 'GatherV2',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const indices = inputs.indices as TensorInfo;
    const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
    let batchDims = attrs.batchDims as number;
    if (batchDims < 0) batchDims += indices.shape.length;
    const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x as tf.Tensor, indices as tf.Tensor, axis, batchDims);
    const idx = indices.dtype === 'int32' ? indices : cast(backend, indices, 'int32');
    const out = backend.makeOutput(info.outputShape, x.dtype);
    const nIdx = info.batchSize === 0 ? 0 : tf.util.sizeFromShape(indices.shape) / info.batchSize;
    backend.device.gather(bytesPerElement(x.dtype), backend.ptr(x), backend.ptr(idx), backend.ptr(out),
      info.batchSize, info.outerSize, info.dimSize, info.sliceSize, nIdx);
    if (idx !== indices) backend.disposeIntermediateTensorInfo(idx);
    return out;
  },
};
