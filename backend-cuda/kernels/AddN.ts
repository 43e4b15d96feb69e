import type { TensorInfo } from '@tensorflow/tfjs-core';
import { binary, identity } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

// Sum of n same-shaped tensors as a chain of n-1 adds.
export const addNConfig: CudaKernel = {
  kernelName: 'AddN',
  kernelFunc: ({ inputs, backend }) => {
    const xs = inputs as unknown as TensorInfo[];
    let acc = identity(backend, xs[0]);
    for (let i = 1; i < xs.length; i++) {
      const next = binary(backend, 'Add', acc, xs[i]);
      backend.disposeIntermediateTensorInfo(acc);
      acc = next;
    }
    return acc;
  },
};
