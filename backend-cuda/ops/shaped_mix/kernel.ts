// The fused shaped mix's cuda kernels: 'ShapedMix' ({x, m, coef, docIds} → α·x + β·m − γ·C·x, attr window) and its
// gradient kernel 'ShapedMixGrad' ({dy, x, m, coef, docIds, accumulated?} → [dx, dm, dcoef]), over shaped_mix.cu's
// launchers. x and m are read as stored (the norm's and the attention's bf16-only outputs under bf16 precision: no float32
// copies), and dm is bf16-only under bf16 precision (the attention's backward reads dO in bf16).
import type { NamedAttrMap, NamedTensorInfoMap } from '@tensorflow/tfjs-core';
import { describe, input, positiveIntAttr } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { SHAPED_MIX, SHAPED_MIX_GRAD } from './shaped_mix.ts';

/** Positions per partial sum of the kernels' first pass (kShapedMixChunk in shaped_mix.h). */
export const SHAPED_MIX_CHUNK = 32;
/** Positions each thread of the second pass walks (kShapedMixWalk in shaped_mix.h). */
export const SHAPED_MIX_WALK = 128;

/** shaped_mix.cu's launchers (host.ts is their CPU reference). */
export interface ShapedMixNative {
  /** y = α·x + β·m − γ·(C·x) over x, m [B,T,H,h], coef [3, H] (α, β, γ), (C·x)[b,t] the mean of x[b,s] over s ∈
   * [max(t − window + 1, the start of t's document), t], docIds int32 [B,T] nondecreasing; x, m in bf16 where flagged;
   * chunkSums: B·⌈T / SHAPED_MIX_CHUNK⌉·H·h doubles of scratch. */
  shapedMix(x: number, xBf16: boolean, m: number, mBf16: boolean, coef: number, docIds: number, y: number, chunkSums: number,
    B: number, T: number, H: number, h: number, window: number): void;
  /** Its gradient, S = Cᵀ·dy: dx = α·dy − γ·S plus `accumulated` where given (0: none), dm = β·dy (bf16 where dmBf16),
   * dcoef [3, H] = (Σ dy·x, Σ dy·m, −Σ x·S) per head (fixed order); chunkSums as above, invCounts B·T doubles, partials
   * B·⌈T / SHAPED_MIX_WALK⌉·H·h·3 doubles of scratch. */
  shapedMixGrad(dy: number, x: number, xBf16: boolean, m: number, mBf16: boolean, coef: number, docIds: number, accumulated: number,
    dx: number, dm: number, dmBf16: boolean, dcoef: number, chunkSums: number, invCounts: number, partials: number, B: number,
    T: number, H: number, h: number, window: number): void;
}

/** x (or dy), m and `same` float32 [B,T,H,h] of one shape, coef float32 [3, H], docIds int32 [B,T]; the window, a
 * positive integer (at most T: a window over T sees as much as T, and the native int stays in range). */
function checked(kernel: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap, lead: 'x' | 'dy') {
  const x = input(kernel, inputs, lead), docIds = input(kernel, inputs, 'docIds', 'int32'), coef = input(kernel, inputs, 'coef');
  if (x.shape.length !== 4) throw new Error(`${kernel}: ${lead} must be [B,T,H,h], got ${describe(x)}`);
  const same = lead === 'x' ? ['m'] : ['x', 'm', ...(inputs.accumulated != null ? ['accumulated'] : [])];
  for (const name of same) {
    const t = input(kernel, inputs, name);
    if (t.shape.join() !== x.shape.join()) throw new Error(`${kernel}: ${name} ${describe(t)} must have ${lead}'s shape [${x.shape}]`);
  }
  const [B, T, H, h] = x.shape;
  if (docIds.shape.join() !== [B, T].join()) throw new Error(`${kernel}: docIds must be [${B},${T}], got ${describe(docIds)}`);
  if (coef.shape.join() !== [3, H].join()) throw new Error(`${kernel}: coef must be [3,${H}] (α, β, γ per head), got ${describe(coef)}`);
  return { x, docIds, coef, B, T, H, h, window: Math.min(positiveIntAttr(kernel, attrs, 'window'), T) };
}

const chunkSumsBytes = (B: number, T: number, H: number, h: number) => 8 * B * Math.ceil(T / SHAPED_MIX_CHUNK) * H * h;

export const shapedMixKernels: CudaKernel[] = [
  {
    kernelName: SHAPED_MIX,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, docIds, coef, B, T, H, h, window } = checked(SHAPED_MIX, inputs, attrs, 'x');
      const xs = backend.storedValues(x), ms = backend.storedValues(inputs.m as typeof x), y = backend.makeOutput(x.shape, 'float32');
      backend.withScratch([chunkSumsBytes(B, T, H, h)], (chunkSums) => backend.device.shapedMix(xs.ptr, xs.bf16, ms.ptr, ms.bf16,
        backend.ptr(coef), backend.ptr(docIds), backend.ptr(y), chunkSums, B, T, H, h, window));
      return y;
    },
  },
  {
    kernelName: SHAPED_MIX_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x: dy, docIds, coef, B, T, H, h, window } = checked(SHAPED_MIX_GRAD, inputs, attrs, 'dy');
      const acc = inputs.accumulated == null ? 0 : backend.ptr(inputs.accumulated as typeof dy);
      const xs = backend.storedValues(inputs.x as typeof dy), ms = backend.storedValues(inputs.m as typeof dy);
      const dx = backend.makeOutput(dy.shape, 'float32'), dm = backend.makeBf16Output(dy.shape), dcoef = backend.makeOutput([3, H], 'float32');
      const partialsBytes = 8 * 3 * B * Math.ceil(T / SHAPED_MIX_WALK) * H * h;
      backend.withScratch([chunkSumsBytes(B, T, H, h), 8 * B * T, partialsBytes], (chunkSums, invCounts, partials) =>
        backend.device.shapedMixGrad(backend.ptr(dy), xs.ptr, xs.bf16, ms.ptr, ms.bf16, backend.ptr(coef), backend.ptr(docIds), acc,
          backend.ptr(dx), dm.ptr, dm.bf16, backend.ptr(dcoef), chunkSums, invCounts, partials, B, T, H, h, window));
      return [dx, dm.out, dcoef];
    },
  },
];
