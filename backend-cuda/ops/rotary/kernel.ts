// The fused rotary embedding's cuda kernels: 'Rotary' ({x, cos, sin} → y) and its gradient kernel
// 'RotaryGrad' ({dy, cos, sin} → dx), one launcher of rotary.cu both ways.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { describe } from '../check.ts';
import type { CudaKernel, CudaKernelArgs } from '../../kernels/types.ts';
import { ROTARY, ROTARY_GRAD } from './rotary.ts';

/** rotary.cu's launcher (host.ts is its CPU reference). */
export interface RotaryNative {
  /** Rotary embedding of x [B,T,H,2·half] into y (each in bf16 where its flag says, else float32): the pair
   * (j, j + half) of token t turns by the angle with cosine cos[t, j] and sine sin[t, j] (tables [T, half]); inverse
   * turns back (the gradient). */
  rotary(x: number, xBf16: boolean, cos: number, sin: number, y: number, yBf16: boolean, B: number, T: number, H: number,
    half: number, inverse: boolean): void;
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

export const rotaryKernels: CudaKernel[] = [
  {
    // x read as stored (RMSNorm's bf16-only output: the composite attentionInputs()'s q and k under QK-norm); y bf16 only
    // under bf16 precision: only the attention reads it, in bf16 (the same values its bf16 copy of a float32 y would hold)
    kernelName: ROTARY,
    kernelFunc: ({ inputs, backend }) => {
      const { x, cos, sin, dims } = checked(ROTARY, 'x', inputs);
      const xs = backend.storedValues(x), y = backend.makeBf16Output(x.shape);
      backend.device.rotary(xs.ptr, xs.bf16, backend.ptr(cos), backend.ptr(sin), y.ptr, y.bf16, ...dims, false);
      return y.out;
    },
  },
  {
    // the gradient stays float32 both ways (q's and k's gradients from the attention's backward)
    kernelName: ROTARY_GRAD,
    kernelFunc: ({ inputs, backend }) => {
      const { x: dy, cos, sin, dims } = checked(ROTARY_GRAD, 'dy', inputs);
      const dx = backend.makeOutput(dy.shape, 'float32');
      backend.device.rotary(backend.ptr(dy), false, backend.ptr(cos), backend.ptr(sin), backend.ptr(dx), false, ...dims, true);
      return dx;
    },
  },
];
