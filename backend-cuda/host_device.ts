// A CPU reference of the native device (each kernel of native/*.cu written as a plain loop), so
// the backend's TypeScript layer — shape logic, strides, refcounts, dtype rules — runs and is
// tested on machines without a GPU (CI), under the backend name given to registerCudaHostBackend.
// Pointers are (buffer id · 2^32 + byte offset), so the backend's pointer arithmetic works as on
// the device.
import * as tf from '@tensorflow/tfjs-core';
import { CudaBackend } from './backend.ts';
import { ATTENTION_STATS, BINARY, DTYPE, FIRST_COMPARISON, LOGIT_CAP, PRECISION, REDUCE, UNARY, type CudaDevice, type DeviceInfo, type DeviceMemory } from './device.ts';
import { registerAllKernels } from './register_all_kernels.ts';
import { registerReductionGradients } from './gradients.ts';
import { attentionBackward, attentionForward, type AttentionArgs } from './host_attention.ts';

const SPAN = 2 ** 32;
type View = Float32Array | Int32Array | Uint8Array;

function erf(x: number): number {  // Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7)
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return x >= 0 ? y : -y;
}

/** The bf16 bits of float32 bits u, rounded to nearest even (NaN stays a quiet NaN), as __float2bfloat16. */
function bf16Bits(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
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

/** The cross-entropy's soft cap: [z, dz/dx] for raw logit x (native/cross_entropy.cu). */
function cappedLogit(cap: number, x: number, scale: number, temp: number): [number, number] {
  if (cap === LOGIT_CAP.sigmoid) {
    const sig = 1 / (1 + Math.exp(-x / temp));
    return [scale * sig, (scale / temp) * sig * (1 - sig)];
  }
  if (cap === LOGIT_CAP.tanh) {
    const th = Math.tanh(x / scale);
    return [scale * th, 1 - th * th];
  }
  if (cap === LOGIT_CAP.none) return [x, 1];
  throw new Error(`host device: logit cap ${cap}`);
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

export class HostDevice implements CudaDevice {
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

  private view(ptr: number, dtype: number, n: number): View {
    const [buf, off] = this.locate(ptr);
    if (dtype === DTYPE.float32) return new Float32Array(buf, off, n);
    if (dtype === DTYPE.int32) return new Int32Array(buf, off, n);
    return new Uint8Array(buf, off, n);
  }

  /** A view from byte `ptr` to the end of its buffer, for strided access (negative strides too). */
  private span(ptr: number, elemBytes: number): { v: View; base: number } {
    const [buf, off] = this.locate(ptr);
    const v = elemBytes === 4 ? new Int32Array(buf) : new Uint8Array(buf);
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
  binary(op: number, dtype: number, a: number, b: number, out: number, dims: number[], aStrides: number[], bStrides: number[]): void {
    const n = dims.reduce((p, d) => p * d, 1);
    const isFloat = dtype === DTYPE.float32;
    const av = this.span(a, dtype === DTYPE.bool ? 1 : 4), bv = this.span(b, dtype === DTYPE.bool ? 1 : 4);
    const read = (s: { v: View; base: number }, off: number) => (isFloat ? new Float32Array(s.v.buffer)[s.base + off] : s.v[s.base + off]);
    const ov = this.view(out, op >= FIRST_COMPARISON ? DTYPE.bool : dtype, n);
    let i = 0;
    for (const [oa, ob] of walk(dims, [aStrides, bStrides])) ov[i++] = binaryOp(op, read(av, oa), read(bv, ob), isFloat);
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
  /** Where a kernel writes n float32 results: the buffer itself, or (bf16 output) a temporary that flush rounds into it. */
  private output(ptr: number, n: number, bf16: boolean): Float32Array {
    return bf16 ? new Float32Array(n) : this.view(ptr, DTYPE.float32, n) as Float32Array;
  }
  private flush(ptr: number, values: Float32Array, bf16: boolean): void {
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
  /** The operand of a matmul: float32 values, or under precision bf16 the bf16 copy's values widened. */
  private operand(ptr: number, n: number, precision: number): Float32Array {
    if (precision !== PRECISION.bf16) return this.view(ptr, DTYPE.float32, n) as Float32Array;
    const [buf, off] = this.locate(ptr);
    const bits = new Uint16Array(buf, off, n), wide = new Uint32Array(n);
    for (let i = 0; i < n; i++) wide[i] = bits[i] << 16;
    return new Float32Array(wide.buffer);
  }
  matmul(a: number, b: number, out: number, batch: number, m: number, n: number, k: number, transA: boolean, transB: boolean, strideA: number, strideB: number, precision: number): void {
    if (batch * m * n === 0) return;
    const av = this.operand(a, (strideA ? batch : 1) * m * k, precision), bv = this.operand(b, (strideB ? batch : 1) * k * n, precision);
    const ov = this.view(out, DTYPE.float32, batch * m * n);
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
  }
  matmulAdd(a: number, b: number, c: number, out: number, batch: number, m: number, n: number, k: number, transA: boolean,
    transB: boolean, precision: number, alpha: number, beta: number): void {
    if (batch * m * n === 0) return;
    if (k === 0) throw new Error('matmul with a C operand needs k > 0 (the caller scales C)');
    this.matmul(a, b, out, batch, m, n, k, transA, transB, m * k, k * n, precision);
    const cv = this.view(c, DTYPE.float32, batch * m * n), ov = this.view(out, DTYPE.float32, batch * m * n);
    for (let i = 0; i < ov.length; i++) ov[i] = alpha * ov[i] + beta * cv[i];
  }
  rmsNorm(x: number, y: number, rows: number, cols: number, eps: number): void {
    if (rows * cols === 0) return;
    const xv = this.view(x, DTYPE.float32, rows * cols), yv = this.view(y, DTYPE.float32, rows * cols);
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let j = 0; j < cols; j++) ss += xv[r * cols + j] ** 2;
      const rstd = 1 / Math.sqrt(ss / cols + eps);
      for (let j = 0; j < cols; j++) yv[r * cols + j] = xv[r * cols + j] * rstd;
    }
  }
  rmsNormGrad(dy: number, x: number, dx: number, rows: number, cols: number, eps: number): void {
    if (rows * cols === 0) return;
    const g = this.view(dy, DTYPE.float32, rows * cols), xv = this.view(x, DTYPE.float32, rows * cols), o = this.view(dx, DTYPE.float32, rows * cols);
    for (let r = 0; r < rows; r++) {
      let ss = 0, dot = 0;
      for (let j = 0; j < cols; j++) { ss += xv[r * cols + j] ** 2; dot += g[r * cols + j] * xv[r * cols + j]; }
      const rstd = 1 / Math.sqrt(ss / cols + eps);
      const c = rstd ** 3 * dot / cols;
      for (let j = 0; j < cols; j++) o[r * cols + j] = rstd * g[r * cols + j] - c * xv[r * cols + j];
    }
  }
  private attentionArgs(q: number, k: number, v: number, docIds: number, B: number, T: number, H: number, Hk: number,
    h: number, window: number, scale: number, score: number): AttentionArgs {
    const f = (p: number, n: number) => this.view(p, DTYPE.float32, n) as Float32Array;
    return { q: f(q, B * T * H * h), k: f(k, B * T * Hk * h), v: f(v, B * T * Hk * h),
      docIds: this.view(docIds, DTYPE.int32, B * T) as Int32Array, B, T, H, Hk, h, window, scale, score };
  }
  // The reference is exact: tensorCores and delta (the GPU's bf16 path) do not apply here.
  attention(q: number, k: number, v: number, docIds: number, o: number, stats: number, B: number, T: number, H: number,
    Hk: number, h: number, window: number, scale: number, score: number, _tensorCores: boolean): void {
    if (B * T === 0) return;
    const n = B * T * H;
    attentionForward(this.attentionArgs(q, k, v, docIds, B, T, H, Hk, h, window, scale, score),
      this.view(o, DTYPE.float32, n * h) as Float32Array,
      stats === 0 ? null : this.view(stats, DTYPE.float32, n * ATTENTION_STATS) as Float32Array);
  }
  attentionGrad(q: number, k: number, v: number, docIds: number, o: number, dO: number, stats: number, statsReady: boolean,
    _delta: number, dq: number, dk: number, dv: number, B: number, T: number, H: number, Hk: number, h: number,
    window: number, scale: number, score: number, _tensorCores: boolean): void {
    if (B * T === 0) return;
    const f = (p: number, n: number) => this.view(p, DTYPE.float32, n) as Float32Array;
    const nq = B * T * H, nk = B * T * Hk * h;
    attentionBackward(this.attentionArgs(q, k, v, docIds, B, T, H, Hk, h, window, scale, score), f(o, nq * h), f(dO, nq * h),
      f(stats, nq * ATTENTION_STATS), statsReady, f(dq, nq * h), f(dk, nk), f(dv, nk));
  }
  softcapCrossEntropy(logits: number, targets: number, rowStats: number, loss: number, rows: number, cols: number,
    cap: number, scale: number, temp: number, mean: boolean): void {
    let total = 0;
    if (rows > 0) {
      const x = this.view(logits, DTYPE.float32, rows * cols), t = this.view(targets, DTYPE.int32, rows);
      const stats = this.view(rowStats, DTYPE.float32, 2 * rows);
      for (let r = 0; r < rows; r++) {
        const z = Array.from(x.subarray(r * cols, (r + 1) * cols), v => cappedLogit(cap, v, scale, temp)[0]);
        const m = z.reduce((p, v) => Math.max(p, v), -Infinity);
        let s = 0;
        for (let j = 0; j < cols; j++) s += Math.exp(z[j] - m);
        stats[r] = m + Math.log(s);
        stats[rows + r] = t[r] >= 0 && t[r] < cols ? stats[r] - z[t[r]] : NaN;
        total += stats[rows + r];
      }
    }
    this.view(loss, DTYPE.float32, 1)[0] = mean && rows > 0 ? total / rows : total;  // an empty mean is 0, as tfjs's
  }
  softcapCrossEntropyGrad(dy: number, logits: number, targets: number, rowStats: number, dlogits: number, dlogitsBf16: boolean,
    rows: number, cols: number, cap: number, scale: number, temp: number, mean: boolean): void {
    if (rows === 0) return;
    const x = this.view(logits, DTYPE.float32, rows * cols), t = this.view(targets, DTYPE.int32, rows);
    const stats = this.view(rowStats, DTYPE.float32, 2 * rows), o = this.output(dlogits, rows * cols, dlogitsBf16);
    const w = this.view(dy, DTYPE.float32, 1)[0] * (mean ? 1 / rows : 1);
    for (let r = 0; r < rows; r++) {
      const g = t[r] >= 0 && t[r] < cols ? w : NaN;
      for (let j = 0; j < cols; j++) {
        const [z, dz] = cappedLogit(cap, x[r * cols + j], scale, temp);
        o[r * cols + j] = g * (Math.exp(z - stats[r]) - (j === t[r] ? 1 : 0)) * dz;
      }
    }
    this.flush(dlogits, o, dlogitsBf16);
  }
  rotary(x: number, cos: number, sin: number, y: number, B: number, T: number, H: number, half: number, inverse: boolean): void {
    const n = B * T * H * 2 * half;
    if (n === 0) return;
    const xv = this.view(x, DTYPE.float32, n), yv = this.view(y, DTYPE.float32, n);
    const c = this.view(cos, DTYPE.float32, T * half), s = this.view(sin, DTYPE.float32, T * half);
    const sign = inverse ? -1 : 1;
    for (let row = 0; row < B * T * H; row++) {
      const t = Math.floor(row / H) % T, o = row * 2 * half;
      for (let j = 0; j < half; j++) {
        const x1 = xv[o + j], x2 = xv[o + half + j], cj = c[t * half + j], sj = sign * s[t * half + j];
        yv[o + j] = x1 * cj + x2 * sj;
        yv[o + half + j] = x2 * cj - x1 * sj;
      }
    }
  }
  /** Each (token, head) row of qkv: [its offset in qkv, kind (0 q, 1 k, 2 v), its offset in q, k or v (and dq, dk or dv), position t]. */
  private static qkvRows(B: number, T: number, H: number, Hk: number, h: number): Array<[number, number, number, number]> {
    const rows: Array<[number, number, number, number]> = [], heads = H + 2 * Hk;
    for (let token = 0; token < B * T; token++) {
      for (let j = 0; j < heads; j++) {
        const kind = j < H ? 0 : j < H + Hk ? 1 : 2;
        const out = kind === 0 ? (token * H + j) * h : (token * Hk + j - H - (kind === 2 ? Hk : 0)) * h;
        rows.push([(token * heads + j) * h, kind, out, token % T]);
      }
    }
    return rows;
  }
  attentionInputs(qkv: number, cos: number, sin: number, lambdas: number, ve: number, q: number, k: number, v: number,
    B: number, T: number, H: number, Hk: number, h: number, qkNorm: boolean, eps: number): void {
    if (B * T === 0) return;
    const f = (p: number, n: number) => this.view(p, DTYPE.float32, n) as Float32Array, half = h / 2;
    const x = f(qkv, B * T * (H + 2 * Hk) * h), c = f(cos, T * half), s = f(sin, T * half), [la, lb] = f(lambdas, 2);
    const outs = [f(q, B * T * H * h), f(k, B * T * Hk * h), f(v, B * T * Hk * h)], e = ve ? f(ve, B * T * Hk * h) : null;
    for (const [i, kind, o, t] of HostDevice.qkvRows(B, T, H, Hk, h)) {
      const y = outs[kind];
      if (kind === 2) {
        for (let j = 0; j < h; j++) y[o + j] = la * x[i + j] + (e ? lb * e[o + j] : 0);
        continue;
      }
      let ss = 0;
      for (let j = 0; j < h; j++) ss += x[i + j] ** 2;
      const rstd = qkNorm ? 1 / Math.sqrt(ss / h + eps) : 1;
      for (let j = 0; j < half; j++) {
        const x1 = x[i + j] * rstd, x2 = x[i + half + j] * rstd, cj = c[t * half + j], sj = s[t * half + j];
        y[o + j] = x1 * cj + x2 * sj;
        y[o + half + j] = x2 * cj - x1 * sj;
      }
    }
  }
  attentionInputsGrad(dq: number, dk: number, dv: number, qkv: number, cos: number, sin: number, lambdas: number, ve: number,
    dqkv: number, dqkvBf16: boolean, dlambdas: number, dve: number, B: number, T: number, H: number, Hk: number, h: number,
    qkNorm: boolean, eps: number): void {
    const f = (p: number, n: number) => this.view(p, DTYPE.float32, n) as Float32Array, half = h / 2;
    const dl = f(dlambdas, 2);
    dl.fill(0);
    if (B * T === 0) return;
    const x = f(qkv, B * T * (H + 2 * Hk) * h), dx = this.output(dqkv, B * T * (H + 2 * Hk) * h, dqkvBf16);
    const c = f(cos, T * half), s = f(sin, T * half);
    const [la, lb] = f(lambdas, 2), dys = [f(dq, B * T * H * h), f(dk, B * T * Hk * h), f(dv, B * T * Hk * h)];
    const e = ve ? f(ve, B * T * Hk * h) : null, de = ve ? f(dve, B * T * Hk * h) : null;
    let dla = 0, dlb = 0;
    for (const [i, kind, o, t] of HostDevice.qkvRows(B, T, H, Hk, h)) {
      const dy = dys[kind];
      if (kind === 2) {
        for (let j = 0; j < h; j++) {
          dx[i + j] = la * dy[o + j];
          dla += dy[o + j] * x[i + j];
          if (e && de) { de[o + j] = lb * dy[o + j]; dlb += dy[o + j] * e[o + j]; }
        }
        continue;
      }
      // g: the gradient of the normed row, the transpose rotation of dy
      const g = new Float64Array(h);
      let ss = 0, dot = 0;
      for (let j = 0; j < half; j++) {
        const d1 = dy[o + j], d2 = dy[o + half + j], cj = c[t * half + j], sj = s[t * half + j];
        g[j] = d1 * cj - d2 * sj;
        g[half + j] = d1 * sj + d2 * cj;
      }
      for (let j = 0; j < h; j++) { ss += x[i + j] ** 2; dot += g[j] * x[i + j]; }
      const rstd = qkNorm ? 1 / Math.sqrt(ss / h + eps) : 1, coef = qkNorm ? rstd ** 3 * dot / h : 0;
      for (let j = 0; j < h; j++) dx[i + j] = rstd * g[j] - coef * x[i + j];
    }
    this.flush(dqkv, dx, dqkvBf16);
    dl[0] = dla;
    dl[1] = dlb;
  }
  headGate(o: number, g: number, y: number, yBf16: boolean, rows: number, h: number): void {
    if (rows * h === 0) return;
    const ov = this.view(o, DTYPE.float32, rows * h), gv = this.view(g, DTYPE.float32, rows), yv = this.output(y, rows * h, yBf16);
    for (let r = 0; r < rows; r++) {
      const s = 1 / (1 + Math.exp(-gv[r]));
      for (let j = 0; j < h; j++) yv[r * h + j] = ov[r * h + j] * s;
    }
    this.flush(y, yv, yBf16);
  }
  headGateGrad(dy: number, o: number, g: number, dO: number, dg: number, rows: number, h: number): void {
    if (rows === 0) return;
    const f = (p: number, n: number) => this.view(p, DTYPE.float32, n);
    const d = f(dy, rows * h), ov = f(o, rows * h), gv = f(g, rows), dov = f(dO, rows * h), dgv = f(dg, rows);
    for (let r = 0; r < rows; r++) {
      const s = 1 / (1 + Math.exp(-gv[r]));
      let dot = 0;
      for (let j = 0; j < h; j++) { dot += d[r * h + j] * ov[r * h + j]; dov[r * h + j] = d[r * h + j] * s; }
      dgv[r] = s * (1 - s) * dot;
    }
  }
  reluSquared(x: number, y: number, yBf16: boolean, n: number): void {
    if (n === 0) return;
    const xv = this.view(x, DTYPE.float32, n), yv = this.output(y, n, yBf16);
    for (let i = 0; i < n; i++) yv[i] = xv[i] > 0 ? xv[i] * xv[i] : 0;  // NaN → 0, as fmaxf in relu_squared.cu
    this.flush(y, yv, yBf16);
  }
  reluSquaredGrad(dy: number, x: number, dx: number, dxBf16: boolean, n: number): void {
    if (n === 0) return;
    const g = this.view(dy, DTYPE.float32, n), xv = this.view(x, DTYPE.float32, n), o = this.output(dx, n, dxBf16);
    for (let i = 0; i < n; i++) o[i] = 2 * g[i] * (xv[i] > 0 ? xv[i] : 0);
    this.flush(dx, o, dxBf16);
  }
  // Products and sums rounded to float32 (Math.fround and the Float32Array stores) as scaled_add.cu (no
  // FMA) and the composite round them; da and db summed in float64 (the GPU's are float32 partial sums).
  scaledAdd(x: number, z: number, a: number, b: number, y: number, n: number): void {
    if (n === 0) return;
    const f = (ptr: number, len = n) => this.view(ptr, DTYPE.float32, len) as Float32Array, r = Math.fround;
    const xv = f(x), zv = f(z), av = f(a, 1)[0], bv = f(b, 1)[0], yv = f(y);
    for (let i = 0; i < n; i++) yv[i] = r(av * xv[i]) + r(bv * zv[i]);
  }
  scaledAddGrad(dy: number, x: number, z: number, a: number, b: number, dx: number, dz: number, da: number, db: number, n: number): void {
    const f = (ptr: number, len = n) => this.view(ptr, DTYPE.float32, len) as Float32Array;
    let sa = 0, sb = 0;
    if (n > 0) {
      const g = f(dy), xv = f(x), zv = f(z), av = f(a, 1)[0], bv = f(b, 1)[0], dxv = f(dx), dzv = f(dz);
      for (let i = 0; i < n; i++) {
        sa += g[i] * xv[i];
        sb += g[i] * zv[i];
        dxv[i] = av * g[i];
        dzv[i] = bv * g[i];
      }
    }
    f(da, 1)[0] = sa;
    f(db, 1)[0] = sb;
  }
  // Each operation rounded to float32 (Math.fround) in the composite's order, as optimizer.cu does.
  adamUpdate(p: number, m: number, v: number, g: number, pOut: number, mOut: number, vOut: number, n: number,
    beta1: number, beta2: number, bc1: number, bc2: number, eps: number, lr: number): void {
    if (n === 0) return;
    const f = (ptr: number) => this.view(ptr, DTYPE.float32, n) as Float32Array, r = Math.fround;
    const pv = f(p), mv = f(m), vv = f(v), gv = f(g), po = f(pOut), mo = f(mOut), vo = f(vOut);
    const b1 = r(beta1), c1 = r(1 - beta1), b2 = r(beta2), c2 = r(1 - beta2);
    const [bc1f, bc2f, epsf, lrf] = [bc1, bc2, eps, lr].map(r);
    for (let i = 0; i < n; i++) {
      const mi = r(r(mv[i] * b1) + r(gv[i] * c1));
      const vi = r(r(vv[i] * b2) + r(r(gv[i] * gv[i]) * c2));
      const update = r(r(mi / bc1f) / r(r(Math.sqrt(r(vi / bc2f))) + epsf));
      po[i] = pv[i] - r(update * lrf);
      mo[i] = mi;
      vo[i] = vi;
    }
  }
  muonMomentum(buf: number, g: number, bufOut: number, nesterov: number, n: number, momentum: number): void {
    if (n === 0) return;
    const f = (ptr: number) => this.view(ptr, DTYPE.float32, n) as Float32Array, r = Math.fround;
    const b = f(buf), gv = f(g), bo = f(bufOut), no = f(nesterov), mu = r(momentum), c = r(1 - momentum);
    for (let i = 0; i < n; i++) {
      const scaledG = r(gv[i] * c), bi = r(r(b[i] * mu) + scaledG);
      bo[i] = bi;
      no[i] = scaledG + r(bi * mu);
    }
  }
}

/** Registers the backend class on the host reference device as `name` (tests without a GPU). */
export function registerCudaHostBackend(name: string): void {
  registerReductionGradients();
  if (tf.findBackendFactory(name) != null) return;
  const device = new HostDevice();
  tf.registerBackend(name, () => new CudaBackend(device, device.init(0), 'fp32'));
  registerAllKernels(name);
}
