// Kernels for tfjs-backend-wasm 4.22: one it lacks (UnsortedSegmentSum, the gradient of an embedding
// lookup) and faster versions of BatchMatMul, Identity, Slice, SplitV and Unpack, all working on the
// wasm heap from JavaScript.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

// UnsortedSegmentSum is the gradient of GatherV2 (embedding lookups): out[seg[i]] += x[i].
function unsortedSegmentSum(args: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { x, segmentIds } = args.inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = args.attrs.numSegments as number;
  if (segmentIds.shape.length !== 1 || x.shape[0] !== segmentIds.shape[0]) {
    throw new Error(`UnsortedSegmentSum (wasm): segmentIds ${JSON.stringify(segmentIds.shape)} must be 1-D and match x ${JSON.stringify(x.shape)} on axis 0`);
  }
  const row = x.shape.slice(1).reduce((a, b) => a * b, 1);
  const out = backend.makeOutput([numSegments, ...x.shape.slice(1)], x.dtype);
  const xs = backend.typedArrayFromHeap(x);
  const ids = backend.typedArrayFromHeap(segmentIds);
  const ys = backend.typedArrayFromHeap(out);
  ys.fill(0);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue; // TF semantics: out-of-range ids are dropped
    const src = i * row, dst = s * row;
    for (let j = 0; j < row; j++) ys[dst + j] += xs[src + j];
  }
  return out;
}

// The stock wasm BatchMatMul reaches XNNPACK's fast path only for one plain (untransposed) 2-D product:
// measured on a 2-core x86 machine, a transposed operand runs at 1.4-3 GFLOP/s and a batched product at
// 1-2.7 GFLOP/s, against 12-27 GFLOP/s for a plain one. So: transpose explicitly (a cheap copy), and
// split a batch into plain 2-D products copied in and out of the heap.
type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs: tf.NamedAttrMap };
let stockBatchMatMul: tf.KernelFunc;
let stockTranspose: tf.KernelFunc;

function transposeLast2(x: tf.TensorInfo, backend: BackendWasm): tf.TensorInfo {
  const r = x.shape.length;
  const perm = [...Array(r - 2).keys(), r - 1, r - 2];
  return stockTranspose({ inputs: { x }, backend, attrs: { perm } }) as tf.TensorInfo;
}

function batchMatMul(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  let { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
  const temps: tf.TensorInfo[] = [];
  if (transposeA) temps.push((a = transposeLast2(a, backend)));
  if (transposeB) temps.push((b = transposeLast2(b, backend)));
  const plain = { transposeA: false, transposeB: false };
  const [m, k] = a.shape.slice(-2), n = b.shape[b.shape.length - 1];
  const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
  const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
  let out: tf.TensorInfo;
  if (size(batchA) === 1 && size(batchB) === 1) {
    out = stockBatchMatMul({ inputs: { a, b }, backend, attrs: plain }) as tf.TensorInfo;
    const outBatch = batchA.length >= batchB.length ? batchA : batchB;
    out = { ...out, shape: [...outBatch, m, n] };
  } else {
    const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(batchA, batchB);
    out = backend.makeOutput([...outBatch, m, n], 'float32');
    const nb = size(outBatch);
    // Index of a broadcast operand's matrix for output matrix o (batch dims right-aligned, size-1 dims repeat).
    const sourceIndex = (shape: number[], o: number) => {
      let idx = 0, stride = 1, rest = o;
      for (let d = outBatch.length - 1, s = shape.length - 1; d >= 0; d--, s--) {
        const coord = rest % outBatch[d];
        rest = Math.floor(rest / outBatch[d]);
        if (s >= 0) { if (shape[s] !== 1) idx += coord * stride; stride *= shape[s]; }
      }
      return idx;
    };
    const ai = backend.makeOutput([m, k], 'float32');
    for (let o = 0; o < nb; o++) {
      const ia = sourceIndex(batchA, o), ib = sourceIndex(batchB, o);
      // A fresh b for every product: XNNPACK packs b once and caches it by b's id, so b must never be rewritten.
      const bi = backend.makeOutput([k, n], 'float32');
      backend.typedArrayFromHeap(ai).set(backend.typedArrayFromHeap(a).subarray(ia * m * k, (ia + 1) * m * k));
      backend.typedArrayFromHeap(bi).set(backend.typedArrayFromHeap(b).subarray(ib * k * n, (ib + 1) * k * n));
      const r = stockBatchMatMul({ inputs: { a: ai, b: bi }, backend, attrs: plain }) as tf.TensorInfo;
      // Views are taken after every allocation: a growing wasm heap detaches older ones.
      backend.typedArrayFromHeap(out).set(backend.typedArrayFromHeap(r), o * m * n);
      backend.disposeData(r.dataId);
      backend.disposeData(bi.dataId); // also drops its cached XNNPACK operator
    }
    backend.disposeData(ai.dataId);
  }
  for (const t of temps) backend.disposeData(t.dataId);
  return out;
}

// The stock Identity copies its input, and the autodiff tape clones every tensor it saves through
// Identity: tensors are immutable, so sharing the buffer (as the cpu backend does) is enough.
function identity(args: KernelArgs): tf.TensorInfo {
  const { x } = args.inputs as { x: tf.TensorInfo };
  (args.backend as BackendWasm).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

// The stock Slice reads its whole input through readSync, a copy, for every slice: splitting q|k|v or
// unstacking n matrices copied the input n times. These read the heap in place.
function sliceInto(backend: BackendWasm, x: tf.TensorInfo, begin: number[], size: number[], outShape = size): tf.TensorInfo {
  const out = backend.makeOutput(outShape, x.dtype);
  const n = size.reduce((a, b) => a * b, 1);
  if (n === 0) return out;
  const xs = backend.typedArrayFromHeap(x), ys = backend.typedArrayFromHeap(out); // after the allocation
  const strides = tf.util.computeStrides(x.shape);
  if (tf.slice_util.isSliceContinous(x.shape, begin, size)) {
    const off = tf.slice_util.computeFlatOffset(begin, strides);
    ys.set(xs.subarray(off, off + n));
    return out;
  }
  const rank = x.shape.length, inner = size[rank - 1], idx = new Array<number>(rank - 1).fill(0);
  for (let o = 0; o < n / inner; o++) {
    let src = begin[rank - 1];
    for (let d = 0; d < rank - 1; d++) src += (begin[d] + idx[d]) * strides[d];
    ys.set(xs.subarray(src, src + inner), o * inner);
    for (let d = rank - 2; d >= 0 && ++idx[d] === size[d]; d--) idx[d] = 0;
  }
  return out;
}

function slice(args: KernelArgs): tf.TensorInfo {
  const { x } = args.inputs as { x: tf.TensorInfo };
  const [begin, size] = tf.slice_util.parseSliceParams(x, args.attrs.begin as number[], args.attrs.size as number[]);
  return sliceInto(args.backend as BackendWasm, x, begin, size);
}

function splitV(args: KernelArgs): tf.TensorInfo[] {
  const { x } = args.inputs as { x: tf.TensorInfo };
  const axis = tf.util.parseAxisParam(args.attrs.axis as number, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, args.attrs.numOrSizeSplits as number[] | number, axis);
  const begin = new Array<number>(x.shape.length).fill(0);
  return sizes.map((s) => {
    const size = [...x.shape];
    size[axis] = s;
    const out = sliceInto(args.backend as BackendWasm, x, [...begin], size);
    begin[axis] += s;
    return out;
  });
}

function unpack(args: KernelArgs): tf.TensorInfo[] {
  const { value: x } = args.inputs as { value: tf.TensorInfo };
  const axis = tf.util.parseAxisParam(args.attrs.axis as number, x.shape)[0];
  const size = [...x.shape];
  size[axis] = 1;
  const outShape = x.shape.filter((_, d) => d !== axis);
  return Array.from({ length: x.shape[axis] }, (_, i) => {
    const begin = new Array<number>(x.shape.length).fill(0);
    begin[axis] = i;
    return sliceInto(args.backend as BackendWasm, x, begin, size, outShape);
  });
}

let registered = false;
/** Registers the wasm kernels once (idempotent); call after importing the wasm backend. */
export function registerWasmKernels(): void {
  if (registered) return;
  if (!tf.getKernel(tf.UnsortedSegmentSum, 'wasm')) {
    tf.registerKernel({ kernelName: tf.UnsortedSegmentSum, backendName: 'wasm', kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc });
  }
  const stock = tf.getKernel(tf.BatchMatMul, 'wasm')!;
  stockBatchMatMul = stock.kernelFunc;
  stockTranspose = tf.getKernel(tf.Transpose, 'wasm')!.kernelFunc;
  tf.unregisterKernel(tf.BatchMatMul, 'wasm');
  // The stock setupFunc binds the wasm function that stockBatchMatMul calls; keep it.
  tf.registerKernel({ ...stock, kernelFunc: batchMatMul as unknown as tf.KernelFunc });
  const replacements: [string, (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[]][] = [
    [tf.Identity, identity], [tf.Slice, slice], [tf.SplitV, splitV], [tf.Unpack, unpack],
  ];
  for (const [kernelName, kernelFunc] of replacements) {
    tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
  registered = true;
}
