// The fused rotary embedding's cuda kernels: 'Rotary' ({x, cos, sin} → y) and its gradient kernel
// 'RotaryGrad' ({dy, cos, sin} → dx), one launcher of rotary.cu both ways; 'NormedRotary' and 'NormedRotaryGrad'
// ({dy, x, cos, sin} → dx), each head RMS-normed first (attr eps).
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { describe, numberAttr } from '../check.ts';
import type { CudaKernel, CudaKernelArgs } from '../../kernels/types.ts';
import { NORMED_ROTARY, NORMED_ROTARY_GRAD, normedRotaryFits, ROTARY, ROTARY_GRAD } from './rotary.ts';

/** rotary.cu's launcher (host.ts is its CPU reference). */
export interface RotaryNative {
  /** Rotary embedding of x [B,T,H,2·half] into y (each in bf16 where its flag says, else float32): the pair
   * (j, j + half) of token t turns by the angle with cosine cos[t, j] and sine sin[t, j] (tables [T, half]); inverse
   * turns back (the gradient). */
  rotary(x: number, xBf16: boolean, cos: number, sin: number, y: number, yBf16: boolean, B: number, T: number, H: number,
    half: number, inverse: boolean): void;
  /** The same forward with each row of 2·half RMS-normed first (eps); half / 4 a power of two ≤ 32. */
  normedRotary(x: number, xBf16: boolean, cos: number, sin: number, y: number, yBf16: boolean, B: number, T: number, H: number,
    half: number, eps: number): void;
  /** Its gradient dx (float32) from dy (float32) and x (bf16 where xBf16). */
  normedRotaryGrad(dy: number, x: number, xBf16: boolean, cos: number, sin: number, dx: number, B: number, T: number, H: number,
    half: number, eps: number): void;
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

/** checked() for NormedRotary's kernels: also a head size the kernel takes, and eps. */
function checkedNormed(kernel: string, name: 'x' | 'dy', inputs: CudaKernelArgs['inputs'], attrs: CudaKernelArgs['attrs']) {
  const c = checked(kernel, name, inputs), fits = normedRotaryFits(c.x.shape[3]);
  if (fits !== true) throw new Error(`${kernel}: ${fits}`);
  return { ...c, eps: numberAttr(kernel, attrs, 'eps') };
}

export const rotaryKernels: CudaKernel[] = [
  {
    // x read as stored (the shaped blocks' q and k are RMSNorm's bf16-only outputs); y bf16 only under bf16 precision:
    // only the attention reads it, in bf16 (the same values its bf16 copy of a float32 y would hold)
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
  {
    // x read as stored (the q or k projection's bf16-only output); y as Rotary's
    kernelName: NORMED_ROTARY,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, cos, sin, dims, eps } = checkedNormed(NORMED_ROTARY, 'x', inputs, attrs);
      const xs = backend.storedValues(x), y = backend.makeBf16Output(x.shape);
      backend.device.normedRotary(xs.ptr, xs.bf16, backend.ptr(cos), backend.ptr(sin), y.ptr, y.bf16, ...dims, eps);
      return y.out;
    },
  },
  {
    kernelName: NORMED_ROTARY_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x: dy, cos, sin, dims, eps } = checkedNormed(NORMED_ROTARY_GRAD, 'dy', inputs, attrs);
      const x = inputs.x as TensorInfo | undefined;
      if (x == null) throw new Error(`${NORMED_ROTARY_GRAD}: input x is missing`);
      if (x.dtype !== 'float32' || x.shape.join() !== dy.shape.join()) throw new Error(`${NORMED_ROTARY_GRAD}: x ${describe(x)} must be float32 with dy's shape [${dy.shape}]`);
      const xs = backend.storedValues(x), dx = backend.makeOutput(dy.shape, 'float32');
      backend.device.normedRotaryGrad(backend.ptr(dy), xs.ptr, xs.bf16, backend.ptr(cos), backend.ptr(sin), backend.ptr(dx), ...dims, eps);
      return dx;
    },
  },
];
