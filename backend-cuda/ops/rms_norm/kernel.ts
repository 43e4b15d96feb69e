// The fused RMSNorm's cuda kernels: 'RMSNorm' and its gradient kernel 'RMSNormGrad', over the last axis, over
// rms_norm.cu's launchers. x is read as stored (storedValues: a bf16-only activation stays bf16); y is bf16 only under
// bf16 matmul precision (makeBf16Output): the record's norm outputs bf16 (§5), and the projections read it so.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { input, numberAttr } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { RMS_NORM, RMS_NORM_GRAD } from './rms_norm.ts';

/** rms_norm.cu's launchers (host.ts is their CPU reference). */
export interface RmsNormNative {
  /** y = x·(mean(x²) + eps)^-½ over rows of `cols` (x in bf16 where xBf16, y where yBf16). */
  rmsNorm(x: number, xBf16: boolean, y: number, yBf16: boolean, rows: number, cols: number, eps: number): void;
  /** dx = the norm's gradient, plus acc (float32 of x's shape: x's gradient so far) where acc is not 0. */
  rmsNormGrad(dy: number, x: number, xBf16: boolean, acc: number, dx: number, rows: number, cols: number, eps: number): void;
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
      const xs = backend.storedValues(x), y = backend.makeBf16Output(x.shape);
      backend.device.rmsNorm(xs.ptr, xs.bf16, y.ptr, y.bf16, rows, cols, numberAttr(RMS_NORM, attrs, 'eps'));
      return y.out;
    },
  },
  {
    kernelName: RMS_NORM_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const [x, rows, cols] = rowsCols(RMS_NORM_GRAD, inputs), dy = input(RMS_NORM_GRAD, inputs, 'dy');
      const dx = backend.makeOutput(x.shape, 'float32');
      const xs = backend.storedValues(x), acc = inputs.accumulated == null ? null : input(RMS_NORM_GRAD, inputs, 'accumulated');
      if (acc && !tf.util.arraysEqual(acc.shape, x.shape)) throw new Error(`${RMS_NORM_GRAD}: accumulated [${acc.shape}] and x [${x.shape}] differ in shape`);
      backend.device.rmsNormGrad(backend.ptr(dy), xs.ptr, xs.bf16, acc ? backend.ptr(acc) : 0, backend.ptr(dx), rows, cols, numberAttr(RMS_NORM_GRAD, attrs, 'eps'));
      return dx;
    },
  },
];
