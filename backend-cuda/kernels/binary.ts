// The binary elementwise kernels with broadcasting: one table row per tfjs kernel.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { binary } from '../kernel_utils.ts';
import { BINARY, type BinaryName } from '../device.ts';
import type { CudaKernel } from './types.ts';

export const binaryKernels: CudaKernel[] = (Object.keys(BINARY) as BinaryName[]).map(name => ({
  kernelName: name,
  kernelFunc: ({ inputs, backend }) => binary(backend, name, inputs.a as TensorInfo, inputs.b as TensorInfo),
}));
