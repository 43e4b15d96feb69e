import type { TensorInfo } from '@tensorflow/tfjs-core';
import { identity } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

export const identityConfig: CudaKernel = {
  kernelName: 'Identity',
  kernelFunc: ({ inputs, backend }) => identity(backend, inputs.x as TensorInfo),
};
