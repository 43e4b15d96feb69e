import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { broadcastTo, cast, fill } from '../kernel_utils.ts';
import type { CudaBackend } from '../backend.ts';
import { PRECISION } from '../device.ts';
import type { CudaKernel } from './types.ts';

/**
 * a [...batchA, m, k] · b [...batchB, k, n] (either transposed) with broadcast batch dims, on
 * cuBLASLt in the backend's matmul precision (bf16: the operands' cached bf16 copies, matmulOperand). A
 * batch of 1 is broadcast by a zero batch stride; other broadcasts are materialised first. int32 operands
 * go through float32 at fp32 precision. bf16Output (the attr; float32 operands): the product stored in bf16 only under
 * bf16 precision (makeBf16Output), for a caller whose readers take it so (MatMulAdd's gradient of an activation).
 */
export function batchMatMul(backend: CudaBackend, a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean,
  bf16Output = false): TensorInfo {
  const ra = a.shape.length, rb = b.shape.length;
  if (ra < 2 || rb < 2) throw new Error(`BatchMatMul needs rank ≥ 2 operands, got [${a.shape}] and [${b.shape}]`);
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const k2 = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (k !== k2) throw new Error(`BatchMatMul inner dimensions differ: [${a.shape}]${transposeA ? 'ᵀ' : ''} · [${b.shape}]${transposeB ? 'ᵀ' : ''}`);
  const outerA = a.shape.slice(0, -2), outerB = b.shape.slice(0, -2);
  const outer = tf.backend_util.assertAndGetBroadcastShape(outerA, outerB);
  const batch = tf.util.sizeFromShape(outer);
  const outDtype = tf.upcastType(a.dtype, b.dtype);
  const toDispose: TensorInfo[] = [];
  const prepare = (x: TensorInfo, xOuter: number[]): { t: TensorInfo; stride: number } => {
    let t = x;
    if (t.dtype !== 'float32') { t = cast(backend, t, 'float32'); toDispose.push(t); }
    const xBatch = tf.util.sizeFromShape(xOuter);
    const mat = x.shape.slice(-2);
    if (xBatch === batch) return { t, stride: mat[0] * mat[1] };
    if (xBatch === 1) return { t, stride: 0 };
    t = broadcastTo(backend, t, [...outer, ...mat]);
    toDispose.push(t);
    return { t, stride: mat[0] * mat[1] };
  };
  const A = prepare(a, outerA), B = prepare(b, outerB);
  const outShape = [...outer, m, n];
  let out: TensorInfo;
  if (k === 0) {
    out = fill(backend, outShape, 'float32', 0);
  } else {
    const precision = outDtype === 'float32' ? backend.precisionCode : PRECISION.fp32;  // integers stay exact
    const stored = backend.makeStoredOutput(outShape, bf16Output && precision === PRECISION.bf16);
    out = stored.out;
    backend.device.matmul(backend.matmulOperand(A.t, precision), backend.matmulOperand(B.t, precision), stored.ptr, batch, m,
      n, k, transposeA, transposeB, A.stride, B.stride, precision, stored.bf16);
  }
  toDispose.forEach(t => backend.disposeIntermediateTensorInfo(t));
  if (outDtype === 'float32') return out;
  const res = cast(backend, out, outDtype);
  backend.disposeIntermediateTensorInfo(out);
  return res;
}

export const batchMatMulConfig: CudaKernel = {
  kernelName: 'BatchMatMul',
  kernelFunc: ({ inputs, backend, attrs }) =>
    batchMatMul(backend, inputs.a as TensorInfo, inputs.b as TensorInfo, attrs.transposeA as boolean, attrs.transposeB as boolean,
      attrs.bf16Output === true),
};
