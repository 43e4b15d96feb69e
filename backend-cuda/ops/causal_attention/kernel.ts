// The fused causal attention's cuda kernels: 'CausalAttention' and its gradient kernel 'CausalAttentionGrad'
// ([dq, dk, dv]), float32 tensors. With --matmul-precision bf16 they run on bf16 tensor cores
// (causal_attention_mma.cu: head dims 64 and 128), as the matmuls do; with tf32 or fp32, and for other head
// dims, the exact fp32 kernels (causal_attention.cu).
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { PRECISION } from '../../device.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { ATTENTION_SCORE, CAUSAL_ATTENTION, CAUSAL_ATTENTION_GRAD, MAX_HEAD_DIM } from './causal_attention.ts';

/** Floats per query row of the statistics the forward keeps with o: m, den, argmax key. */
export const ATTENTION_STATS = 3;

/** causal_attention.cu's launchers (host.ts is their CPU reference). */
export interface CausalAttentionNative {
  /** Causal attention: q, o [B,T,H,h], k, v [B,T,Hk,h], docIds int32 [B,T] nondecreasing; key j
   * visible to query i iff j ≤ i, i − j < window, same document; score: ATTENTION_SCORE. stats
   * (B·T·H·ATTENTION_STATS floats) is written where not 0. tensorCores: bf16 tensor-core kernels
   * where they apply (head dim 64 or 128, 16-byte aligned tensors), else exact fp32 ones. */
  attention(q: number, k: number, v: number, docIds: number, o: number, stats: number, B: number, T: number, H: number,
    Hk: number, h: number, window: number, scale: number, score: number, tensorCores: boolean): void;
  /** dq, dk, dv from dO; stats as the forward writes them, recomputed into it first unless statsReady;
   * delta: B·T·H floats of scratch for the tensor-core kernels (0: the exact ones). */
  attentionGrad(q: number, k: number, v: number, docIds: number, o: number, dO: number, stats: number, statsReady: boolean,
    delta: number, dq: number, dk: number, dv: number, B: number, T: number, H: number, Hk: number, h: number,
    window: number, scale: number, score: number, tensorCores: boolean): void;
}

interface Problem { B: number; T: number; H: number; Hk: number; h: number; window: number; scale: number; score: number }

/** Shapes, dtypes and attrs checked, with a message naming the bad one. */
function problem(inputs: NamedTensorInfoMap, attrs: NamedAttrMap): Problem {
  const q = inputs.q as TensorInfo, k = inputs.k as TensorInfo, v = inputs.v as TensorInfo, docIds = inputs.docIds as TensorInfo;
  const fail = (what: string) => { throw new Error(`${CAUSAL_ATTENTION}: ${what}`); };
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (t.dtype !== 'float32') fail(`${name} must be float32, got ${t.dtype}`);
    if (t.shape.length !== 4) fail(`${name} must be [B,T,heads,headDim], got [${t.shape}]`);
  }
  if (docIds.dtype !== 'int32') fail(`docIds must be int32, got ${docIds.dtype}`);
  const [B, T, H, h] = q.shape, Hk = k.shape[2];
  if (docIds.shape.length !== 2 || docIds.shape[0] !== B || docIds.shape[1] !== T) fail(`docIds must be [${B},${T}], got [${docIds.shape}]`);
  if (k.shape.join() !== v.shape.join() || k.shape[0] !== B || k.shape[1] !== T || k.shape[3] !== h) {
    fail(`k and v must be [${B},${T},Hk,${h}], got k [${k.shape}], v [${v.shape}]`);
  }
  if (Hk === 0 || H % Hk !== 0) fail(`the query heads (${H}) must be a multiple of the key/value heads (${Hk})`);
  if (h < 1 || h > MAX_HEAD_DIM) fail(`head dim ${h} is outside the kernel's 1..${MAX_HEAD_DIM}`);
  const window = attrs.window as number, scale = attrs.scale as number, scoreName = attrs.score as string;
  if (!Number.isInteger(window) || window < 1) fail(`window must be a positive integer, got ${window}`);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) fail(`scale must be a finite number, got ${scale}`);
  if (!(scoreName in ATTENTION_SCORE)) fail(`score must be one of ${Object.keys(ATTENTION_SCORE).join(', ')}, got ${scoreName}`);
  if (T >= 2 ** 24) fail(`T = ${T} is too long (the statistics carry key indices as floats)`);
  // a window over T sees as much as T (and keeps the native int argument in range)
  return { B, T, H, Hk, h, window: Math.min(window, T), scale, score: ATTENTION_SCORE[scoreName as keyof typeof ATTENTION_SCORE] };
}

/** bf16 matmuls ask for bf16 attention products too. */
const tensorCores = (precisionCode: number) => precisionCode === PRECISION.bf16;

export const causalAttentionKernels: CudaKernel[] = [
  {
    kernelName: CAUSAL_ATTENTION,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const p = problem(inputs, attrs);
      const q = inputs.q as TensorInfo;
      const o = backend.makeOutput(q.shape, 'float32');
      // the per-row statistics (m, den, argmax key) ride with o for the gradient
      const stats = backend.attachSaved(o, p.B * p.T * p.H * ATTENTION_STATS * 4);
      backend.device.attention(backend.ptr(q), backend.ptr(inputs.k as TensorInfo), backend.ptr(inputs.v as TensorInfo),
        backend.ptr(inputs.docIds as TensorInfo), backend.ptr(o), stats, p.B, p.T, p.H, p.Hk, p.h, p.window, p.scale, p.score,
        tensorCores(backend.precisionCode));
      return o;
    },
  },
  {
    kernelName: CAUSAL_ATTENTION_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const p = problem(inputs, attrs);
      const q = inputs.q as TensorInfo, k = inputs.k as TensorInfo, v = inputs.v as TensorInfo;
      const dq = backend.makeOutput(q.shape, 'float32'), dk = backend.makeOutput(k.shape, 'float32'), dv = backend.makeOutput(v.shape, 'float32');
      // The forward's statistics where o carries them; else (o made elsewhere, e.g. a copy) the
      // kernel recomputes them into scratch.
      const saved = backend.saved(inputs.o as TensorInfo);
      const scratch = saved === undefined ? backend.makeOutput([p.B, p.T, p.H, ATTENTION_STATS], 'float32') : null;
      const cores = tensorCores(backend.precisionCode);
      const delta = cores ? backend.makeOutput([p.B, p.T, p.H], 'float32') : null;  // dO·O per row
      backend.device.attentionGrad(backend.ptr(q), backend.ptr(k), backend.ptr(v), backend.ptr(inputs.docIds as TensorInfo),
        backend.ptr(inputs.o as TensorInfo), backend.ptr(inputs.dy as TensorInfo), saved ?? backend.ptr(scratch!), saved !== undefined,
        delta ? backend.ptr(delta) : 0, backend.ptr(dq), backend.ptr(dk), backend.ptr(dv), p.B, p.T, p.H, p.Hk, p.h, p.window,
        p.scale, p.score, cores);
      for (const t of [scratch, delta]) if (t) backend.disposeIntermediateTensorInfo(t);
      return [dq, dk, dv];
    },
  },
];
