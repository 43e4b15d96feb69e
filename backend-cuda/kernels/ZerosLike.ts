import type { TensorInfo } from '@tensorflow/tfjs-core';
import { fill } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

export const zerosLikeConfig: CudaKernel = {
  kernelName: 'ZerosLike',
  kernelFunc: ({ inputs, backend }) => fill(backend, (inputs.x as TensorInfo).shape, (inputs.x as TensorInfo).dtype, 0),
};

export const onesLikeConfig: CudaKernel = {
  kernelName: 'OnesLike',
  kernelFunc: ({ inputs, backend }) => fill(backend, (inputs.x as TensorInfo).shape, (inputs.x as TensorInfo).dtype, 1),
};
