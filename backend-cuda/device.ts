// The native device interface: what the Node-API addon (native/addon.cc and the registered launchers) exports,
// and what the host reference device (host_device.ts) implements on the CPU. Device pointers are Numbers
// (byte addresses; pointer arithmetic in bytes is exact below 2^53). Codes mirror native/kernels.h.

import type { FusedNative } from './ops/index.ts';

export const DTYPE = { float32: 0, int32: 1, bool: 2 } as const;
export type DeviceDtype = keyof typeof DTYPE;

export const UNARY = {
  Abs: 0, Neg: 1, Exp: 2, Log: 3, Log1p: 4, Sqrt: 5, Rsqrt: 6, Square: 7, Tanh: 8, Sigmoid: 9,
  Relu: 10, Step: 11, Sin: 12, Cos: 13, Reciprocal: 14, Floor: 15, Ceil: 16, Round: 17, Sign: 18,
  LogicalNot: 19, Erf: 20, Softplus: 21, ClipByValue: 22, LeakyRelu: 23, Expm1: 24, Elu: 25,
  Relu6: 26, Atan: 27, Selu: 28,
} as const;
export type UnaryName = keyof typeof UNARY;

export const BINARY = {
  Add: 0, Sub: 1, Multiply: 2, RealDiv: 3, FloorDiv: 4, Maximum: 5, Minimum: 6, Pow: 7,
  SquaredDifference: 8, Mod: 9, Atan2: 10,
  // from here on the output is bool
  Equal: 32, NotEqual: 33, Less: 34, LessEqual: 35, Greater: 36, GreaterEqual: 37,
  LogicalAnd: 38, LogicalOr: 39,
} as const;
export type BinaryName = keyof typeof BINARY;
export const FIRST_COMPARISON = 32;

export const REDUCE = { Sum: 0, Mean: 1, Max: 2, Min: 3, Prod: 4, All: 5, Any: 6, ArgMax: 7, ArgMin: 8 } as const;
export type ReduceName = keyof typeof REDUCE;

export const PRECISION = { bf16: 0, tf32: 1, fp32: 2 } as const;
export type MatmulPrecision = keyof typeof PRECISION;

export interface DeviceInfo {
  name: string;
  ordinal: number;
  multiProcessorCount: number;
  totalMemory: number;
  computeCapability: string;
}

export interface DeviceMemory {
  bytesInUse: number;
  peakBytesInUse: number;
  poolReservedBytes: number;
  poolUsedBytes: number;
  liveBuffers: number;
  /** Allocations that failed once and succeeded only after waiting for the stream and emptying the pool (slow). */
  allocRetries: number;
}

/** The device's core: memory, transfers and the generic kernels. Everything below enqueues on the device's one
 * stream unless it says it waits. */
export interface CoreDevice {
  probe(): { deviceCount: number; driverVersion: number; runtimeVersion: number };
  init(ordinal: number): DeviceInfo;
  dispose(): void;
  alloc(bytes: number): number;
  free(ptr: number): void;
  memory(): DeviceMemory;
  upload(ptr: number, data: Float32Array | Int32Array | Uint8Array): void;
  /** Waits for the stream, then copies. */
  readSync(ptr: number, bytes: number): ArrayBuffer;
  /** Queues the copy; resolves once it is done, without blocking the JS thread. */
  read(ptr: number, bytes: number): Promise<ArrayBuffer>;
  synchronize(): void;
  sync(): Promise<void>;
  timerStart(): number;
  timerEnd(id: number): Promise<number>;

  unary(op: number, dtype: number, x: number, y: number, n: number, alpha: number, beta: number): void;
  /** out is contiguous over dims; aStrides/bStrides in elements (0 = broadcast); a float32 operand stored in bf16 only where
   * aBf16 / bBf16 (its bf16 buffer, read as stored). */
  binary(op: number, dtype: number, a: number, aBf16: boolean, b: number, bBf16: boolean, out: number, dims: number[], aStrides: number[],
    bStrides: number[]): void;
  select(elemBytes: number, cond: number, a: number, b: number, out: number, n: number): void;
  cast(fromDtype: number, toDtype: number, x: number, y: number, n: number): void;
  fill(dtype: number, out: number, n: number, value: number): void;
  range(dtype: number, out: number, n: number, start: number, step: number): void;
  /** dst[Σ i_k·dstStrides_k] = src[Σ i_k·srcStrides_k] over dims (pointers already offset). */
  copy(elemBytes: number, src: number, dst: number, dims: number[], srcStrides: number[], dstStrides: number[]): void;
  /** outer rows of inner contiguous elements → outer results (int32 for ArgMax/ArgMin). */
  reduce(op: number, dtype: number, x: number, out: number, outer: number, inner: number): void;
  gather(elemBytes: number, params: number, indices: number, out: number, batch: number, outer: number, axisDim: number, inner: number, nIdx: number): void;
  /** out (zeroed by the caller) [ids[r], i] += x[r, i]. */
  segmentSum(dtype: number, x: number, ids: number, out: number, rows: number, inner: number, numSegments: number): void;
  oneHot(dtype: number, indices: number, out: number, n: number, depth: number, onValue: number, offValue: number): void;
  softmax(x: number, y: number, rows: number, cols: number): void;
  /** y (bf16, 2 bytes each) = x (float32) rounded to nearest even: the operand copy of a bf16 matmul. */
  toBf16(x: number, y: number, n: number): void;
  /** y (float32) = x (bf16), exactly: a bf16-only tensor's float32 values, made when something reads them. */
  fromBf16(x: number, y: number, n: number): void;
  /** Row-major out[b] = op(A[b])·op(B[b]); strideA ∈ {0, m·k}, strideB ∈ {0, k·n} elements. Under precision bf16 a
   * and b point to bf16 copies (toBf16), else to the float32 tensors; out is float32, or bf16 (rounded to nearest
   * even from the fp32 sum) where outBf16, which needs precision bf16. */
  matmul(a: number, b: number, out: number, batch: number, m: number, n: number, k: number, transA: boolean, transB: boolean,
    strideA: number, strideB: number, precision: number, outBf16: boolean): void;
  /** Row-major out[b] = alpha·op(A[b])·op(B[b]) + beta·C[b] in one cuBLASLt call; every operand has the batch (no
   * broadcast), a and b as in matmul, c [batch, m, n] and out float32, or both bf16 where bf16 (precision bf16: the
   * residual stream, §5), k > 0. */
  matmulAdd(a: number, b: number, c: number, out: number, bf16: boolean, batch: number, m: number, n: number, k: number,
    transA: boolean, transB: boolean, precision: number, alpha: number, beta: number): void;
  /** Row-major out [m, n] (float32, or bf16 where outBf16: rounded to nearest even) = alpha·A·Bᵀ + beta·out over FP8
   * operands A [m, k] and B [n, k] (bytes; e4m3, or e5m2 where flagged; not both e5m2), fp32 accumulation, through
   * cuBLASLt (Hopper); fastAccum: without periodic promotion of the accumulator; beta 1 accumulates (float32 out
   * only). m, n and k are multiples of 16. The FP8 head's GEMMs (ops/fp8_matmul, ops/fp8_head_loss). */
  matmulFp8(a: number, aE5m2: boolean, b: number, bE5m2: boolean, out: number, outBf16: boolean, m: number, n: number, k: number,
    alpha: number, fastAccum: boolean, beta: number): void;
  /** Whether matmul plans made from now on time cuBLASLt's first candidates on their first call and keep the fastest
   * (on by default); off: the heuristic's first choice, the same in every process (native/matmul.cc says when). */
  setMatmulAutotune(on: boolean): void;
}

/** The native device: its core and every fused op's launchers (ops/index.ts). */
export type CudaDevice = CoreDevice & FusedNative;

/** NCCL collectives (native/collectives.cc): the real addon has them, the host reference device does not. */
export interface CudaCollectives {
  /** ncclGetUniqueId: 128 bytes. */
  ncclGetUniqueId(): Uint8Array;
  ncclInit(uniqueId: Uint8Array, worldSize: number, rank: number): void;
  /** Out-of-place float32 all-reduce of each (in, out, count), grouped, on the device's stream. */
  ncclAllReduce(inPtrs: number[], outPtrs: number[], counts: number[], average: boolean): void;
  /** Out-of-place float32 all-gather of each (in: count values, out: worldSize·count, rank r's at r·count), grouped. */
  ncclAllGather(inPtrs: number[], outPtrs: number[], counts: number[]): void;
  ncclDestroy(): void;
}
