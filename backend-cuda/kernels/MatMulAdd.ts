// 'MatMulAdd' (fused/matmul_add.ts): out = alpha·op(a)·op(b) + beta·c in one cuBLASLt call (native/matmul.cc
// with a C operand), in the backend's matmul precision; c and the output stay float32. a [...batch, m, k],
// b [...batch, k, n] (either transposed), c [...batch, m, n], all float32 with the same batch dims (no
// broadcast: Newton–Schulz never needs one). An empty contraction (k = 0) gives beta·c.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { binary, fill } from '../kernel_utils.ts';
import { MATMUL_ADD } from '../fused/matmul_add.ts';
import type { CudaKernel } from './types.ts';

function input(inputs: Record<string, unknown>, name: string): TensorInfo {
  const t = inputs[name] as TensorInfo | undefined;
  if (t == null) throw new Error(`${MATMUL_ADD}: input ${name} is missing`);
  if (t.dtype !== 'float32' || t.shape.length < 2) throw new Error(`${MATMUL_ADD}: ${name} must be float32 of rank ≥ 2, got ${t.dtype}[${t.shape}]`);
  return t;
}

function attr<T extends 'number' | 'boolean'>(attrs: NamedAttrMap, name: string, type: T): T extends 'number' ? number : boolean {
  const a = attrs[name];
  if (typeof a !== type || (type === 'number' && !Number.isFinite(a))) {
    throw new Error(`${MATMUL_ADD}: attr ${name} must be a ${type === 'number' ? 'finite number' : 'boolean'}, got ${String(a)}`);
  }
  return a as T extends 'number' ? number : boolean;
}

export const matMulAddConfig: CudaKernel = {
  kernelName: MATMUL_ADD,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const a = input(inputs, 'a'), b = input(inputs, 'b'), c = input(inputs, 'c');
    const alpha = attr(attrs, 'alpha', 'number'), beta = attr(attrs, 'beta', 'number');
    const transA = attr(attrs, 'transposeA', 'boolean'), transB = attr(attrs, 'transposeB', 'boolean');
    const r = a.shape.length, outer = a.shape.slice(0, -2);
    if (b.shape.length !== r || !tf.util.arraysEqual(b.shape.slice(0, -2), outer)) {
      throw new Error(`${MATMUL_ADD}: a [${a.shape}] and b [${b.shape}] must have the same batch dims (no broadcast)`);
    }
    const m = a.shape[r - (transA ? 1 : 2)], k = a.shape[r - (transA ? 2 : 1)];
    const kb = b.shape[r - (transB ? 1 : 2)], n = b.shape[r - (transB ? 2 : 1)];
    if (k !== kb) throw new Error(`${MATMUL_ADD}: inner dimensions differ: [${a.shape}]${transA ? 'ᵀ' : ''} · [${b.shape}]${transB ? 'ᵀ' : ''}`);
    const outShape = [...outer, m, n];
    if (!tf.util.arraysEqual(c.shape, outShape)) throw new Error(`${MATMUL_ADD}: c must be [${outShape}] (the product's shape), got [${c.shape}]`);
    if (k === 0) {
      const scale = fill(backend, [], 'float32', beta);
      const out = binary(backend, 'Multiply', c, scale);
      backend.disposeIntermediateTensorInfo(scale);
      return out;
    }
    const out = backend.makeOutput(outShape, 'float32');
    const batch = tf.util.sizeFromShape(outer);
    if (batch * m * n > 0) {
      const precision = backend.precisionCode;
      backend.device.matmulAdd(backend.matmulOperand(a, precision), backend.matmulOperand(b, precision), backend.ptr(c), backend.ptr(out),
        batch, m, n, k, transA, transB, precision, alpha, beta);
    }
    return out;
  },
};
