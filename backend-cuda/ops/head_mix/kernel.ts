// The fused head mix's cuda kernels: 'HeadMix' ({x, m, c, coef} → α·x + β·m − γ·c per head) and its gradient kernel
// 'HeadMixGrad' ({dy, x, m, c, coef} → [dx, dm, dc, dcoef]), over head_mix.cu's launchers. x, m and c are read as
// stored (the heads' input is the norm's bf16-only output under bf16 precision: no float32 copy is made of it).
import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { describe, input } from '../check.ts';
import type { CudaKernel, CudaKernelArgs } from '../../kernels/types.ts';
import { HEAD_MIX, HEAD_MIX_GRAD } from './head_mix.ts';

/** head_mix.cu's launchers (host.ts is their CPU reference). */
export interface HeadMixNative {
  /** y = α·x + β·m − γ·c over rows × H heads × h values, coef [3, H] (α, β, γ); x, m, c in bf16 where flagged. */
  headMix(x: number, xBf16: boolean, m: number, mBf16: boolean, c: number, cBf16: boolean, coef: number, y: number, rows: number,
    H: number, h: number): void;
  /** Its gradient: dx = α·dy, dm = β·dy, dc = −γ·dy, dcoef [3, H] = (Σ dy·x, Σ dy·m, −Σ dy·c) per head (fixed order). */
  headMixGrad(dy: number, x: number, xBf16: boolean, m: number, mBf16: boolean, c: number, cBf16: boolean, coef: number, dx: number,
    dm: number, dc: number, dcoef: number, rows: number, H: number, h: number): void;
}

/** x, m, c (and dy) float32 [..., H, h] of one shape and coef float32 [3, H]: the tensors, rows, H and h. */
function checked(kernel: string, inputs: CudaKernelArgs['inputs'], names: string[]) {
  const ts = names.map((name) => input(kernel, inputs, name)), coef = input(kernel, inputs, 'coef'), x = ts[names.indexOf('x')];
  for (const [i, t] of ts.entries()) {
    if (!tf.util.arraysEqual(t.shape, x.shape)) throw new Error(`${kernel}: ${names[i]} ${describe(t)} must have x's shape [${x.shape}]`);
  }
  if (x.shape.length < 2) throw new Error(`${kernel}: x must be [..., H, h], got ${describe(x)}`);
  const [H, h] = x.shape.slice(-2);
  if (!tf.util.arraysEqual(coef.shape, [3, H])) throw new Error(`${kernel}: coef must be [3, ${H}] (α, β, γ per head), got ${describe(coef)}`);
  return { ts, coef, rows: tf.util.sizeFromShape(x.shape.slice(0, -2)), H, h };
}

export const headMixKernels: CudaKernel[] = [
  {
    kernelName: HEAD_MIX,
    kernelFunc: ({ inputs, backend }) => {
      const { ts: [x, m, c], coef, rows, H, h } = checked(HEAD_MIX, inputs, ['x', 'm', 'c']);
      const [xs, ms, cs] = [x, m, c].map((t) => backend.storedValues(t)), y = backend.makeOutput(x.shape, 'float32');
      backend.device.headMix(xs.ptr, xs.bf16, ms.ptr, ms.bf16, cs.ptr, cs.bf16, backend.ptr(coef), backend.ptr(y), rows, H, h);
      return y;
    },
  },
  {
    kernelName: HEAD_MIX_GRAD,
    kernelFunc: ({ inputs, backend }) => {
      const { ts: [dy, x, m, c], coef, rows, H, h } = checked(HEAD_MIX_GRAD, inputs, ['dy', 'x', 'm', 'c']);
      const [xs, ms, cs] = [x, m, c].map((t) => backend.storedValues(t));
      const [dx, dm, dc] = [0, 1, 2].map((): TensorInfo => backend.makeOutput(x.shape, 'float32')), dcoef = backend.makeOutput([3, H], 'float32');
      backend.device.headMixGrad(backend.ptr(dy), xs.ptr, xs.bf16, ms.ptr, ms.bf16, cs.ptr, cs.bf16, backend.ptr(coef), backend.ptr(dx),
        backend.ptr(dm), backend.ptr(dc), backend.ptr(dcoef), rows, H, h);
      return [dx, dm, dc, dcoef];
    },
  },
];
