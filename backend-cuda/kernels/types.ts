// The shape of one kernel of this backend; register_all_kernels.ts adds the backend's name and the
// error context (kernel name, input shapes) when it registers them.
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { CudaBackend } from '../backend.ts';

export interface CudaKernelArgs {
  inputs: NamedTensorInfoMap;
  backend: CudaBackend;
  attrs: NamedAttrMap;
}

export interface CudaKernel {
  kernelName: string;
  kernelFunc: (args: CudaKernelArgs) => TensorInfo | TensorInfo[];
}
