// The fused ReLU² kernels (native/relu_squared.cu) behind fused/relu_squared.ts: 'ReluSquared'
// ({x} → relu(x)²) and its gradient kernel 'ReluSquaredGrad' ({dy, x} → dy·2·relu(x)), any shape. Both
// outputs only feed matmuls in the model: under bf16 matmul precision they are bf16 (makeMatmulInput).
import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { RELU_SQUARED, RELU_SQUARED_GRAD } from '../fused/relu_squared.ts';
import type { CudaKernel } from './types.ts';

function checkFloat32(kernel: string, name: string, t: TensorInfo | undefined): TensorInfo {
  if (t == null) throw new Error(`${kernel}: input ${name} is missing`);
  if (t.dtype !== 'float32') throw new Error(`${kernel}: ${name} must be float32, got ${t.dtype}[${t.shape}]`);
  return t;
}

export const reluSquaredKernels: CudaKernel[] = [
  {
    kernelName: RELU_SQUARED,
    kernelFunc: ({ inputs, backend }) => {
      const x = checkFloat32(RELU_SQUARED, 'x', inputs.x as TensorInfo);
      const y = backend.makeMatmulInput(x.shape);  // the MLP's down projection reads it
      backend.device.reluSquared(backend.ptr(x), y.ptr, y.bf16, tf.util.sizeFromShape(x.shape));
      return y.out;
    },
  },
  {
    kernelName: RELU_SQUARED_GRAD,
    kernelFunc: ({ inputs, backend }) => {
      const dy = checkFloat32(RELU_SQUARED_GRAD, 'dy', inputs.dy as TensorInfo);
      const x = checkFloat32(RELU_SQUARED_GRAD, 'x', inputs.x as TensorInfo);
      if (!tf.util.arraysEqual(dy.shape, x.shape)) throw new Error(`${RELU_SQUARED_GRAD}: dy [${dy.shape}] and x [${x.shape}] differ in shape`);
      const dx = backend.makeMatmulInput(x.shape);  // the up projection's two gradient matmuls read it
      backend.device.reluSquaredGrad(backend.ptr(dy), backend.ptr(x), dx.ptr, dx.bf16, tf.util.sizeFromShape(x.shape));
      return dx.out;
    },
  },
];
