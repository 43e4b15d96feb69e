// A CPU reference of the native device (each kernel of native/*.cu written as a plain loop, and each fused
// op's launchers from its folder's host.ts), so the backend's TypeScript layer — shape logic, strides,
// refcounts, dtype rules — runs and is tested on machines without a GPU (CI), under the backend name given to
// registerCudaHostBackend.
// Pointers are (buffer id · 2^32 + byte offset), so the backend's pointer arithmetic works as on
// the device.
import * as tf from '@tensorflow/tfjs-core';
import { CudaBackend } from './backend.ts';
import { BINARY, DTYPE, FIRST_COMPARISON, PRECISION, REDUCE, UNARY, type CoreDevice, type CudaDevice, type DeviceInfo, type DeviceMemory } from './device.ts';
import { fusedOps } from './ops/index.ts';
import { FP8_VALUES } from './ops/fp8_matmul/host.ts';
import { registerAllKernels } from './register_all_kernels.ts';
import { registerReductionGradients } from './gradients.ts';

const SPAN = 2 ** 32;
type View = Float32Array | Int32Array | Uint16Array | Uint8Array;

function erf(x: number): number {  // Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7)
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return x >= 0 ? y : -y;
}

/** The bf16 bits of float32 bits u, rounded to nearest even (NaN stays a quiet NaN), as __float2bfloat16. */
export function bf16Bits(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

const bf16Scratch = new Float32Array(1), bf16ScratchBits = new Uint32Array(bf16Scratch.buffer);
/** The value of bf16 bits b (exact: a bf16 is a float32's upper half). */
function bf16BitsValue(b: number): number {
  bf16ScratchBits[0] = b << 16;
  return bf16Scratch[0];
}
/** x (a float32 value) rounded to the nearest bf16, as a number: roundedToBf16 of native/vec.cuh. */
export function bf16Value(x: number): number {
  bf16Scratch[0] = x;
  return bf16BitsValue(bf16Bits(bf16ScratchBits[0]));
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const U = UNARY;
function unaryOp(op: number, x: number, a: number, b: number, isFloat: boolean): number {
  switch (op) {
    case U.Abs: return Math.abs(x);
    case U.Neg: return -x;
    case U.Exp: return Math.exp(x);
    case U.Log: return Math.log(x);
    case U.Log1p: return Math.log1p(x);
    case U.Sqrt: return Math.sqrt(x);
    case U.Rsqrt: return 1 / Math.sqrt(x);
    case U.Square: return x * x;
    case U.Tanh: return Math.tanh(x);
    case U.Sigmoid: return 1 / (1 + Math.exp(-x));
    case U.Relu: return x > 0 ? x : 0;
    case U.Step: return Number.isNaN(x) ? x : x > 0 ? 1 : a;
    case U.Sin: return Math.sin(x);
    case U.Cos: return Math.cos(x);
    case U.Reciprocal: return 1 / x;
    case U.Floor: return Math.floor(x);
    case U.Ceil: return Math.ceil(x);
    case U.Round: return roundHalfEven(x);
    case U.Sign: return x > 0 ? 1 : x < 0 ? -1 : 0;
    case U.LogicalNot: return x === 0 ? 1 : 0;
    case U.Erf: return erf(x);
    case U.Softplus: return x > 20 ? x : Math.log1p(Math.exp(x));
    case U.ClipByValue: return isFloat ? Math.min(Math.max(x, a), b) : Math.min(Math.max(x, Math.trunc(a)), Math.trunc(b));
    case U.LeakyRelu: return x < 0 ? a * x : x;
    case U.Expm1: return Math.expm1(x);
    case U.Elu: return x >= 0 ? x : Math.expm1(x);
    case U.Relu6: return Math.min(Math.max(x, 0), 6);
    case U.Atan: return Math.atan(x);
    case U.Selu: return x >= 0 ? 1.0507009873554805 * x : 1.7580993408473768 * Math.expm1(x);
    default: throw new Error(`host device: unary op ${op}`);
  }
}

const B = BINARY;
function binaryOp(op: number, a: number, b: number, isFloat: boolean): number {
  const floorDiv = () => (isFloat ? Math.floor(a / b) : b === 0 ? 0 : Math.floor(a / b));
  switch (op) {
    case B.Add: return a + b;
    case B.Sub: return a - b;
    case B.Multiply: return isFloat ? a * b : Math.imul(a, b);
    case B.RealDiv: return isFloat ? a / b : floorDiv();
    case B.FloorDiv: return floorDiv();
    case B.Maximum: return Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b);
    case B.Minimum: return Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b);
    case B.Pow: return isFloat ? Math.pow(a, b) : b < 0 ? (a === 1 ? 1 : 0) : Math.pow(a, b);
    case B.SquaredDifference: return (a - b) * (a - b);
    case B.Mod: {
      if (!isFloat && b === 0) return 0;
      const r = a % b;
      return r !== 0 && (r < 0) !== (b < 0) ? r + b : r;
    }
    case B.Atan2: return Math.atan2(a, b);
    case B.Equal: return a === b ? 1 : 0;
    case B.NotEqual: return a !== b ? 1 : 0;
    case B.Less: return a < b ? 1 : 0;
    case B.LessEqual: return a <= b ? 1 : 0;
    case B.Greater: return a > b ? 1 : 0;
    case B.GreaterEqual: return a >= b ? 1 : 0;
    case B.LogicalAnd: return a !== 0 && b !== 0 ? 1 : 0;
    case B.LogicalOr: return a !== 0 || b !== 0 ? 1 : 0;
    default: throw new Error(`host device: binary op ${op}`);
  }
}

/** Offsets of every index of `dims` (row-major order) under each stride vector. */
function* walk(dims: number[], strides: number[][]): Generator<number[]> {
  const n = dims.reduce((a, b) => a * b, 1);
  const idx = new Array<number>(dims.length).fill(0);
  for (let i = 0; i < n; i++) {
    yield strides.map(s => idx.reduce((acc, v, k) => acc + v * s[k], 0));
    for (let k = dims.length - 1; k >= 0; k--) {
      if (++idx[k] < dims[k]) break;
      idx[k] = 0;
    }
  }
}

export class HostDevice implements CoreDevice {
  private buffers = new Map<number, ArrayBuffer>();
  private freeIds: number[] = [];
  private nextId = 1;
  private inUse = 0;
  private peak = 0;
  private timers = new Map<number, number>();
  private nextTimer = 1;

  private locate(ptr: number): [ArrayBuffer, number] {
    const id = Math.floor(ptr / SPAN);
    const buf = this.buffers.get(id);
    if (!buf) throw new Error(`host device: pointer ${ptr} is not allocated`);
    return [buf, ptr - id * SPAN];
  }

  /** n float32 values at ptr (a fused op's reference reads and writes through these). */
  floats(ptr: number, n: number): Float32Array { return this.view(ptr, DTYPE.float32, n) as Float32Array; }
  ints(ptr: number, n: number): Int32Array { return this.view(ptr, DTYPE.int32, n) as Int32Array; }
  bytes(ptr: number, n: number): Uint8Array { return this.view(ptr, DTYPE.bool, n) as Uint8Array; }

  private view(ptr: number, dtype: number, n: number): View {
    const [buf, off] = this.locate(ptr);
    if (dtype === DTYPE.float32) return new Float32Array(buf, off, n);
    if (dtype === DTYPE.int32) return new Int32Array(buf, off, n);
    return new Uint8Array(buf, off, n);
  }

  /** A view from byte `ptr` to the end of its buffer, for strided access (negative strides too). */
  private span(ptr: number, elemBytes: number): { v: View; base: number } {
    const [buf, off] = this.locate(ptr);
    const v = elemBytes === 4 ? new Int32Array(buf) : elemBytes === 2 ? new Uint16Array(buf) : new Uint8Array(buf);
    return { v, base: off / elemBytes };
  }

  probe() { return { deviceCount: 1, driverVersion: 0, runtimeVersion: 0 }; }
  init(ordinal: number): DeviceInfo {
    return { name: 'host reference device', ordinal, multiProcessorCount: 0, totalMemory: 0, computeCapability: 'host' };
  }
  dispose(): void { this.buffers.clear(); }

  alloc(bytes: number): number {
    if (bytes === 0) return 0;
    const id = this.freeIds.pop() ?? this.nextId++;
    this.buffers.set(id, new ArrayBuffer(bytes));
    this.inUse += bytes;
    this.peak = Math.max(this.peak, this.inUse);
    return id * SPAN;
  }
  free(ptr: number): void {
    if (ptr === 0) return;
    const [buf] = this.locate(ptr);
    this.inUse -= buf.byteLength;
    this.buffers.delete(ptr / SPAN);
    this.freeIds.push(ptr / SPAN);
  }
  memory(): DeviceMemory {
    return { bytesInUse: this.inUse, peakBytesInUse: this.peak, poolReservedBytes: this.inUse, poolUsedBytes: this.inUse, liveBuffers: this.buffers.size, allocRetries: 0 };
  }
  upload(ptr: number, data: Float32Array | Int32Array | Uint8Array): void {
    const [buf, off] = this.locate(ptr);
    new Uint8Array(buf, off, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  readSync(ptr: number, bytes: number): ArrayBuffer {
    if (bytes === 0) return new ArrayBuffer(0);
    const [buf, off] = this.locate(ptr);
    return buf.slice(off, off + bytes);
  }
  async read(ptr: number, bytes: number): Promise<ArrayBuffer> { return this.readSync(ptr, bytes); }
  synchronize(): void {}
  async sync(): Promise<void> {}
  timerStart(): number { const id = this.nextTimer++; this.timers.set(id, performance.now()); return id; }
  async timerEnd(id: number): Promise<number> { const t = performance.now() - this.timers.get(id)!; this.timers.delete(id); return t; }

  unary(op: number, dtype: number, x: number, y: number, n: number, alpha: number, beta: number): void {
    if (n === 0) return;
    const xv = this.view(x, dtype, n), yv = this.view(y, dtype, n);
    for (let i = 0; i < n; i++) yv[i] = unaryOp(op, xv[i], alpha, beta, dtype === DTYPE.float32);
  }
  binary(op: number, dtype: number, a: number, aBf16: boolean, b: number, bBf16: boolean, out: number, dims: number[], aStrides: number[],
    bStrides: number[]): void {
    const n = dims.reduce((p, d) => p * d, 1);
    const isFloat = dtype === DTYPE.float32;
    if ((aBf16 || bBf16) && !isFloat) throw new Error('host device: binary takes bf16 operands of float32 tensors only');
    // an operand's value at an element offset: float32, int32 or bool as stored, or a bf16-only float32 widened
    const operand = (ptr: number, bf16: boolean): ((off: number) => number) => {
      if (bf16) {
        const s = this.span(ptr, 2);
        return (off) => bf16BitsValue(s.v[s.base + off]);
      }
      const s = this.span(ptr, dtype === DTYPE.bool ? 1 : 4), floats = isFloat ? new Float32Array(s.v.buffer) : null;
      return (off) => (floats ? floats[s.base + off] : s.v[s.base + off]);
    };
    const readA = operand(a, aBf16), readB = operand(b, bBf16);
    const ov = this.view(out, op >= FIRST_COMPARISON ? DTYPE.bool : dtype, n);
    let i = 0;
    for (const [oa, ob] of walk(dims, [aStrides, bStrides])) ov[i++] = binaryOp(op, readA(oa), readB(ob), isFloat);
  }
  select(elemBytes: number, cond: number, a: number, b: number, out: number, n: number): void {
    if (n === 0) return;
    const c = this.view(cond, DTYPE.bool, n);
    const dt = elemBytes === 4 ? DTYPE.int32 : DTYPE.bool;
    const av = this.view(a, dt, n), bv = this.view(b, dt, n), ov = this.view(out, dt, n);
    for (let i = 0; i < n; i++) ov[i] = c[i] ? av[i] : bv[i];
  }
  cast(fromDtype: number, toDtype: number, x: number, y: number, n: number): void {
    if (n === 0) return;
    const xv = this.view(x, fromDtype, n), yv = this.view(y, toDtype, n);
    for (let i = 0; i < n; i++) {
      const v = xv[i];
      yv[i] = toDtype === DTYPE.bool ? (v !== 0 ? 1 : 0) : toDtype === DTYPE.int32 ? (Number.isNaN(v) ? 0 : Math.trunc(v)) : v;
    }
  }
  fill(dtype: number, out: number, n: number, value: number): void {
    if (n > 0) this.view(out, dtype, n).fill(dtype === DTYPE.bool ? (value !== 0 ? 1 : 0) : value);
  }
  range(dtype: number, out: number, n: number, start: number, step: number): void {
    if (n === 0) return;
    const v = this.view(out, dtype, n);
    for (let i = 0; i < n; i++) v[i] = start + step * i;
  }
  copy(elemBytes: number, src: number, dst: number, dims: number[], srcStrides: number[], dstStrides: number[]): void {
    const s = this.span(src, elemBytes), d = this.span(dst, elemBytes);
    for (const [os, od] of walk(dims, [srcStrides, dstStrides])) d.v[d.base + od] = s.v[s.base + os];
  }
  reduce(op: number, dtype: number, x: number, out: number, outer: number, inner: number): void {
    if (outer === 0) return;
    const isArg = op === REDUCE.ArgMax || op === REDUCE.ArgMin;
    const ov = this.view(out, isArg ? DTYPE.int32 : dtype, outer);
    if (inner === 0) {  // an empty reduction yields the identity, as native/reduce.cu
      ov.fill(op === REDUCE.Prod || op === REDUCE.All ? 1 : op === REDUCE.Max ? -Infinity : op === REDUCE.Min ? Infinity : 0);
      return;
    }
    const xv = this.view(x, dtype, outer * inner);
    for (let r = 0; r < outer; r++) {
      const row = Array.from(xv.subarray(r * inner, (r + 1) * inner));
      let acc: number;
      switch (op) {
        case REDUCE.Sum: acc = row.reduce((p, v) => p + v, 0); break;
        case REDUCE.Mean: acc = row.reduce((p, v) => p + v, 0) / inner; break;
        case REDUCE.Max: acc = row.reduce((p, v) => Math.max(p, v), -Infinity); break;
        case REDUCE.Min: acc = row.reduce((p, v) => Math.min(p, v), Infinity); break;
        case REDUCE.Prod: acc = row.reduce((p, v) => p * v, 1); break;
        case REDUCE.All: acc = row.every(v => v !== 0) ? 1 : 0; break;
        case REDUCE.Any: acc = row.some(v => v !== 0) ? 1 : 0; break;
        default: {
          acc = 0;
          for (let j = 1; j < inner; j++) if (op === REDUCE.ArgMax ? row[j] > row[acc] : row[j] < row[acc]) acc = j;
        }
      }
      ov[r] = acc;
    }
  }
  gather(elemBytes: number, params: number, indices: number, out: number, batch: number, outer: number, axisDim: number, inner: number, nIdx: number): void {
    const n = batch * outer * nIdx * inner;
    if (n === 0) return;
    const dt = elemBytes === 4 ? DTYPE.int32 : DTYPE.bool;
    const p = this.view(params, dt, batch * outer * axisDim * inner), idx = this.view(indices, DTYPE.int32, batch * nIdx), o = this.view(out, dt, n);
    for (let i = 0; i < n; i++) {
      const inn = i % inner, j = Math.floor(i / inner) % nIdx, ob = Math.floor(i / (inner * nIdx));
      const oo = ob % outer, b = Math.floor(ob / outer), k = idx[b * nIdx + j];
      o[i] = k >= 0 && k < axisDim ? p[((b * outer + oo) * axisDim + k) * inner + inn] : 0;
    }
  }
  segmentSum(dtype: number, x: number, ids: number, out: number, rows: number, inner: number, numSegments: number): void {
    if (rows * inner === 0) return;
    const xv = this.view(x, dtype, rows * inner), iv = this.view(ids, DTYPE.int32, rows), ov = this.view(out, dtype, numSegments * inner);
    for (let r = 0; r < rows; r++) {
      const s = iv[r];
      if (s < 0 || s >= numSegments) continue;
      for (let j = 0; j < inner; j++) ov[s * inner + j] += xv[r * inner + j];
    }
  }
  oneHot(dtype: number, indices: number, out: number, n: number, depth: number, onValue: number, offValue: number): void {
    if (n * depth === 0) return;
    const iv = this.view(indices, DTYPE.int32, n), ov = this.view(out, dtype, n * depth);
    for (let i = 0; i < n * depth; i++) ov[i] = iv[Math.floor(i / depth)] === i % depth ? onValue : offValue;
  }
  softmax(x: number, y: number, rows: number, cols: number): void {
    if (rows * cols === 0) return;
    const xv = this.view(x, DTYPE.float32, rows * cols), yv = this.view(y, DTYPE.float32, rows * cols);
    for (let r = 0; r < rows; r++) {
      const row = Array.from(xv.subarray(r * cols, (r + 1) * cols));
      const m = row.reduce((p, v) => Math.max(p, v), -Infinity);
      let s = 0;
      for (let j = 0; j < cols; j++) s += Math.exp(row[j] - m);
      for (let j = 0; j < cols; j++) yv[r * cols + j] = Math.exp(row[j] - m) / s;
    }
  }
  /** The n values a kernel reads from a tensor stored in float32 or (bf16, a bf16-only tensor) in bf16, as float32. */
  input(ptr: number, n: number, bf16: boolean): Float32Array {
    return bf16 ? this.bf16Floats(ptr, n) : this.floats(ptr, n);
  }
  /** Where a kernel writes n float32 results: the buffer itself, or (bf16 output) a temporary that flush rounds into it. */
  output(ptr: number, n: number, bf16: boolean): Float32Array {
    return bf16 ? new Float32Array(n) : this.view(ptr, DTYPE.float32, n) as Float32Array;
  }
  flush(ptr: number, values: Float32Array, bf16: boolean): void {
    if (!bf16 || values.length === 0) return;
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length), [buf, off] = this.locate(ptr);
    const out = new Uint16Array(buf, off, values.length);
    for (let i = 0; i < values.length; i++) out[i] = bf16Bits(bits[i]);
  }
  fromBf16(x: number, y: number, n: number): void {
    if (n > 0) this.view(y, DTYPE.float32, n).set(this.operand(x, n, PRECISION.bf16));
  }
  toBf16(x: number, y: number, n: number): void {
    if (n === 0) return;
    const xv = new Uint32Array(this.view(x, DTYPE.float32, n).slice().buffer), [buf, off] = this.locate(y);
    const yv = new Uint16Array(buf, off, n);
    for (let i = 0; i < n; i++) yv[i] = bf16Bits(xv[i]);
  }
  /** The n values of a bf16 buffer, widened to float32 (exact; a copy). */
  bf16Floats(ptr: number, n: number): Float32Array {
    const [buf, off] = this.locate(ptr);
    const bits = new Uint16Array(buf, off, n), wide = new Uint32Array(n);
    for (let i = 0; i < n; i++) wide[i] = bits[i] << 16;
    return new Float32Array(wide.buffer);
  }
  /** The operand of a matmul: float32 values, or under precision bf16 the bf16 copy's values widened. */
  private operand(ptr: number, n: number, precision: number): Float32Array {
    return precision === PRECISION.bf16 ? this.bf16Floats(ptr, n) : this.view(ptr, DTYPE.float32, n) as Float32Array;
  }
  matmul(a: number, b: number, out: number, batch: number, m: number, n: number, k: number, transA: boolean, transB: boolean,
    strideA: number, strideB: number, precision: number, outBf16: boolean): void {
    if (batch * m * n === 0) return;
    if (outBf16 && precision !== PRECISION.bf16) throw new Error('matmul: a bf16 out needs bf16 operands');
    const av = this.operand(a, (strideA ? batch : 1) * m * k, precision), bv = this.operand(b, (strideB ? batch : 1) * k * n, precision);
    const ov = this.output(out, batch * m * n, outBf16);
    for (let p = 0; p < batch; p++) {
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let q = 0; q < k; q++) {
            const x = av[p * strideA + (transA ? q * m + i : i * k + q)];
            const y = bv[p * strideB + (transB ? j * k + q : q * n + j)];
            s += x * y;
          }
          ov[(p * m + i) * n + j] = s;
        }
      }
    }
    this.flush(out, ov, outBf16);
  }
  matmulAdd(a: number, b: number, c: number, out: number, bf16: boolean, batch: number, m: number, n: number, k: number,
    transA: boolean, transB: boolean, precision: number, alpha: number, beta: number): void {
    if (batch * m * n === 0) return;
    if (k === 0) throw new Error('matmul with a C operand needs k > 0 (the caller scales C)');
    if (bf16 && precision !== PRECISION.bf16) throw new Error('matmul: a bf16 out needs bf16 operands');
    // the product in float32 (a scratch buffer for a bf16 out), then alpha·AB + beta·C rounded once into out
    const product = bf16 ? this.alloc(batch * m * n * 4) : out;
    this.matmul(a, b, product, batch, m, n, k, transA, transB, m * k, k * n, precision, false);
    const cv = this.input(c, batch * m * n, bf16), pv = this.floats(product, batch * m * n), ov = this.output(out, batch * m * n, bf16);
    for (let i = 0; i < ov.length; i++) ov[i] = alpha * pv[i] + beta * cv[i];
    this.flush(out, ov, bf16);
    if (bf16) this.free(product);
  }
  /** One algorithm here: nothing to choose. */
  setMatmulAutotune(_on: boolean): void {}
  /** Sums in float64, fastAccum or not (the GPU accumulates in fp32, in fewer bits with fastAccum). */
  matmulFp8(a: number, aE5m2: boolean, b: number, bE5m2: boolean, out: number, outBf16: boolean, m: number, n: number, k: number,
    alpha: number, _fastAccum: boolean, beta: number): void {
    if (aE5m2 && bE5m2) throw new Error('matmulFp8: cuBLASLt has no e5m2 × e5m2 kernel');
    if (m % 16 || n % 16 || k % 16) throw new Error(`matmulFp8: m = ${m}, n = ${n}, k = ${k} must be multiples of 16`);
    if (outBf16 && beta !== 0) throw new Error('matmulFp8: beta must be 0 with a bf16 out (accumulate in float32)');
    const av = this.bytes(a, m * k), bv = this.bytes(b, n * k), ov = this.output(out, m * n, outBf16);
    const at = aE5m2 ? FP8_VALUES.e5m2 : FP8_VALUES.e4m3, bt = bE5m2 ? FP8_VALUES.e5m2 : FP8_VALUES.e4m3;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) s += at[av[i * k + q]] * bt[bv[j * k + q]];
        ov[i * n + j] = Math.fround(alpha) * s + (beta ? Math.fround(beta) * ov[i * n + j] : 0);
      }
    }
    this.flush(out, ov, outBf16);
  }
}

/** The host reference device: the core above and every fused op's reference launchers (ops/index.ts). */
export function createHostDevice(): CudaDevice {
  const core = new HostDevice();
  for (const op of fusedOps) if ('host' in op) Object.assign(core, op.host(core));
  return core as HostDevice & CudaDevice;
}

/** Registers the backend class on the host reference device as `name` (tests without a GPU). */
export function registerCudaHostBackend(name: string): void {
  registerReductionGradients();
  if (tf.findBackendFactory(name) != null) return;
  const device = createHostDevice();
  tf.registerBackend(name, () => new CudaBackend(device, device.init(0), 'fp32'));
  registerAllKernels(name);
}
