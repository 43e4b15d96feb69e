// Canon B inside the attention's inputs, the cuda kernels (canon_attention_inputs.cu's launchers): 'CanonAttentionInputs'
// and 'CanonAttentionInputsVE' ({x, w, docIds, cos, sin, lambdas[, ve]} → [q, k, v]) and the gradient kernel
// 'CanonAttentionInputsGrad' ({dq, dk, dv, x, w, docIds, cos, sin, lambdas[, ve, veAccumulated, wAccumulated, lambdasAccumulated]} → [dx, dw,
// dlambdas[, dve]]). x, dk and dv are read as stored (bf16 where the projection and the tensor-core attention's backward
// wrote them so); q, k and v feed the attention's products and dx the projection's gradient matmuls: bf16 under bf16
// matmul precision (makeBf16Output).
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { booleanAttr, describe, input, numberAttr, positiveIntAttr } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { CANON_ATTENTION_INPUTS, CANON_ATTENTION_INPUTS_GRAD, CANON_ATTENTION_INPUTS_VE, canonHeadsFit } from './canon_attention_inputs.ts';

/** Floats of the gradient's scratch `partials` for `rows` rows of C channels (canonAttentionInputsPartialFloats in
 * canon_attention_inputs.h): dw's partials, one per 256 rows and channel ([C,4] each), then a pair of λ sums for each
 * block of 128 channels and 256 rows. */
export function canonAttentionInputsPartialFloats(rows: number, C: number): number {
  const chunks = Math.ceil(rows / 256);
  return chunks * C * 4 + 2 * Math.ceil(C / 128) * chunks;
}

/** canon_attention_inputs.cu's launchers (host.ts is their CPU reference). */
export interface CanonAttentionInputsNative {
  /** q [B,T,H,h], k and v [B,T,Hk,h] from x [B,T,(H+2·Hk)·h] (bf16 where xBf16) through Canon B (taps w [C,4], per
   * document of docIds int32 [B,T]; the q and k heads RMS-normed over h with eps before the taps where qkNorm): q and k its
   * q and k heads rotated (tables cos, sin [T, h/2]), v = λa·its v heads + λb·ve (λa· them where ve is 0); lambdas 2
   * floats; q, k and v in bf16 where outBf16. */
  canonAttentionInputs(x: number, xBf16: boolean, w: number, docIds: number, cos: number, sin: number, lambdas: number, ve: number,
    q: number, k: number, v: number, outBf16: boolean, B: number, T: number, H: number, Hk: number, h: number, qkNorm: boolean,
    eps: number): void;
  /** Its gradient in one pass from dq (float32), dk and dv (bf16 where kvBf16): dx (bf16 where dxBf16), dw [C,4] plus dwAcc
   * where not 0, dlambdas
   * = [Σ dv·u_v, Σ dv·ve] (u the Canon layer's output; 0 for λb without ve) plus lambdasAcc where not 0, dve = λb·dv
   * where ve is not 0, plus veAcc where not 0; dw and dlambdas summed in a fixed order through `partials`
   * (canonAttentionInputsPartialFloats of them). */
  canonAttentionInputsGrad(dq: number, dk: number, dv: number, kvBf16: boolean, x: number, xBf16: boolean, w: number, docIds: number,
    cos: number, sin: number, lambdas: number, ve: number, dx: number, dxBf16: boolean, dw: number, dwAcc: number, dlambdas: number, dve: number,
    veAcc: number, lambdasAcc: number, partials: number, B: number, T: number, H: number, Hk: number, h: number, qkNorm: boolean,
    eps: number): void;
}

interface Problem { B: number; T: number; H: number; Hk: number; h: number; qkNorm: boolean; eps: number; x: TensorInfo; ve: TensorInfo | null }

/** Shapes, dtypes and attrs checked, with a message naming the kernel and the bad input. */
function problem(kernel: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap, withVe: boolean): Problem {
  const fail = (what: string): never => { throw new Error(`${kernel}: ${what}`); };
  if (!withVe && inputs.ve != null) fail(`takes no ve (${CANON_ATTENTION_INPUTS_VE} does)`);
  const H = positiveIntAttr(kernel, attrs, 'numHeads'), Hk = positiveIntAttr(kernel, attrs, 'kvHeads');
  const qkNorm = booleanAttr(kernel, attrs, 'qkNorm'), eps = numberAttr(kernel, attrs, 'eps');
  const x = input(kernel, inputs, 'x'), heads = H + 2 * Hk;
  if (x.shape.length !== 3 || x.shape[2] === 0 || x.shape[2] % heads !== 0) fail(`x must be [B,T,(H+2·Hk)·h] for H = ${H}, Hk = ${Hk}, got ${describe(x)}`);
  const [B, T, C] = x.shape, h = C / heads, fits = canonHeadsFit(h);
  if (fits !== true) fail(fits);
  const expect = (name: string, shape: number[], dtype: 'float32' | 'int32' = 'float32') => {
    const t = input(kernel, inputs, name, dtype);
    if (t.shape.join() !== shape.join()) fail(`${name} must be [${shape}] for x ${describe(x)}, got ${describe(t)}`);
    return t;
  };
  expect('w', [C, 4]);
  expect('docIds', [B, T], 'int32');
  for (const name of ['cos', 'sin']) expect(name, [1, T, 1, h / 2]);
  expect('lambdas', [2]);
  return { B, T, H, Hk, h, qkNorm, eps, x, ve: withVe ? expect('ve', [B, T, Hk, h]) : null };
}

const forward = (kernelName: string, withVe: boolean): CudaKernel => ({
  kernelName,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const p = problem(kernelName, inputs, attrs, withVe), ptr = (name: string) => backend.ptr(inputs[name] as TensorInfo);
    const q = backend.makeBf16Output([p.B, p.T, p.H, p.h]);
    const k = backend.makeBf16Output([p.B, p.T, p.Hk, p.h]), v = backend.makeBf16Output([p.B, p.T, p.Hk, p.h]);
    const x = backend.storedValues(p.x);  // bf16 as the QKV projection wrote it (ops/linear), or float32
    backend.device.canonAttentionInputs(x.ptr, x.bf16, ptr('w'), ptr('docIds'), ptr('cos'), ptr('sin'), ptr('lambdas'),
      p.ve ? backend.ptr(p.ve) : 0, q.ptr, k.ptr, v.ptr, q.bf16, p.B, p.T, p.H, p.Hk, p.h, p.qkNorm, p.eps);
    return [q.out, k.out, v.out];
  },
});

const gradient: CudaKernel = {
  kernelName: CANON_ATTENTION_INPUTS_GRAD,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const kernel = CANON_ATTENTION_INPUTS_GRAD, p = problem(kernel, inputs, attrs, inputs.ve != null);
    const ptr = (name: string) => backend.ptr(inputs[name] as TensorInfo);
    for (const [name, heads] of [['dq', p.H], ['dk', p.Hk], ['dv', p.Hk]] as const) {
      const t = input(kernel, inputs, name), shape = [p.B, p.T, heads, p.h];
      if (t.shape.join() !== shape.join()) throw new Error(`${kernel}: ${name} must be float32 [${shape}], got ${describe(t)}`);
    }
    // the gradients so far of ve (a value embedding feeds two layers), and of w and the lambdas (a gradient accumulation's sums)
    const veAcc = inputs.veAccumulated == null ? null : input(kernel, inputs, 'veAccumulated');
    if (veAcc && (!p.ve || veAcc.shape.join() !== p.ve.shape.join())) {
      throw new Error(`${kernel}: veAccumulated ${describe(veAcc)} needs a ve of its shape, got ${p.ve ? describe(p.ve) : 'none'}`);
    }
    const lambdasAcc = inputs.lambdasAccumulated == null ? null : input(kernel, inputs, 'lambdasAccumulated');
    if (lambdasAcc && lambdasAcc.shape.join() !== '2') throw new Error(`${kernel}: lambdasAccumulated must be float32 [2], got ${describe(lambdasAcc)}`);
    const [B, T, C] = p.x.shape, wAcc = inputs.wAccumulated == null ? null : input(kernel, inputs, 'wAccumulated');
    if (wAcc && wAcc.shape.join() !== [C, 4].join()) throw new Error(`${kernel}: wAccumulated must be float32 [${C},4], got ${describe(wAcc)}`);
    // dx feeds only the QKV projection's gradient matmuls: bf16 under bf16 matmul precision, as they read it
    const dx = backend.makeBf16Output(p.x.shape), dw = backend.makeOutput([C, 4], 'float32');
    const dlambdas = backend.makeOutput([2], 'float32'), dve = p.ve ? backend.makeOutput(p.ve.shape, 'float32') : null;
    // dk and dv as the attention's backward stored them (bf16 on the tensor cores), both in one type: else both float32
    const dk = inputs.dk as TensorInfo, dv = inputs.dv as TensorInfo, x = backend.storedValues(p.x);
    const kvBf16 = backend.storedValues(dk).bf16 && backend.storedValues(dv).bf16;
    const kv = (t: TensorInfo) => (kvBf16 ? backend.storedValues(t).ptr : backend.ptr(t));
    backend.withScratch([canonAttentionInputsPartialFloats(B * T, C) * 4], (partials) => backend.device.canonAttentionInputsGrad(
      ptr('dq'), kv(dk), kv(dv), kvBf16, x.ptr, x.bf16, ptr('w'), ptr('docIds'), ptr('cos'), ptr('sin'), ptr('lambdas'),
      p.ve ? backend.ptr(p.ve) : 0, dx.ptr, dx.bf16, backend.ptr(dw), wAcc ? backend.ptr(wAcc) : 0, backend.ptr(dlambdas), dve ? backend.ptr(dve) : 0,
      veAcc ? backend.ptr(veAcc) : 0, lambdasAcc ? backend.ptr(lambdasAcc) : 0, partials, B, T, p.H, p.Hk, p.h, p.qkNorm, p.eps));
    return dve ? [dx.out, dw, dlambdas, dve] : [dx.out, dw, dlambdas];
  },
};

export const canonAttentionInputsKernels: CudaKernel[] = [forward(CANON_ATTENTION_INPUTS, false), forward(CANON_ATTENTION_INPUTS_VE, true), gradient];
