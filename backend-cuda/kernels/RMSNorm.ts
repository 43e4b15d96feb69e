// The fused RMSNorm kernels (native/rmsnorm.cu) behind fused/rms_norm.ts: 'RMSNorm' and its
// gradient kernel 'RMSNormGrad', over the last axis, float32.
import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { RMS_NORM, RMS_NORM_GRAD } from '../fused/rms_norm.ts';
import type { CudaKernel } from './types.ts';

function rowsCols(x: TensorInfo): [number, number] {
  if (x.dtype !== 'float32') throw new Error(`RMSNorm needs float32, got ${x.dtype}`);
  const cols = x.shape.length === 0 ? 1 : x.shape[x.shape.length - 1];
  return [cols === 0 ? 0 : tf.util.sizeFromShape(x.shape) / cols, cols];
}

export const rmsNormKernels: CudaKernel[] = [
  {
    kernelName: RMS_NORM,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const x = inputs.x as TensorInfo;
      const [rows, cols] = rowsCols(x);
      const y = backend.makeOutput(x.shape, 'float32');
      backend.device.rmsNorm(backend.ptr(x), backend.ptr(y), rows, cols, attrs.eps as number);
      return y;
    },
  },
  {
    kernelName: RMS_NORM_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const x = inputs.x as TensorInfo, dy = inputs.dy as TensorInfo;
      const [rows, cols] = rowsCols(x);
      const dx = backend.makeOutput(x.shape, 'float32');
      backend.device.rmsNormGrad(backend.ptr(dy), backend.ptr(x), backend.ptr(dx), rows, cols, attrs.eps as number);
      return dx;
    },
  },
];
