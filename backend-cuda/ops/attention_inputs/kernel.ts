// The fused attention inputs' cuda kernels (attention_inputs.cu's launchers):
// 'AttentionInputs' and 'AttentionInputsVE' ({qkv, cos, sin, lambdas[, ve]} → [q, k, v]) and the
// gradient kernel 'AttentionInputsGrad' ({dq, dk, dv, qkv, cos, sin, lambdas[, ve]} → [dqkv, dlambdas[, dve]]); without v
// 'AttentionInputsQK' ({qkv, cos, sin} → [q, k]) and 'AttentionInputsQKGrad' ({dq, dk, qkv, cos, sin} → dqkv). dk and dv
// are read as stored (bf16-only where the tensor-core attention's backward wrote them so).
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { booleanAttr, describe, input, positiveIntAttr } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { ATTENTION_INPUTS, ATTENTION_INPUTS_GRAD, ATTENTION_INPUTS_QK, ATTENTION_INPUTS_QK_GRAD, ATTENTION_INPUTS_VE } from './attention_inputs.ts';

/** attention_inputs.cu's launchers (host.ts is their CPU reference). */
export interface AttentionInputsNative {
  /** The attention's inputs from the QKV projection qkv [B,T,(H+2·Hk)·h] (q heads, k heads, v heads):
   * q [B,T,H,h] and k [B,T,Hk,h] = rotary(norm(raw)) with the tables cos, sin [T, h/2] (norm: RMSNorm
   * over h with eps when qkNorm, else none), v [B,T,Hk,h] = λa·v_raw + λb·ve (λa·v_raw where ve is 0);
   * lambdas: 2 floats on the device; qkv read in bf16 where qkvBf16; q, k, v written in bf16 where outBf16. v 0: qkv
   * [B,T,(H+Hk)·h] holds no v heads, and lambdas and ve are 0. */
  attentionInputs(qkv: number, qkvBf16: boolean, cos: number, sin: number, lambdas: number, ve: number, q: number, k: number, v: number,
    outBf16: boolean, B: number, T: number, H: number, Hk: number, h: number, qkNorm: boolean, eps: number): void;
  /** Its gradient in one pass: dqkv (bf16 where dqkvBf16) from dq, dk, dv (dk and dv in bf16 where kvBf16: the tensor-core
   * attention's) and the saved qkv (rstd recomputed), dve = λb·dv (where ve is not 0; plus veAcc, ve's gradient so far,
   * where not 0: the Add's value), dlambdas (2 floats) = [Σ dv·v_raw, Σ dv·ve] (0 without ve), summed deterministically,
   * plus lambdasAcc (the lambdas' gradient so far) where that is not 0. dv 0: qkv holds no v heads (as the forward's
   * v 0), and lambdas, ve, dlambdas, dve, veAcc and lambdasAcc are 0. */
  attentionInputsGrad(dq: number, dk: number, dv: number, kvBf16: boolean, qkv: number, qkvBf16: boolean, cos: number, sin: number,
    lambdas: number, ve: number, dqkv: number, dqkvBf16: boolean, dlambdas: number, dve: number, veAcc: number, B: number, T: number,
    H: number, Hk: number, h: number, qkNorm: boolean, eps: number, lambdasAcc: number): void;
}

interface Problem { B: number; T: number; H: number; Hk: number; h: number; qkNorm: boolean; eps: number; ve: TensorInfo | null }

/** Shapes, dtypes and attrs checked, with a message naming the kernel and the bad input: qkv with v heads and the lambdas
 * (withV), or q and k heads only. */
function problem(kernel: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap, withV: boolean, withVe: boolean): Problem {
  const fail = (what: string): never => { throw new Error(`${kernel}: ${what}`); };
  if (!withV && ['lambdas', 've', 'lambdasAccumulated', 'veAccumulated'].some((name) => inputs[name] != null)) {
    fail('takes no lambdas or ve, nor their gradients so far (its qkv holds no v heads)');
  }
  if (!withVe && inputs.ve != null) fail(`takes no ve (${ATTENTION_INPUTS_VE} does)`);
  const H = positiveIntAttr(kernel, attrs, 'numHeads'), Hk = positiveIntAttr(kernel, attrs, 'kvHeads');
  const qkNorm = booleanAttr(kernel, attrs, 'qkNorm'), eps = attrs.eps as number;
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) fail(`attr eps must be a finite number ≥ 0, got ${String(eps)}`);
  const qkv = input(kernel, inputs, 'qkv'), heads = H + (withV ? 2 : 1) * Hk;
  if (qkv.shape.length !== 3 || qkv.shape[2] % heads !== 0 || (qkv.shape[2] / heads) % 2 !== 0 || qkv.shape[2] === 0) {
    fail(`qkv must be [B,T,(H+${withV ? '2·' : ''}Hk)·h] with h even for H = ${H}, Hk = ${Hk}, got ${describe(qkv)}`);
  }
  const [B, T] = qkv.shape, h = qkv.shape[2] / heads;
  const expect = (name: string, shape: number[]) => {
    const t = input(kernel, inputs, name);
    if (t.shape.join() !== shape.join()) fail(`${name} must be [${shape}] for qkv ${describe(qkv)}, got ${describe(t)}`);
    return t;
  };
  for (const name of ['cos', 'sin']) expect(name, [1, T, 1, h / 2]);
  if (withV) expect('lambdas', [2]);
  return { B, T, H, Hk, h, qkNorm, eps, ve: withVe ? expect('ve', [B, T, Hk, h]) : null };
}

function forward(kernelName: string, withV: boolean, withVe: boolean): CudaKernel {
  return {
    kernelName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const p = problem(kernelName, inputs, attrs, withV, withVe);
      // q, k, v feed the attention's products: bf16 only under bf16 matmul precision (makeBf16Output), which the
      // tensor-core attention reads as they are (anything else gets them widened)
      const q = backend.makeBf16Output([p.B, p.T, p.H, p.h]);
      const k = backend.makeBf16Output([p.B, p.T, p.Hk, p.h]), v = withV ? backend.makeBf16Output([p.B, p.T, p.Hk, p.h]) : null;
      const qkv = backend.storedValues(inputs.qkv as TensorInfo);  // bf16 as the QKV projection wrote it (ops/linear), or float32
      backend.device.attentionInputs(qkv.ptr, qkv.bf16, backend.ptr(inputs.cos as TensorInfo), backend.ptr(inputs.sin as TensorInfo),
        v ? backend.ptr(inputs.lambdas as TensorInfo) : 0, p.ve ? backend.ptr(p.ve) : 0, q.ptr, k.ptr, v ? v.ptr : 0, q.bf16,
        p.B, p.T, p.H, p.Hk, p.h, p.qkNorm, p.eps);
      return v ? [q.out, k.out, v.out] : [q.out, k.out];
    },
  };
}

/** 'AttentionInputsGrad' (withV: dv and the lambdas, and ve where given) or 'AttentionInputsQKGrad' (dq and dk only). */
const gradient = (kernelName: string, withV: boolean): CudaKernel => ({
  kernelName,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const p = problem(kernelName, inputs, attrs, withV, inputs.ve != null);
    const ptr = (name: string) => backend.ptr(inputs[name] as TensorInfo);
    const dys = withV ? [['dq', p.H], ['dk', p.Hk], ['dv', p.Hk]] as const : [['dq', p.H], ['dk', p.Hk]] as const;
    for (const [name, heads] of dys) {
      const t = inputs[name] as TensorInfo | undefined, shape = [p.B, p.T, heads, p.h];
      if (t == null) throw new Error(`${kernelName}: input ${name} is missing`);
      if (t.dtype !== 'float32' || t.shape.join() !== shape.join()) {
        throw new Error(`${kernelName}: ${name} must be float32 [${shape}], got ${describe(t)}`);
      }
    }
    const qkv = inputs.qkv as TensorInfo;
    // dqkv feeds the QKV projection's two gradient matmuls: bf16 under bf16 matmul precision (makeBf16Output)
    const dqkv = backend.makeBf16Output(qkv.shape), dlambdas = withV ? backend.makeOutput([2], 'float32') : null;
    const dve = p.ve ? backend.makeOutput(p.ve.shape, 'float32') : null;
    // ve's gradient so far (attention_inputs.ts's gradient hands it over: a value embedding feeds two layers), summed into dve
    const veAcc = inputs.veAccumulated == null ? null : input(kernelName, inputs, 'veAccumulated');
    if (veAcc && (!p.ve || veAcc.shape.join() !== p.ve.shape.join())) {
      throw new Error(`${kernelName}: veAccumulated ${describe(veAcc)} needs a ve of its shape, got ${p.ve ? describe(p.ve) : 'none'}`);
    }
    // the lambdas' gradient so far (a gradient accumulation's sum), added to dlambdas
    const lambdasAcc = inputs.lambdasAccumulated == null ? null : input(kernelName, inputs, 'lambdasAccumulated');
    if (lambdasAcc && lambdasAcc.shape.join() !== '2') throw new Error(`${kernelName}: lambdasAccumulated must be float32 [2], got ${describe(lambdasAcc)}`);
    // dk and dv as the attention's backward stored them (bf16 on the tensor cores), both in one type: else both float32
    const stored = backend.storedValues(qkv), dk = inputs.dk as TensorInfo, dv = withV ? inputs.dv as TensorInfo : null;
    const kvBf16 = backend.storedValues(dk).bf16 && (!dv || backend.storedValues(dv).bf16);
    const kv = (t: TensorInfo) => (kvBf16 ? backend.storedValues(t).ptr : backend.ptr(t));
    backend.device.attentionInputsGrad(ptr('dq'), kv(dk), dv ? kv(dv) : 0, kvBf16, stored.ptr, stored.bf16, ptr('cos'), ptr('sin'),
      withV ? ptr('lambdas') : 0, p.ve ? backend.ptr(p.ve) : 0, dqkv.ptr, dqkv.bf16, dlambdas ? backend.ptr(dlambdas) : 0,
      dve ? backend.ptr(dve) : 0, veAcc ? backend.ptr(veAcc) : 0, p.B, p.T, p.H, p.Hk, p.h, p.qkNorm, p.eps,
      lambdasAcc ? backend.ptr(lambdasAcc) : 0);
    return !dlambdas ? dqkv.out : dve ? [dqkv.out, dlambdas, dve] : [dqkv.out, dlambdas];
  },
});

export const attentionInputsKernels: CudaKernel[] = [
  forward(ATTENTION_INPUTS, true, false), forward(ATTENTION_INPUTS_VE, true, true), forward(ATTENTION_INPUTS_QK, false, false),
  gradient(ATTENTION_INPUTS_GRAD, true), gradient(ATTENTION_INPUTS_QK_GRAD, false),
];
