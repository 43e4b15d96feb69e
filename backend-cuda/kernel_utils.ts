// Shared building blocks of the kernels: stride arithmetic, the strided copy behind every layout
// change, and the elementwise/cast/transpose/reshape helpers that several kernels reuse.
import * as tf from '@tensorflow/tfjs-core';
import type { DataType, TensorInfo } from '@tensorflow/tfjs-core';
import { bytesPerElement, checkDtype, type CudaBackend } from './backend.ts';
import { BINARY, DTYPE, FIRST_COMPARISON, UNARY, type BinaryName, type UnaryName } from './device.ts';

const MAX_RANK = 8;

export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let k = shape.length - 1; k >= 0; k--) {
    s[k] = acc;
    acc *= shape[k];
  }
  return s;
}

/** Strides (in elements) for reading `inShape` broadcast to `outShape` (0 on broadcast dims). */
export function broadcastStrides(inShape: readonly number[], outShape: readonly number[]): number[] {
  const inStrides = contiguousStrides(inShape);
  const off = outShape.length - inShape.length;
  return outShape.map((_, k) => (k < off || inShape[k - off] === 1 ? 0 : inStrides[k - off]));
}

/**
 * Drops size-1 dims and merges neighbours that every operand walks contiguously, so that most
 * index spaces reach the kernel as rank 1-3. Throws if more than 8 dims remain.
 */
export function collapse(dims: readonly number[], strides: readonly (readonly number[])[]): { dims: number[]; strides: number[][] } {
  const outDims: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let k = 0; k < dims.length; k++) {
    if (dims[k] === 1) continue;
    const last = outDims.length - 1;
    if (last >= 0 && strides.every((s, o) => outStrides[o][last] === s[k] * dims[k])) {
      outDims[last] *= dims[k];
      strides.forEach((s, o) => (outStrides[o][last] = s[k]));
    } else {
      outDims.push(dims[k]);
      strides.forEach((s, o) => outStrides[o].push(s[k]));
    }
  }
  if (outDims.length === 0) {
    outDims.push(1);
    outStrides.forEach(s => s.push(0));
  }
  if (outDims.length > MAX_RANK) {
    throw new Error(`index space of rank ${outDims.length} (dims ${dims}) exceeds the kernels' rank limit of ${MAX_RANK}`);
  }
  return { dims: outDims, strides: outStrides };
}

/**
 * dst[dstOffset + Σ i_k·dstStrides_k] = src[srcOffset + Σ i_k·srcStrides_k] over `dims`
 * (offsets and strides in elements; negative strides allowed).
 */
export function stridedCopy(backend: CudaBackend, src: TensorInfo, srcOffset: number, srcStrides: readonly number[],
  dst: TensorInfo, dstOffset: number, dstStrides: readonly number[], dims: readonly number[]): void {
  if (tf.util.sizeFromShape(dims as number[]) === 0) return;
  const eb = bytesPerElement(src.dtype);
  copyElements(backend, eb, backend.ptr(src) + srcOffset * eb, srcStrides, backend.ptr(dst) + dstOffset * eb, dstStrides, dims);
}

/** The same over raw buffers of elements of `elemBytes` (2: the bf16 values of a bf16-only tensor). */
export function copyElements(backend: CudaBackend, elemBytes: number, src: number, srcStrides: readonly number[], dst: number,
  dstStrides: readonly number[], dims: readonly number[]): void {
  if (tf.util.sizeFromShape(dims as number[]) === 0) return;
  const c = collapse(dims, [srcStrides, dstStrides]);
  backend.device.copy(elemBytes, src, dst, c.dims, c.strides[0], c.strides[1]);
}

/** A view of x with another shape and the same buffer (refcount + 1). */
export function reshapeInfo(backend: CudaBackend, x: TensorInfo, shape: number[]): TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape, dtype: x.dtype };
}

export function identity(backend: CudaBackend, x: TensorInfo): TensorInfo {
  return reshapeInfo(backend, x, x.shape.slice());
}

export function fill(backend: CudaBackend, shape: number[], dtype: DataType, value: number): TensorInfo {
  const out = backend.makeOutput(shape, dtype);
  backend.device.fill(DTYPE[checkDtype(dtype, 'Fill')], backend.ptr(out), tf.util.sizeFromShape(shape), value);
  return out;
}

export function cast(backend: CudaBackend, x: TensorInfo, dtype: DataType): TensorInfo {
  const to = checkDtype(dtype, 'Cast');
  if (x.dtype === to) return identity(backend, x);
  const out = backend.makeOutput(x.shape, to);
  backend.device.cast(DTYPE[checkDtype(x.dtype, 'Cast')], DTYPE[to], backend.ptr(x), backend.ptr(out), tf.util.sizeFromShape(x.shape));
  return out;
}

export function transpose(backend: CudaBackend, x: TensorInfo, perm: readonly number[]): TensorInfo {
  const outShape = perm.map(p => x.shape[p]);
  // A permutation that keeps the order of the dims longer than 1 moves no element: a view (tfjs's gather
  // gradient transposes by the identity around its segment sum: 8 copies of embedding-sized tensors a step).
  const moved = perm.filter(p => x.shape[p] > 1);
  if (moved.every((p, i) => i === 0 || moved[i - 1] < p)) return reshapeInfo(backend, x, outShape);
  const out = backend.makeOutput(outShape, x.dtype);
  const xStrides = contiguousStrides(x.shape);
  stridedCopy(backend, x, 0, perm.map(p => xStrides[p]), out, 0, contiguousStrides(outShape), outShape);
  return out;
}

/** Ops whose integer form goes through float and gives float32 (as the CPU backend does). */
const FLOAT_ONLY_UNARY = new Set<UnaryName>(['Exp', 'Log', 'Log1p', 'Sqrt', 'Rsqrt', 'Tanh', 'Sigmoid', 'Sin', 'Cos',
  'Reciprocal', 'Erf', 'Softplus', 'Expm1', 'Elu', 'Atan', 'Selu']);

export function unary(backend: CudaBackend, name: UnaryName, x: TensorInfo, alpha = 0, beta = 0): TensorInfo {
  checkDtype(x.dtype, name);
  const input = FLOAT_ONLY_UNARY.has(name) && x.dtype !== 'float32' ? cast(backend, x, 'float32') : x;
  const dtype = name === 'LogicalNot' ? 'bool' : input.dtype;
  const out = backend.makeOutput(x.shape, dtype);
  backend.device.unary(UNARY[name], DTYPE[checkDtype(input.dtype, name)], backend.ptr(input), backend.ptr(out),
    tf.util.sizeFromShape(x.shape), alpha, beta);
  if (input !== x) backend.disposeIntermediateTensorInfo(input);
  return out;
}

export function binary(backend: CudaBackend, name: BinaryName, a: TensorInfo, b: TensorInfo): TensorInfo {
  // Operands of one dtype (tfjs ops already match them); RealDiv and Atan2 are float ops.
  let dtype = tf.upcastType(a.dtype, b.dtype);
  if ((name === 'RealDiv' || name === 'Atan2') && dtype !== 'float32') dtype = 'float32';
  if (name === 'LogicalAnd' || name === 'LogicalOr') dtype = 'bool';
  const a2 = a.dtype === dtype ? a : cast(backend, a, dtype);
  const b2 = b.dtype === dtype ? b : cast(backend, b, dtype);
  const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
  const outDtype = BINARY[name] >= FIRST_COMPARISON ? 'bool' : dtype;
  const out = backend.makeOutput(outShape, outDtype);
  if (tf.util.sizeFromShape(outShape) > 0) {
    const c = collapse(outShape, [broadcastStrides(a.shape, outShape), broadcastStrides(b.shape, outShape), contiguousStrides(outShape)]);
    // a bf16-only float32 operand (an activation's gradient under bf16 meeting another gradient in an Add) is read as
    // stored: no float32 copy of it is made (only float32 tensors are ever bf16-only)
    const [as, bs] = [a2, b2].map((t) => backend.storedValues(t));
    backend.device.binary(BINARY[name], DTYPE[checkDtype(dtype, name)], as.ptr, as.bf16, bs.ptr, bs.bf16, backend.ptr(out),
      c.dims, c.strides[0], c.strides[1]);
  }
  if (a2 !== a) backend.disposeIntermediateTensorInfo(a2);
  if (b2 !== b) backend.disposeIntermediateTensorInfo(b2);
  if (name === 'FloorDiv' && outDtype !== 'int32') {  // tfjs: floorDiv always gives int32
    const res = cast(backend, out, 'int32');
    backend.disposeIntermediateTensorInfo(out);
    return res;
  }
  return out;
}

/** x broadcast to `shape` as a new contiguous tensor. */
export function broadcastTo(backend: CudaBackend, x: TensorInfo, shape: number[]): TensorInfo {
  const out = backend.makeOutput(shape, x.dtype);
  stridedCopy(backend, x, 0, broadcastStrides(x.shape, shape), out, 0, contiguousStrides(shape), shape);
  return out;
}
