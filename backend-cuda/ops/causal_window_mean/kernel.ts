// The fused causal windowed mean's cuda kernels: 'CausalWindowMean' ({x, docIds} → y, attr window) and its gradient
// kernel 'CausalWindowMeanGrad' ({dy, docIds, accumulated?} → dx), over causal_window_mean.cu's launchers.
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { describe, input, positiveIntAttr } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { CAUSAL_WINDOW_MEAN, CAUSAL_WINDOW_MEAN_GRAD } from './causal_window_mean.ts';

/** Positions per partial sum of the kernels' first pass (kWindowMeanChunk in causal_window_mean.h). */
export const WINDOW_MEAN_CHUNK = 32;

/** causal_window_mean.cu's launchers (host.ts is their CPU reference). */
export interface CausalWindowMeanNative {
  /** y[b,t,c] = the mean of x[b,s,c] over s ∈ [max(t − window + 1, the start of t's document), t], x and y [B,T,C],
   * docIds int32 [B,T] nondecreasing; x in bf16 where xBf16 (read as stored); chunkSums: B·⌈T / WINDOW_MEAN_CHUNK⌉·C
   * doubles of scratch. */
  causalWindowMean(x: number, xBf16: boolean, docIds: number, y: number, chunkSums: number, B: number, T: number, C: number,
    window: number): void;
  /** dx[b,s,c] = Σ_t dy[b,t,c] / n(t) over the t whose window holds s, n(t) the size of t's window, plus
   * `accumulated` where given (0: none); chunkSums as above, invCounts: B·T doubles of scratch. */
  causalWindowMeanGrad(dy: number, docIds: number, accumulated: number, dx: number, chunkSums: number, invCounts: number, B: number,
    T: number, C: number, window: number): void;
}

/** x (or dy) float32 [B,T,...] (C the product of the trailing dims: the heads' [B,T,H,h] as it is) and docIds int32
 * [B,T]; the window, a positive integer. */
function checked(kernel: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap, name: 'x' | 'dy') {
  const x = input(kernel, inputs, name), docIds = input(kernel, inputs, 'docIds', 'int32');
  if (x.shape.length < 3) throw new Error(`${kernel}: ${name} must be [B,T,C] or [B,T,...], got ${describe(x)}`);
  const [B, T] = x.shape, C = x.shape.slice(2).reduce((a, b) => a * b, 1);
  if (docIds.shape.join() !== [B, T].join()) throw new Error(`${kernel}: docIds must be [${B},${T}], got ${describe(docIds)}`);
  // a window over T sees as much as T (and keeps the native int argument in range)
  return { x, docIds, B, T, C, window: Math.min(positiveIntAttr(kernel, attrs, 'window'), T) };
}

export const causalWindowMeanKernels: CudaKernel[] = [
  {
    kernelName: CAUSAL_WINDOW_MEAN,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, docIds, B, T, C, window } = checked(CAUSAL_WINDOW_MEAN, inputs, attrs, 'x');
      const y = backend.makeOutput(x.shape, 'float32');
      const sums = backend.makeOutput([B, Math.ceil(T / WINDOW_MEAN_CHUNK), C, 2], 'float32');  // doubles
      const xs = backend.storedValues(x);  // a bf16-only x is read as it is: no float32 copy kept beside it
      backend.device.causalWindowMean(xs.ptr, xs.bf16, backend.ptr(docIds), backend.ptr(y), backend.ptr(sums), B, T, C, window);
      backend.disposeIntermediateTensorInfo(sums);
      return y;
    },
  },
  {
    kernelName: CAUSAL_WINDOW_MEAN_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x: dy, docIds, B, T, C, window } = checked(CAUSAL_WINDOW_MEAN_GRAD, inputs, attrs, 'dy');
      const acc = inputs.accumulated == null ? null : input(CAUSAL_WINDOW_MEAN_GRAD, inputs, 'accumulated');
      if (acc && acc.shape.join() !== dy.shape.join()) throw new Error(`${CAUSAL_WINDOW_MEAN_GRAD}: accumulated ${describe(acc)} and dy ${describe(dy)} differ in shape`);
      const dx = backend.makeOutput(dy.shape, 'float32');
      const sums = backend.makeOutput([B, Math.ceil(T / WINDOW_MEAN_CHUNK), C, 2], 'float32');  // doubles
      const invCounts = backend.makeOutput([B, T, 2], 'float32');  // doubles
      backend.device.causalWindowMeanGrad(backend.ptr(dy), backend.ptr(docIds), acc ? backend.ptr(acc) : 0, backend.ptr(dx),
        backend.ptr(sums), backend.ptr(invCounts), B, T, C, window);
      backend.disposeIntermediateTensorInfo(sums);
      backend.disposeIntermediateTensorInfo(invCounts);
      return dx;
    },
  },
];
