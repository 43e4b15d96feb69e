// The fused rotary embedding's cuda kernels: 'Rotary' ({x, cos, sin} → y) and its gradient kernel
// 'RotaryGrad' ({dy, cos, sin} → dx), one launcher of rotary.cu both ways.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { describe } from '../check.ts';
import type { CudaKernel, CudaKernelArgs } from '../../kernels/types.ts';
import { ROTARY, ROTARY_GRAD } from './rotary.ts';

/** rotary.cu's launcher (host.ts is its CPU reference). */
export interface RotaryNative {
  /** Rotary embedding of x [B,T,H,2·half] into y: the pair (j, j + half) of token t turns by the angle
   * with cosine cos[t, j] and sine sin[t, j] (tables [T, half]); inverse turns back (the gradient). */
  rotary(x: number, cos: number, sin: number, y: number, B: number, T: number, H: number, half: number, inverse: boolean): void;
}

/** x (or dy) [B,T,H,h] float32 with h even; cos and sin float32 [1,T,1,h/2]. */
function checked(kernel: string, name: 'x' | 'dy', inputs: CudaKernelArgs['inputs']): { x: TensorInfo; cos: TensorInfo; sin: TensorInfo; dims: [number, number, number, number] } {
  const x = inputs[name] as TensorInfo | undefined;
  if (x == null) throw new Error(`${kernel}: input ${name} is missing`);
  if (x.dtype !== 'float32' || x.shape.length !== 4 || x.shape[3] % 2 !== 0) {
    throw new Error(`${kernel}: ${name} must be float32 [B,T,H,h] with h even, got ${describe(x)}`);
  }
  const [B, T, H, h] = x.shape;
  const cos = inputs.cos as TensorInfo, sin = inputs.sin as TensorInfo;
  for (const [tname, t] of [['cos', cos], ['sin', sin]] as const) {
    if (t == null) throw new Error(`${kernel}: the ${tname} table is missing`);
    const s = t.shape;
    if (t.dtype !== 'float32' || s.length !== 4 || s[0] !== 1 || s[1] !== T || s[2] !== 1 || s[3] !== h / 2) {
      throw new Error(`${kernel}: ${tname} must be float32 [1,${T},1,${h / 2}] for ${name} ${describe(x)}, got ${describe(t)}`);
    }
  }
  return { x, cos, sin, dims: [B, T, H, h / 2] };
}

function rotaryKernel(kernelName: string, input: 'x' | 'dy', inverse: boolean): CudaKernel {
  return {
    kernelName,
    kernelFunc: ({ inputs, backend }) => {
      const { x, cos, sin, dims } = checked(kernelName, input, inputs);
      const y = backend.makeOutput(x.shape, 'float32');
      backend.device.rotary(backend.ptr(x), backend.ptr(cos), backend.ptr(sin), backend.ptr(y), ...dims, inverse);
      return y;
    },
  };
}

export const rotaryKernels: CudaKernel[] = [rotaryKernel(ROTARY, 'x', false), rotaryKernel(ROTARY_GRAD, 'dy', true)];
