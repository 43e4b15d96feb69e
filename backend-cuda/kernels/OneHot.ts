import * as tf from '@tensorflow/tfjs-core';
import type { DataType, TensorInfo } from '@tensorflow/tfjs-core';
import { checkDtype } from '../backend.ts';
import { DTYPE } from '../device.ts';
import { cast } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

export const oneHotConfig: CudaKernel = {
  kernelName: 'OneHot',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const indices = inputs.indices as TensorInfo;
    const depth = attrs.depth as number;
    const dtype = attrs.dtype as DataType;
    const idx = indices.dtype === 'int32' ? indices : cast(backend, indices, 'int32');
    const out = backend.makeOutput([...indices.shape, depth], dtype);
    backend.device.oneHot(DTYPE[checkDtype(dtype, 'OneHot')], backend.ptr(idx), backend.ptr(out), tf.util.sizeFromShape(indices.shape),
      depth, attrs.onValue as number, attrs.offValue as number);
    if (idx !== indices) backend.disposeIntermediateTensorInfo(idx);
    return out;
  },
};
