// The fused causal attention's cuda kernels: 'CausalAttention' and its gradient kernel 'CausalAttentionGrad'
// ([dq, dk, dv]), float32 tensors. With --matmul-precision bf16 they run on bf16 tensor cores
// (causal_attention_mma.cu: head dims 64 and 128) as the matmuls do, reading q, k, v and dO in bf16 (as stored,
// or the bf16 copy the backend keeps with a tensor) and storing o in bf16 only, as FlashAttention-3 returns it
// (record-2025-11.md §5: the gate and the output projection read it so, and D = dO·O is taken from it); with tf32
// or fp32, and for other head dims, the exact fp32 kernels (causal_attention.cu).
// 'GatedCausalAttention' ([q, k, v, docIds, g] → y = o·σ(g)) and 'GatedCausalAttentionGrad' ([dq, dk, dv, dg]): the
// attention with its output gate (head_gate.cu's kernels) as one op. On the tensor cores the gate runs in the forward's
// epilogue (no pass over o), and the gate's backward writes D = dO·O as it writes dO (no row-dot pass); o itself is no
// tensor, but a buffer the output y carries with the statistics (attachSaved). Elsewhere: the exact kernels, then the
// gate's.
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { describe, input } from '../check.ts';
import { PRECISION } from '../../device.ts';
import type { CudaBackend } from '../../backend.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { ATTENTION_SCORE, CAUSAL_ATTENTION, CAUSAL_ATTENTION_GRAD, GATED_CAUSAL_ATTENTION, GATED_CAUSAL_ATTENTION_GRAD,
  MAX_HEAD_DIM } from './causal_attention.ts';

/** Floats per query row of the statistics the forward keeps with o: m, den, argmax key. */
export const ATTENTION_STATS = 3;

/** The launchers: causal_attention.cu (exact, fp32) and causal_attention_mma.cu (bf16 tensor cores); host.ts is
 * their CPU reference. */
export interface CausalAttentionNative {
  /** Causal attention: q, o [B,T,H,h], k, v [B,T,Hk,h], docIds int32 [B,T] nondecreasing; key j
   * visible to query i iff j ≤ i, i − j < window, same document; score: ATTENTION_SCORE. stats
   * (B·T·H·ATTENTION_STATS floats) is written where not 0. Exact fp32 kernels. */
  attention(q: number, k: number, v: number, docIds: number, o: number, stats: number, B: number, T: number, H: number,
    Hk: number, h: number, window: number, scale: number, score: number): void;
  /** dq, dk, dv from dO; stats as the forward writes them, recomputed into it first unless statsReady. dvAccumulated
   * (0: none): v's gradient so far, added to dv in its store (float32, the sum so far first), as an Add would. */
  attentionGrad(q: number, k: number, v: number, docIds: number, o: number, dO: number, stats: number, statsReady: boolean,
    dq: number, dk: number, dv: number, dvAccumulated: number, B: number, T: number, H: number, Hk: number, h: number,
    window: number, scale: number, score: number): void;
  /** The same on bf16 tensor cores, head dims TENSOR_CORE_HEAD_DIMS: q, k, v in bf16, o in bf16 where oBf16 (else
   * float32), stats float32; gate (float32 [B,T,H] logits) and y (bf16 like o), both or neither (0): the gated output
   * y = o·σ(gate) from o as stored, as HeadGate computes it. */
  attentionBf16(q: number, k: number, v: number, docIds: number, o: number, oBf16: boolean, stats: number, gate: number,
    y: number, B: number, T: number, H: number, Hk: number, h: number, window: number, scale: number, score: number): void;
  /** Its gradient: q, k, v and dO16 (dO in bf16: as stored, or its bf16 copy) in bf16, o as stored (bf16 where oBf16;
   * D = dO·O per row from dO16 and o, into delta: B·T·H floats, unless deltaReady: there already), the forward's stats;
   * dk and dv in bf16 where kvBf16 (not with dvAccumulated), else float32; dvAccumulated as attentionGrad's. */
  attentionGradBf16(q: number, k: number, v: number, docIds: number, o: number, oBf16: boolean, dO16: number, stats: number,
    delta: number, deltaReady: boolean, dq: number, dk: number, dv: number, kvBf16: boolean, dvAccumulated: number, B: number,
    T: number, H: number, Hk: number, h: number, window: number, scale: number, score: number): void;
}

/** The head dims the tensor-core kernels are built for (others run the exact kernels). */
export const TENSOR_CORE_HEAD_DIMS: readonly number[] = [64, 128];

interface Problem { B: number; T: number; H: number; Hk: number; h: number; window: number; scale: number; score: number }

/** Shapes, dtypes and attrs checked, with a message naming the kernel and the bad one. */
function problem(inputs: NamedTensorInfoMap, attrs: NamedAttrMap, kernel = CAUSAL_ATTENTION): Problem {
  const q = inputs.q as TensorInfo, k = inputs.k as TensorInfo, v = inputs.v as TensorInfo, docIds = inputs.docIds as TensorInfo;
  const fail = (what: string) => { throw new Error(`${kernel}: ${what}`); };
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

/** bf16 matmuls ask for bf16 attention products too (on the tensor cores, where the head dim has a kernel). */
const onTensorCores = (backend: CudaBackend, p: Problem) => backend.precisionCode === PRECISION.bf16 && TENSOR_CORE_HEAD_DIMS.includes(p.h);

/** The gradients of k and v [B,T,Hk,h]: stored in bf16 only on the tensor cores (FlashAttention-3's dk and dv; their
 * reader, AttentionInputsGrad, takes them as stored) where `bf16Allowed` (not where dv holds a sum of gradients), else
 * float32. With the pointers the kernels write and whether they are bf16. */
function keyValueGradients(backend: CudaBackend, p: Problem, shape: number[], bf16Allowed: boolean) {
  const inBf16 = bf16Allowed && onTensorCores(backend, p);
  const dk = backend.makeStoredOutput(shape, inBf16), dv = backend.makeStoredOutput(shape, inBf16);
  return { dk: dk.out, dv: dv.out, dkPtr: dk.ptr, dvPtr: dv.ptr, bf16: inBf16 };
}

export const causalAttentionKernels: CudaKernel[] = [
  {
    kernelName: CAUSAL_ATTENTION,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const p = problem(inputs, attrs);
      const q = inputs.q as TensorInfo, k = inputs.k as TensorInfo, v = inputs.v as TensorInfo;
      const docIds = backend.ptr(inputs.docIds as TensorInfo), bytesOfStats = p.B * p.T * p.H * ATTENTION_STATS * 4;
      if (onTensorCores(backend, p)) {
        // o in bf16 only; the per-row statistics (m, den, argmax key) ride with it for the gradient
        const o = backend.makeBf16Output(q.shape), stats = backend.attachSaved(o.out, bytesOfStats);
        // bf16 operands as stored (AttentionInputs writes them so) or a bf16 copy kept with each tensor
        const bf16 = (t: TensorInfo) => backend.matmulOperand(t, PRECISION.bf16);
        backend.device.attentionBf16(bf16(q), bf16(k), bf16(v), docIds, o.ptr, o.bf16, stats, 0, 0, p.B, p.T, p.H, p.Hk, p.h,
          p.window, p.scale, p.score);
        return o.out;
      }
      const o = backend.makeOutput(q.shape, 'float32'), stats = backend.attachSaved(o, bytesOfStats);
      backend.device.attention(backend.ptr(q), backend.ptr(k), backend.ptr(v), docIds, backend.ptr(o), stats, p.B, p.T,
        p.H, p.Hk, p.h, p.window, p.scale, p.score);
      return o;
    },
  },
  {
    kernelName: CAUSAL_ATTENTION_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const p = problem(inputs, attrs);
      const q = inputs.q as TensorInfo, k = inputs.k as TensorInfo, v = inputs.v as TensorInfo;
      const o = inputs.o as TensorInfo, dy = inputs.dy as TensorInfo, docIds = backend.ptr(inputs.docIds as TensorInfo);
      // v's gradient so far (tfjs_node.ts's backward hands it where v's gradient sums: shaped attention's X), added in dv's store
      const acc = inputs.accumulated == null ? null : input(CAUSAL_ATTENTION_GRAD, inputs, 'accumulated');
      if (acc && acc.shape.join() !== v.shape.join()) {
        throw new Error(`${CAUSAL_ATTENTION_GRAD}: accumulated ${describe(acc)} and v ${describe(v)} differ in shape`);
      }
      const dvAccumulated = acc ? backend.ptr(acc) : 0;
      // dk and dv bf16-only on the tensor cores, as FlashAttention-3 writes them, unless dv holds a sum of gradients
      const kv = keyValueGradients(backend, p, k.shape, acc === null);
      const dq = backend.makeOutput(q.shape, 'float32'), dk = kv.dk, dv = kv.dv;
      // The forward's statistics where o carries them; else (o made elsewhere, e.g. a copy) they are recomputed.
      const saved = backend.saved(o);
      const temporaries: TensorInfo[] = [];
      const scratch = (shape: number[]) => { const t = backend.makeOutput(shape, 'float32'); temporaries.push(t); return backend.ptr(t); };
      if (onTensorCores(backend, p)) {
        const bf16 = (t: TensorInfo) => backend.matmulOperand(t, PRECISION.bf16);
        let stats = saved;
        if (stats === undefined) {  // the forward again, for its statistics
          stats = scratch([p.B, p.T, p.H, ATTENTION_STATS]);
          backend.device.attentionBf16(bf16(q), bf16(k), bf16(v), docIds, scratch(q.shape), false, stats, 0, 0, p.B, p.T, p.H,
            p.Hk, p.h, p.window, p.scale, p.score);
        }
        const os = backend.storedValues(o);  // the forward's bf16-only o is read as it is
        backend.device.attentionGradBf16(bf16(q), bf16(k), bf16(v), docIds, os.ptr, os.bf16, bf16(dy), stats,
          scratch([p.B, p.T, p.H]), false, backend.ptr(dq), kv.dkPtr, kv.dvPtr, kv.bf16, dvAccumulated, p.B, p.T, p.H, p.Hk, p.h,
          p.window, p.scale, p.score);
      } else {
        backend.device.attentionGrad(backend.ptr(q), backend.ptr(k), backend.ptr(v), docIds, backend.ptr(o), backend.ptr(dy),
          saved ?? scratch([p.B, p.T, p.H, ATTENTION_STATS]), saved !== undefined, backend.ptr(dq), kv.dkPtr, kv.dvPtr,
          dvAccumulated, p.B, p.T, p.H, p.Hk, p.h, p.window, p.scale, p.score);
      }
      for (const t of temporaries) backend.disposeIntermediateTensorInfo(t);
      return [dq, dk, dv];
    },
  },
  {
    kernelName: GATED_CAUSAL_ATTENTION,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const p = problem(inputs, attrs, GATED_CAUSAL_ATTENTION), g = gateLogits(GATED_CAUSAL_ATTENTION, inputs, p);
      const q = inputs.q as TensorInfo, k = inputs.k as TensorInfo, v = inputs.v as TensorInfo;
      const docIds = backend.ptr(inputs.docIds as TensorInfo), layout = gatedLayout(p, onTensorCores(backend, p));
      // y feeds the output projection: bf16 under bf16 matmul precision, as HeadGate's
      const y = backend.makeBf16Output(q.shape), saved = backend.attachSaved(y.out, layout.bytes);
      const stats = saved, o = saved + layout.oOffset;
      if (layout.onTensorCores) {
        const bf16 = (t: TensorInfo) => backend.matmulOperand(t, PRECISION.bf16);
        backend.device.attentionBf16(bf16(q), bf16(k), bf16(v), docIds, o, true, stats, backend.ptr(g), y.ptr, p.B, p.T, p.H,
          p.Hk, p.h, p.window, p.scale, p.score);
      } else {
        backend.device.attention(backend.ptr(q), backend.ptr(k), backend.ptr(v), docIds, o, stats, p.B, p.T, p.H, p.Hk, p.h,
          p.window, p.scale, p.score);
        backend.device.headGate(o, false, backend.ptr(g), y.ptr, y.bf16, p.B * p.T * p.H, p.h);
      }
      return y.out;
    },
  },
  {
    kernelName: GATED_CAUSAL_ATTENTION_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const kernel = GATED_CAUSAL_ATTENTION_GRAD, p = problem(inputs, attrs, kernel), g = gateLogits(kernel, inputs, p);
      const q = inputs.q as TensorInfo, k = inputs.k as TensorInfo, v = inputs.v as TensorInfo;
      const y = input(kernel, inputs, 'y'), dy = input(kernel, inputs, 'dy'), saved = backend.saved(y);
      if (dy.shape.join() !== q.shape.join()) throw new Error(`${kernel}: dy ${describe(dy)} must have q's shape [${q.shape}]`);
      const kv = keyValueGradients(backend, p, k.shape, true);
      const dq = backend.makeOutput(q.shape, 'float32'), dk = kv.dk, dv = kv.dv, dg = backend.makeOutput(g.shape, 'float32');
      if (p.B * p.T === 0) return [dq, dk, dv, dg];  // empty: the forward saved nothing
      if (saved === undefined) throw new Error(`${kernel}: y ${describe(y)} is not a ${GATED_CAUSAL_ATTENTION} output (it carries o and the statistics)`);
      // the layout the forward chose: the tensor cores' (o in bf16) or the exact kernels'
      const layout = gatedLayout(p, onTensorCores(backend, p));
      if (backend.savedBytes(y) !== layout.bytes) {
        throw new Error(`${kernel}: y ${describe(y)} was made under another matmul precision than its gradient's (${backend.matmulPrecision})`);
      }
      const stats = saved, o = saved + layout.oOffset, docIds = backend.ptr(inputs.docIds as TensorInfo), rows = p.B * p.T * p.H;
      const dys = backend.storedValues(dy);  // the output projection's gradient: bf16 under bf16 (ops/matmul_add)
      if (layout.onTensorCores) {
        // the gate's backward writes dO in bf16 (the products' operand) and D = dO·O beside it: no row-dot pass
        const bf16 = (t: TensorInfo) => backend.matmulOperand(t, PRECISION.bf16);
        backend.withScratch([rows * p.h * 2, rows * 4], (dO16, delta) => {
          backend.device.headGateGrad(dys.ptr, dys.bf16, o, true, backend.ptr(g), dO16, true, backend.ptr(dg), delta, rows, p.h);
          backend.device.attentionGradBf16(bf16(q), bf16(k), bf16(v), docIds, o, true, dO16, stats, delta, true, backend.ptr(dq),
            kv.dkPtr, kv.dvPtr, kv.bf16, 0, p.B, p.T, p.H, p.Hk, p.h, p.window, p.scale, p.score);
        });
      } else {
        backend.withScratch([rows * p.h * 4], (dO) => {
          backend.device.headGateGrad(dys.ptr, dys.bf16, o, false, backend.ptr(g), dO, false, backend.ptr(dg), 0, rows, p.h);
          backend.device.attentionGrad(backend.ptr(q), backend.ptr(k), backend.ptr(v), docIds, o, dO, stats, true, backend.ptr(dq),
            kv.dkPtr, kv.dvPtr, 0, p.B, p.T, p.H, p.Hk, p.h, p.window, p.scale, p.score);
        });
      }
      return [dq, dk, dv, dg];
    },
  },
];

/** The gate's logits g, float32 [B,T,H]: one a query row. */
function gateLogits(kernel: string, inputs: NamedTensorInfoMap, p: Problem): TensorInfo {
  const g = input(kernel, inputs, 'g');
  if (g.shape.join() !== [p.B, p.T, p.H].join()) throw new Error(`${kernel}: g must be [${p.B},${p.T},${p.H}], got ${describe(g)}`);
  return g;
}

/** What a gated output carries for its gradient (one attachSaved buffer): the statistics, then o from oOffset (256-byte
 * aligned: the kernels' 16-byte loads), in bf16 on the tensor cores (FA3's output, as CausalAttention's), else float32. */
function gatedLayout(p: Problem, onTC: boolean): { onTensorCores: boolean; oOffset: number; bytes: number } {
  const rows = p.B * p.T * p.H, oOffset = Math.ceil(rows * ATTENTION_STATS * 4 / 256) * 256;
  return { onTensorCores: onTC, oOffset, bytes: oOffset + rows * p.h * (onTC ? 2 : 4) };
}
