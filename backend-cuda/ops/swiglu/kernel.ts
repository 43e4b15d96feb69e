// The fused SwiGLU's cuda kernels: 'Swiglu' ({x [..., 2F]} → [..., F]) and its gradient kernel 'SwigluGrad'
// ({dy, x} → dx [..., 2F]), over swiglu.cu's launchers. Both outputs only feed matmuls in the model (the down
// projection; the up projection's gradient matmuls): under bf16 matmul precision they are bf16 (makeBf16Output).
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { describe, input } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { SWIGLU, SWIGLU_GRAD } from './swiglu.ts';

/** swiglu.cu's launchers (host.ts is their CPU reference). */
export interface SwigluNative {
  /** y = g·σ(g)·u over rows of 2F values [g | u] (in bf16 where xBf16; y rows of F, in bf16 where yBf16). */
  swiglu(x: number, xBf16: boolean, y: number, yBf16: boolean, rows: number, F: number): void;
  /** dx = [dy·u·σ(g)·(1 + g·(1 − σ(g))) | dy·g·σ(g)] (dy in bf16 where dyBf16, dx where dxBf16). */
  swigluGrad(dy: number, dyBf16: boolean, x: number, xBf16: boolean, dx: number, dxBf16: boolean, rows: number, F: number): void;
}

/** x float32 [..., 2F]: rows and F. */
function checked(kernel: string, inputs: NamedTensorInfoMap): { x: TensorInfo; rows: number; F: number } {
  const x = input(kernel, inputs, 'x');
  const last = x.shape[x.shape.length - 1];
  if (x.shape.length === 0 || last % 2 !== 0) throw new Error(`${kernel}: x must be [..., 2F] (gate and value halves), got ${describe(x)}`);
  return { x, rows: tf.util.sizeFromShape(x.shape.slice(0, -1)), F: last / 2 };
}

export const swigluKernels: CudaKernel[] = [
  {
    kernelName: SWIGLU,
    kernelFunc: ({ inputs, backend }) => {
      const { x, rows, F } = checked(SWIGLU, inputs);
      const y = backend.makeBf16Output([...x.shape.slice(0, -1), F]);  // the down projection reads it
      const xs = backend.storedValues(x);  // bf16 as the up projection wrote it (ops/linear), or float32
      backend.device.swiglu(xs.ptr, xs.bf16, y.ptr, y.bf16, rows, F);
      return y.out;
    },
  },
  {
    kernelName: SWIGLU_GRAD,
    kernelFunc: ({ inputs, backend }) => {
      const { x, rows, F } = checked(SWIGLU_GRAD, inputs), dy = input(SWIGLU_GRAD, inputs, 'dy');
      if (!tf.util.arraysEqual(dy.shape, [...x.shape.slice(0, -1), F])) {
        throw new Error(`${SWIGLU_GRAD}: dy ${describe(dy)} must be [${[...x.shape.slice(0, -1), F]}] for x ${describe(x)}`);
      }
      const dx = backend.makeBf16Output(x.shape);  // the up projection's two gradient matmuls read it
      const xs = backend.storedValues(x), dys = backend.storedValues(dy);  // dy: the down projection's, bf16 under bf16
      backend.device.swigluGrad(dys.ptr, dys.bf16, xs.ptr, xs.bf16, dx.ptr, dx.bf16, rows, F);
      return dx.out;
    },
  },
];
