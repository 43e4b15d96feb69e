import type { TensorInfo } from '@tensorflow/tfjs-core';
import { transpose } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

export const transposeConfig: CudaKernel = {
  kernelName: 'Transpose',
  kernelFunc: ({ inputs, backend, attrs }) => transpose(backend, inputs.x as TensorInfo, attrs.perm as number[]),
};
