// The unary elementwise kernels: one table row per tfjs kernel, all on native/elementwise.cu.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { unary } from '../kernel_utils.ts';
import type { UnaryName } from '../device.ts';
import type { CudaKernel } from './types.ts';

const PLAIN: UnaryName[] = ['Abs', 'Neg', 'Exp', 'Log', 'Log1p', 'Sqrt', 'Rsqrt', 'Square', 'Tanh', 'Sigmoid',
  'Relu', 'Sin', 'Cos', 'Reciprocal', 'Floor', 'Ceil', 'Round', 'Sign', 'LogicalNot', 'Erf', 'Softplus', 'Expm1',
  'Elu', 'Relu6', 'Atan', 'Selu'];

export const unaryKernels: CudaKernel[] = [
  ...PLAIN.map((name): CudaKernel => ({
    kernelName: name,
    kernelFunc: ({ inputs, backend }) => unary(backend, name, inputs.x as TensorInfo),
  })),
  {
    kernelName: 'Step',
    kernelFunc: ({ inputs, backend, attrs }) => unary(backend, 'Step', inputs.x as TensorInfo, attrs.alpha as number),
  },
  {
    kernelName: 'LeakyRelu',
    kernelFunc: ({ inputs, backend, attrs }) => unary(backend, 'LeakyRelu', inputs.x as TensorInfo, attrs.alpha as number),
  },
  {
    kernelName: 'ClipByValue',
    kernelFunc: ({ inputs, backend, attrs }) =>
      unary(backend, 'ClipByValue', inputs.x as TensorInfo, attrs.clipValueMin as number, attrs.clipValueMax as number),
  },
];
