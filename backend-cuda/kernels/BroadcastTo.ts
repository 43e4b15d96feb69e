import type { TensorInfo } from '@tensorflow/tfjs-core';
import { broadcastTo } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

export const broadcastToConfig: CudaKernel = {
  kernelName: 'BroadcastTo',
  kernelFunc: ({ inputs, backend, attrs }) => broadcastTo(backend, inputs.x as TensorInfo, attrs.shape as number[]),
};
