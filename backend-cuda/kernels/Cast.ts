import type { DataType, TensorInfo } from '@tensorflow/tfjs-core';
import { cast } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

// float32 → int32 truncates toward zero; anything → bool is (x != 0).
export const castConfig: CudaKernel = {
  kernelName: 'Cast',
  kernelFunc: ({ inputs, backend, attrs }) => cast(backend, inputs.x as TensorInfo, attrs.dtype as DataType),
};
