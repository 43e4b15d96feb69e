// The native device interface: what the Node-API addon (native/addon.cc) exports, and what the
// host reference device (host_device.ts) implements on the CPU. Device pointers are Numbers
// (byte addresses; pointer arithmetic in bytes is exact below 2^53). Codes mirror native/kernels.h.

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

/** The fused attention's score (native/attention.cu): softmax, softpick or softmax1 over the visible keys. */
export const ATTENTION_SCORE = { softmax: 0, softpick: 1, softmax1: 2 } as const;
/** Floats per query row of the fused attention's statistics: m, den, argmax key. */
export const ATTENTION_STATS = 3;

/** The fused cross-entropy's logit soft cap z = cap(x): x | scale·σ(x/temp) | scale·tanh(x/scale). */
export const LOGIT_CAP = { none: 0, sigmoid: 1, tanh: 2 } as const;

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

/** Everything below enqueues on the device's one stream unless it says it waits. */
export interface CudaDevice {
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
  /** out is contiguous over dims; aStrides/bStrides in elements (0 = broadcast). */
  binary(op: number, dtype: number, a: number, b: number, out: number, dims: number[], aStrides: number[], bStrides: number[]): void;
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
   * and b point to bf16 copies (toBf16), else to the float32 tensors; out is float32. */
  matmul(a: number, b: number, out: number, batch: number, m: number, n: number, k: number, transA: boolean, transB: boolean, strideA: number, strideB: number, precision: number): void;
  /** Row-major out[b] = alpha·op(A[b])·op(B[b]) + beta·C[b] in one cuBLASLt call; every operand has the batch (no
   * broadcast), a and b as in matmul, c is float32 [batch, m, n], k > 0. */
  matmulAdd(a: number, b: number, c: number, out: number, batch: number, m: number, n: number, k: number, transA: boolean,
    transB: boolean, precision: number, alpha: number, beta: number): void;
  /** y = x·(mean(x²) + eps)^-½ over rows of `cols`. */
  rmsNorm(x: number, y: number, rows: number, cols: number, eps: number): void;
  rmsNormGrad(dy: number, x: number, dx: number, rows: number, cols: number, eps: number): void;
  /** Causal attention: q, o [B,T,H,h], k, v [B,T,Hk,h], docIds int32 [B,T] nondecreasing; key j
   * visible to query i iff j ≤ i, i − j < window, same document; score: ATTENTION_SCORE. stats
   * (B·T·H·ATTENTION_STATS floats) is written where not 0. tensorCores: bf16 tensor-core kernels
   * where they apply (head dim 64 or 128, 16-byte aligned tensors), else exact fp32 ones. */
  attention(q: number, k: number, v: number, docIds: number, o: number, stats: number, B: number, T: number, H: number,
    Hk: number, h: number, window: number, scale: number, score: number, tensorCores: boolean): void;
  /** dq, dk, dv from dO; stats as the forward writes them, recomputed into it first unless statsReady;
   * delta: B·T·H floats of scratch for the tensor-core kernels (0: the exact ones). */
  attentionGrad(q: number, k: number, v: number, docIds: number, o: number, dO: number, stats: number, statsReady: boolean,
    delta: number, dq: number, dk: number, dv: number, B: number, T: number, H: number, Hk: number, h: number,
    window: number, scale: number, score: number, tensorCores: boolean): void;
  /** Soft-capped cross-entropy of raw logits [rows, cols] (cap: LOGIT_CAP) against int32 targets:
   * rowStats (2·rows floats) ← each row's logsumexp, then each row's loss (NaN for a target outside
   * [0, cols)); loss (1 float) ← their sum, or mean (0 for no rows). */
  softcapCrossEntropy(logits: number, targets: number, rowStats: number, loss: number, rows: number, cols: number,
    cap: number, scale: number, temp: number, mean: boolean): void;
  /** dlogits = dy·w·(softmax(z) − onehot(target))·dz/dx, w = 1 or 1/rows (mean); rowStats from the forward;
   * dlogits in bf16 where dlogitsBf16. */
  softcapCrossEntropyGrad(dy: number, logits: number, targets: number, rowStats: number, dlogits: number, dlogitsBf16: boolean,
    rows: number, cols: number, cap: number, scale: number, temp: number, mean: boolean): void;
  /** Rotary embedding of x [B,T,H,2·half] into y: the pair (j, j + half) of token t turns by the angle
   * with cosine cos[t, j] and sine sin[t, j] (tables [T, half]); inverse turns back (the gradient). */
  rotary(x: number, cos: number, sin: number, y: number, B: number, T: number, H: number, half: number, inverse: boolean): void;
  /** The attention's inputs from the QKV projection qkv [B,T,(H+2·Hk)·h] (q heads, k heads, v heads):
   * q [B,T,H,h] and k [B,T,Hk,h] = rotary(norm(raw)) with the tables cos, sin [T, h/2] (norm: RMSNorm
   * over h with eps when qkNorm, else none), v [B,T,Hk,h] = λa·v_raw + λb·ve (λa·v_raw where ve is 0);
   * lambdas: 2 floats on the device. */
  attentionInputs(qkv: number, cos: number, sin: number, lambdas: number, ve: number, q: number, k: number, v: number,
    B: number, T: number, H: number, Hk: number, h: number, qkNorm: boolean, eps: number): void;
  /** Its gradient in one pass: dqkv (bf16 where dqkvBf16) from dq, dk, dv and the saved qkv (rstd recomputed), dve = λb·dv (where
   * ve is not 0), dlambdas (2 floats) = [Σ dv·v_raw, Σ dv·ve] (0 without ve), summed deterministically. */
  attentionInputsGrad(dq: number, dk: number, dv: number, qkv: number, cos: number, sin: number, lambdas: number, ve: number,
    dqkv: number, dqkvBf16: boolean, dlambdas: number, dve: number, B: number, T: number, H: number, Hk: number, h: number, qkNorm: boolean,
    eps: number): void;
  /** The attention output gate over rows of h floats: y = o·σ(g), g one logit per row (y in bf16 where yBf16). */
  headGate(o: number, g: number, y: number, yBf16: boolean, rows: number, h: number): void;
  /** Its gradient: dO = dy·σ(g), dg = σ(g)(1 − σ(g))·Σ_h dy·o per row. */
  headGateGrad(dy: number, o: number, g: number, dO: number, dg: number, rows: number, h: number): void;
  /** y = relu(x)² over n floats (y in bf16 where yBf16). */
  reluSquared(x: number, y: number, yBf16: boolean, n: number): void;
  /** dx = dy·2·relu(x) over n floats (dx in bf16 where dxBf16). */
  reluSquaredGrad(dy: number, x: number, dx: number, dxBf16: boolean, n: number): void;
  /** y = a·x + b·z over n floats; a and b are one float each on the device. */
  scaledAdd(x: number, z: number, a: number, b: number, y: number, n: number): void;
  /** dx = a·dy, dz = b·dy over n floats; da = Σ dy·x, db = Σ dy·z (one float each, in a fixed order; 0 for n = 0). */
  scaledAddGrad(dy: number, x: number, z: number, a: number, b: number, dx: number, dz: number, da: number, db: number, n: number): void;
  /** Fused Adam over n floats into new buffers: m' = β1·m + (1−β1)·g, v' = β2·v + (1−β2)·g²,
   * p' = p − lr·(m'/bc1)/(sqrt(v'/bc2) + eps). */
  adamUpdate(p: number, m: number, v: number, g: number, pOut: number, mOut: number, vOut: number, n: number,
    beta1: number, beta2: number, bc1: number, bc2: number, eps: number, lr: number): void;
  /** Muon's momentum over n floats into new buffers: buf' = μ·buf + (1−μ)·g, nesterov = (1−μ)·g + μ·buf'. */
  muonMomentum(buf: number, g: number, bufOut: number, nesterov: number, n: number, momentum: number): void;
}

/** NCCL collectives (native/collectives.cc): the real addon has them, the host reference device does not. */
export interface CudaCollectives {
  /** ncclGetUniqueId: 128 bytes. */
  ncclGetUniqueId(): Uint8Array;
  ncclInit(uniqueId: Uint8Array, worldSize: number, rank: number): void;
  /** Out-of-place float32 all-reduce of each (in, out, count), grouped, on the device's stream. */
  ncclAllReduce(inPtrs: number[], outPtrs: number[], counts: number[], average: boolean): void;
  ncclDestroy(): void;
}
