// The fused RMSNorm's cuda kernels: 'RMSNorm' and its gradient kernel 'RMSNormGrad', over the last axis,
// float32, over rms_norm.cu's launchers.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { input, numberAttr } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { RMS_NORM, RMS_NORM_GRAD } from './rms_norm.ts';

/** rms_norm.cu's launchers (host.ts is their CPU reference). */
export interface RmsNormNative {
  /** y = x·(mean(x²) + eps)^-½ over rows of `cols`. */
  rmsNorm(x: number, y: number, rows: number, cols: number, eps: number): void;
  rmsNormGrad(dy: number, x: number, dx: number, rows: number, cols: number, eps: number): void;
}

function rowsCols(kernel: string, inputs: NamedTensorInfoMap): [TensorInfo, number, number] {
  const x = input(kernel, inputs, 'x');
  const cols = x.shape.length === 0 ? 1 : x.shape[x.shape.length - 1];
  return [x, cols === 0 ? 0 : tf.util.sizeFromShape(x.shape) / cols, cols];
}

export const rmsNormKernels: CudaKernel[] = [
  {
    kernelName: RMS_NORM,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const [x, rows, cols] = rowsCols(RMS_NORM, inputs);
      const y = backend.makeOutput(x.shape, 'float32');
      backend.device.rmsNorm(backend.ptr(x), backend.ptr(y), rows, cols, numberAttr(RMS_NORM, attrs, 'eps'));
      return y;
    },
  },
  {
    kernelName: RMS_NORM_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const [x, rows, cols] = rowsCols(RMS_NORM_GRAD, inputs), dy = input(RMS_NORM_GRAD, inputs, 'dy');
      const dx = backend.makeOutput(x.shape, 'float32');
      backend.device.rmsNormGrad(backend.ptr(dy), backend.ptr(x), backend.ptr(dx), rows, cols, numberAttr(RMS_NORM_GRAD, attrs, 'eps'));
      return dx;
    },
  },
];
