import type { DataType } from '@tensorflow/tfjs-core';
import { fill } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

export const fillConfig: CudaKernel = {
  kernelName: 'Fill',
  kernelFunc: ({ backend, attrs }) => {
    const dtype = (attrs.dtype as DataType | undefined) ?? (typeof attrs.value === 'number' ? 'float32' : 'string');
    return fill(backend, attrs.shape as number[], dtype, attrs.value as number);
  },
};
