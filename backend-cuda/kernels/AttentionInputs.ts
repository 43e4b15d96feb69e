// The fused attention-input kernels (native/attention_inputs.cu) behind fused/attention_inputs.ts:
// 'AttentionInputs' and 'AttentionInputsVE' ({qkv, cos, sin, lambdas[, ve]} → [q, k, v]) and the
// gradient kernel 'AttentionInputsGrad' ({dq, dk, dv, qkv, cos, sin, lambdas[, ve]} → [dqkv, dlambdas[, dve]]).
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { ATTENTION_INPUTS, ATTENTION_INPUTS_GRAD, ATTENTION_INPUTS_VE } from '../fused/attention_inputs.ts';
import type { CudaKernel } from './types.ts';

interface Problem { B: number; T: number; H: number; Hk: number; h: number; qkNorm: boolean; eps: number; ve: TensorInfo | null }

const describe = (t: TensorInfo) => `${t.dtype}[${t.shape}]`;

/** Shapes, dtypes and attrs checked, with a message naming the kernel and the bad input. */
function problem(kernel: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap, withVe: boolean): Problem {
  const fail = (what: string): never => { throw new Error(`${kernel}: ${what}`); };
  if (!withVe && inputs.ve != null) fail(`takes no ve (${ATTENTION_INPUTS_VE} does)`);
  const input = (name: string): TensorInfo => {
    const t = inputs[name] as TensorInfo | undefined;
    if (t == null) return fail(`input ${name} is missing`);
    if (t.dtype !== 'float32') fail(`${name} must be float32, got ${describe(t)}`);
    return t;
  };
  const H = attrs.numHeads as number, Hk = attrs.kvHeads as number, qkNorm = attrs.qkNorm, eps = attrs.eps as number;
  if (!Number.isInteger(H) || H < 1) fail(`attr numHeads must be a positive integer, got ${String(H)}`);
  if (!Number.isInteger(Hk) || Hk < 1) fail(`attr kvHeads must be a positive integer, got ${String(Hk)}`);
  if (typeof qkNorm !== 'boolean') fail(`attr qkNorm must be a boolean, got ${String(qkNorm)}`);
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) fail(`attr eps must be a finite number ≥ 0, got ${String(eps)}`);
  const qkv = input('qkv'), heads = H + 2 * Hk;
  if (qkv.shape.length !== 3 || qkv.shape[2] % heads !== 0 || (qkv.shape[2] / heads) % 2 !== 0 || qkv.shape[2] === 0) {
    fail(`qkv must be [B,T,(H+2·Hk)·h] with h even for H = ${H}, Hk = ${Hk}, got ${describe(qkv)}`);
  }
  const [B, T] = qkv.shape, h = qkv.shape[2] / heads;
  const expect = (name: string, shape: number[]) => {
    const t = input(name);
    if (t.shape.join() !== shape.join()) fail(`${name} must be [${shape}] for qkv ${describe(qkv)}, got ${describe(t)}`);
    return t;
  };
  for (const name of ['cos', 'sin']) expect(name, [1, T, 1, h / 2]);
  expect('lambdas', [2]);
  return { B, T, H, Hk, h, qkNorm: qkNorm as boolean, eps, ve: withVe ? expect('ve', [B, T, Hk, h]) : null };
}

function forward(kernelName: string, withVe: boolean): CudaKernel {
  return {
    kernelName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const p = problem(kernelName, inputs, attrs, withVe);
      const q = backend.makeOutput([p.B, p.T, p.H, p.h], 'float32');
      const k = backend.makeOutput([p.B, p.T, p.Hk, p.h], 'float32'), v = backend.makeOutput([p.B, p.T, p.Hk, p.h], 'float32');
      const ptr = (name: string) => backend.ptr(inputs[name] as TensorInfo);
      backend.device.attentionInputs(ptr('qkv'), ptr('cos'), ptr('sin'), ptr('lambdas'), p.ve ? backend.ptr(p.ve) : 0,
        backend.ptr(q), backend.ptr(k), backend.ptr(v), p.B, p.T, p.H, p.Hk, p.h, p.qkNorm, p.eps);
      return [q, k, v];
    },
  };
}

const gradient: CudaKernel = {
  kernelName: ATTENTION_INPUTS_GRAD,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const p = problem(ATTENTION_INPUTS_GRAD, inputs, attrs, inputs.ve != null);
    const ptr = (name: string) => backend.ptr(inputs[name] as TensorInfo);
    const dys = [['dq', p.H], ['dk', p.Hk], ['dv', p.Hk]] as const;
    for (const [name, heads] of dys) {
      const t = inputs[name] as TensorInfo | undefined, shape = [p.B, p.T, heads, p.h];
      if (t == null) throw new Error(`${ATTENTION_INPUTS_GRAD}: input ${name} is missing`);
      if (t.dtype !== 'float32' || t.shape.join() !== shape.join()) {
        throw new Error(`${ATTENTION_INPUTS_GRAD}: ${name} must be float32 [${shape}], got ${describe(t)}`);
      }
    }
    const qkv = inputs.qkv as TensorInfo;
    // dqkv feeds the QKV projection's two gradient matmuls: bf16 under bf16 matmul precision (makeMatmulInput)
    const dqkv = backend.makeMatmulInput(qkv.shape), dlambdas = backend.makeOutput([2], 'float32');
    const dve = p.ve ? backend.makeOutput(p.ve.shape, 'float32') : null;
    backend.device.attentionInputsGrad(ptr('dq'), ptr('dk'), ptr('dv'), ptr('qkv'), ptr('cos'), ptr('sin'), ptr('lambdas'),
      p.ve ? backend.ptr(p.ve) : 0, dqkv.ptr, dqkv.bf16, backend.ptr(dlambdas), dve ? backend.ptr(dve) : 0,
      p.B, p.T, p.H, p.Hk, p.h, p.qkNorm, p.eps);
    return dve ? [dqkv.out, dlambdas, dve] : [dqkv.out, dlambdas];
  },
};

export const attentionInputsKernels: CudaKernel[] = [forward(ATTENTION_INPUTS, false), forward(ATTENTION_INPUTS_VE, true), gradient];
