// The fused ReLU²'s cuda kernels: 'ReluSquared' ({x} → relu(x)²) and its gradient kernel 'ReluSquaredGrad'
// ({dy, x} → dy·2·relu(x)), any shape, over relu_squared.cu's launchers. Both outputs only feed matmuls in the
// model: under bf16 matmul precision they are bf16 (makeBf16Output); x and dy are read as stored (storedValues: in bf16
// when the up projection wrote x so, ops/linear, and the down projection's gradient dy, ops/matmul_add).
import * as tf from '@tensorflow/tfjs-core';
import { input } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { RELU_SQUARED, RELU_SQUARED_GRAD } from './relu_squared.ts';

/** relu_squared.cu's launchers (host.ts is their CPU reference). */
export interface ReluSquaredNative {
  /** y = relu(x)² over n values (x in bf16 where xBf16, y where yBf16). */
  reluSquared(x: number, xBf16: boolean, y: number, yBf16: boolean, n: number): void;
  /** dx = dy·2·relu(x) over n values (dy in bf16 where dyBf16, x where xBf16, dx where dxBf16). */
  reluSquaredGrad(dy: number, dyBf16: boolean, x: number, xBf16: boolean, dx: number, dxBf16: boolean, n: number): void;
}

export const reluSquaredKernels: CudaKernel[] = [
  {
    kernelName: RELU_SQUARED,
    kernelFunc: ({ inputs, backend }) => {
      const x = input(RELU_SQUARED, inputs, 'x');
      const y = backend.makeBf16Output(x.shape);  // the MLP's down projection reads it
      const xs = backend.storedValues(x);
      backend.device.reluSquared(xs.ptr, xs.bf16, y.ptr, y.bf16, tf.util.sizeFromShape(x.shape));
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
      const xs = backend.storedValues(x), dys = backend.storedValues(dy);
      backend.device.reluSquaredGrad(dys.ptr, dys.bf16, xs.ptr, xs.bf16, dx.ptr, dx.bf16, tf.util.sizeFromShape(x.shape));
      return dx.out;
    },
  },
];
