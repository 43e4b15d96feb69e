// The token smear's cuda kernels: 'Smear' ({x, w, lambda, docIds}, {acrossDocs} → y) and 'SmearGrad' ({dy, x, w, lambda,
// docIds} → [dx, dw, dlambda]), over smear.cu's launchers; the gate's products in bf16 where the backend's matmuls are.
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { booleanAttr, describe, input } from '../check.ts';
import type { CudaBackend } from '../../backend.ts';
import { PRECISION } from '../../device.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { SMEAR, SMEAR_GRAD, SMEAR_MAX_GATE_CHANNELS } from './smear.ts';

/** smear.cu's launchers (host.ts is their CPU reference). */
export interface SmearNative {
  /** y[t] = x[t] + (x[t−1]·m_t)·λ·σ(x[t, :gate]·w) over rows [rows, d] in batch rows of T (m_t: 0 at t ≡ 0 mod T, else 1
   * where docIds is 0 (across documents), else whether ids t and t − 1 are equal); the dot's operands rounded to bf16
   * where bf16. */
  smear(x: number, w: number, lambda: number, docIds: number, y: number, rows: number, T: number, d: number, gate: number, bf16: boolean): void;
  /** Its gradient: dx [rows, d], dw [gate], dlambda [1]. */
  smearGrad(dy: number, x: number, w: number, lambda: number, docIds: number, dx: number, dw: number, dlambda: number, rows: number,
    T: number, d: number, gate: number, bf16: boolean): void;
}

/** x [B, T, d], w [k, 1] (k ≤ 32, ≤ d), lambda of one value and docIds int32 [B, T], checked; the documents' pointer
 * for the kernels (0 across documents: attr acrossDocs). */
function smearInputs(kernel: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap, backend: CudaBackend) {
  const x = input(kernel, inputs, 'x'), w = input(kernel, inputs, 'w'), lambda = input(kernel, inputs, 'lambda');
  if (x.shape.length !== 3) throw new Error(`${kernel}: x must be [B, T, d], got ${describe(x)}`);
  const [B, T, d] = x.shape;
  if (w.shape.length !== 2 || w.shape[1] !== 1 || w.shape[0] < 1 || w.shape[0] > Math.min(SMEAR_MAX_GATE_CHANNELS, d)) {
    throw new Error(`${kernel}: w must be [k, 1] with 1 ≤ k ≤ ${Math.min(SMEAR_MAX_GATE_CHANNELS, d)}, got ${describe(w)}`);
  }
  if (lambda.shape.reduce((a, b) => a * b, 1) !== 1) throw new Error(`${kernel}: lambda must hold one value, got ${describe(lambda)}`);
  const docIds = input(kernel, inputs, 'docIds', 'int32');
  if (docIds.shape.join() !== [B, T].join()) throw new Error(`${kernel}: docIds must be [${B},${T}], got ${describe(docIds)}`);
  const docs = booleanAttr(kernel, attrs, 'acrossDocs') ? 0 : backend.ptr(docIds);
  return { x, w, lambda, docs, B, T, d, gate: w.shape[0] };
}

const bf16Products = (backend: CudaBackend) => backend.precisionCode === PRECISION.bf16;

export const smearKernels: CudaKernel[] = [
  {
    kernelName: SMEAR,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, w, lambda, docs, B, T, d, gate } = smearInputs(SMEAR, inputs, attrs, backend);
      const y = backend.makeOutput(x.shape, 'float32');
      if (B * T * d > 0) {
        backend.device.smear(backend.ptr(x), backend.ptr(w), backend.ptr(lambda), docs, backend.ptr(y), B * T, T, d,
          gate, bf16Products(backend));
      }
      return y;
    },
  },
  {
    kernelName: SMEAR_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, w, lambda, docs, B, T, d, gate } = smearInputs(SMEAR_GRAD, inputs, attrs, backend);
      const dy = input(SMEAR_GRAD, inputs, 'dy');
      if (dy.shape.join() !== x.shape.join()) throw new Error(`${SMEAR_GRAD}: dy ${describe(dy)} and x ${describe(x)} differ in shape`);
      const outs: TensorInfo[] = [backend.makeOutput(x.shape, 'float32'), backend.makeOutput(w.shape, 'float32'), backend.makeOutput(lambda.shape, 'float32')];
      const [dx, dw, dl] = outs.map((t) => backend.ptr(t));
      backend.device.smearGrad(backend.ptr(dy), backend.ptr(x), backend.ptr(w), backend.ptr(lambda), docs, dx, dw, dl,
        B * T, Math.max(T, 1), d, gate, bf16Products(backend));
      return outs;
    },
  },
];
