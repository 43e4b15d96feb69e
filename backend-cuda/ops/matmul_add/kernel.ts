// The fused matmul-and-add's cuda kernel 'MatMulAdd' (matmul_add.ts): out = alpha·op(a)·op(b) + beta·c in one
// cuBLASLt call (the device's matmulAdd: native/matmul.cc with a C operand), in the backend's matmul precision; c and the
// output are float32, or both bf16 where c is stored in bf16 only under bf16 precision (the residual stream).
// a [...batch, m, k], b [...batch, k, n] (either transposed), c [...batch, m, n], all float32 with the same batch dims
// (no broadcast: Newton–Schulz never needs one). An empty contraction (k = 0) gives beta·c.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { binary, fill } from '../../kernel_utils.ts';
import { booleanAttr, input as checkedInput, numberAttr } from '../check.ts';
import { PRECISION } from '../../device.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { MATMUL_ADD } from './matmul_add.ts';

function input(inputs: NamedTensorInfoMap, name: string): TensorInfo {
  const t = checkedInput(MATMUL_ADD, inputs, name);
  if (t.shape.length < 2) throw new Error(`${MATMUL_ADD}: ${name} must be float32 of rank ≥ 2, got ${t.dtype}[${t.shape}]`);
  return t;
}

export const matMulAddKernels: CudaKernel[] = [{
  kernelName: MATMUL_ADD,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const a = input(inputs, 'a'), b = input(inputs, 'b'), c = input(inputs, 'c');
    const alpha = numberAttr(MATMUL_ADD, attrs, 'alpha'), beta = numberAttr(MATMUL_ADD, attrs, 'beta');
    const transA = booleanAttr(MATMUL_ADD, attrs, 'transposeA'), transB = booleanAttr(MATMUL_ADD, attrs, 'transposeB');
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
    // A bf16-only c (the residual stream under bf16 precision: the record's, §5) gives a bf16-only sum, c read as stored
    const precision = backend.precisionCode, stored = backend.storedValues(c), bf16 = stored.bf16 && precision === PRECISION.bf16;
    const half = bf16 ? backend.makeBf16Only(outShape) : null, out = half?.out ?? backend.makeOutput(outShape, 'float32');
    const batch = tf.util.sizeFromShape(outer);
    if (batch * m * n > 0) {
      backend.device.matmulAdd(backend.matmulOperand(a, precision), backend.matmulOperand(b, precision), bf16 ? stored.ptr : backend.ptr(c),
        half ? half.ptr : backend.ptr(out), bf16, batch, m, n, k, transA, transB, precision, alpha, beta);
    }
    backend.markGradientOperand(out);  // its gradient is the dy of this product's gradients
    return out;
  },
}];
