// The fused ReLU²'s cuda kernels: 'ReluSquared' ({x} → relu(x)²) and its gradient kernel 'ReluSquaredGrad'
// ({dy, x} → dy·2·relu(x)), any shape, over relu_squared.cu's launchers. Both outputs only feed matmuls in the
// model: under bf16 matmul precision they are bf16 (makeBf16Output).
import * as tf from '@tensorflow/tfjs-core';
import { input } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { RELU_SQUARED, RELU_SQUARED_GRAD } from './relu_squared.ts';

/** relu_squared.cu's launchers (host.ts is their CPU reference). */
export interface ReluSquaredNative {
  /** y = relu(x)² over n floats (y in bf16 where yBf16). */
  reluSquared(x: number, y: number, yBf16: boolean, n: number): void;
  /** dx = dy·2·relu(x) over n floats (dx in bf16 where dxBf16). */
  reluSquaredGrad(dy: number, x: number, dx: number, dxBf16: boolean, n: number): void;
}

export const reluSquaredKernels: CudaKernel[] = [
  {
    kernelName: RELU_SQUARED,
    kernelFunc: ({ inputs, backend }) => {
      const x = input(RELU_SQUARED, inputs, 'x');
      const y = backend.makeBf16Output(x.shape);  // the MLP's down projection reads it
      backend.device.reluSquared(backend.ptr(x), y.ptr, y.bf16, tf.util.sizeFromShape(x.shape));
      return y.out;
    },
  },
  {
    kernelName: RELU_SQUARED_GRAD,
    kernelFunc: ({ inputs, backend }) => {
      const dy = input(RELU_SQUARED_GRAD, inputs, 'dy');
      const x = input(RELU_SQUARED_GRAD, inputs, 'x');
      if (!tf.util.arraysEqual(dy.shape, x.shape)) throw new Error(`${RELU_SQUARED_GRAD}: dy [${dy.shape}] and x [${x.shape}] differ in shape`);
      const dx = backend.makeBf16Output(x.shape);  // the up projection's two gradient matmuls read it
      backend.device.reluSquaredGrad(backend.ptr(dy), backend.ptr(x), dx.ptr, dx.bf16, tf.util.sizeFromShape(x.shape));
      return dx.out;
    },
  },
];
