// The tfjs backend class: tensor storage on the device, reference counting of dataIds, transfers,
// timing and memory. Kernels live in kernels/ (one registration list: register_all_kernels.ts).
import * as tf from '@tensorflow/tfjs-core';
import type { BackendTimingInfo, BackendValues, DataId, DataType, TensorInfo } from '@tensorflow/tfjs-core';
import { PRECISION, type CudaDevice, type DeviceDtype, type DeviceInfo, type MatmulPrecision } from './device.ts';

export interface TensorData {
  /** The values (float32, int32 or bool); for a bf16-only tensor (makeBf16Output) made from the bf16 copy on first use. */
  ptr: number;
  bytes: number;
  dtype: DeviceDtype;
  refCount: number;
  /** A second buffer a fused kernel keeps with its output for the gradient (attachSaved), and its size; freed with this
   * one. */
  saved?: number;
  savedBytes?: number;
  /** The bf16 copy of a float32 buffer made for bf16 matmuls (matmulOperand); freed with this one. */
  bf16?: number;
  /** The values exist only as the bf16 copy: ptr is not allocated yet (makeBf16Output). */
  bf16Only?: boolean;
  /** This tensor's gradient is a bf16 matmul operand (markGradientOperand): the kernel that makes it writes its bf16
   * copy too (gradientTwin). */
  gradientOperand?: boolean;
}

export function bytesPerElement(dtype: DataType): number {
  return dtype === 'bool' ? 1 : 4;
}

export function checkDtype(dtype: DataType, where: string): DeviceDtype {
  if (dtype === 'float32' || dtype === 'int32' || dtype === 'bool') return dtype;
  throw new Error(`cuda backend: ${where}: dtype '${dtype}' is not supported (float32, int32 and bool are)`);
}

type HostValues = Float32Array | Int32Array | Uint8Array;

function toHostArray(values: BackendValues, dtype: DeviceDtype): HostValues {
  const want = dtype === 'float32' ? Float32Array : dtype === 'int32' ? Int32Array : Uint8Array;
  if (values instanceof want) return values;
  if (Array.isArray(values) || ArrayBuffer.isView(values)) return want.from(values as ArrayLike<number>);
  throw new Error(`cuda backend: cannot upload values of type ${Object.prototype.toString.call(values)}`);
}

function fromBuffer(buf: ArrayBuffer, dtype: DeviceDtype): HostValues {
  return dtype === 'float32' ? new Float32Array(buf) : dtype === 'int32' ? new Int32Array(buf) : new Uint8Array(buf);
}

export class CudaBackend extends tf.KernelBackend {
  readonly data: tf.DataStorage<TensorData>;
  precisionCode: number;
  private nextId = 0;

  constructor(readonly device: CudaDevice, readonly info: DeviceInfo, private precision: MatmulPrecision) {
    super();
    this.data = new tf.DataStorage(this, tf.engine());
    this.precisionCode = PRECISION[precision];
  }

  get matmulPrecision(): MatmulPrecision {
    return this.precision;
  }

  /** bf16 (default): float32 operands rounded to bf16, fp32 accumulation; tf32; or full fp32. */
  setMatmulPrecision(p: MatmulPrecision): void {
    if (!(p in PRECISION)) throw new Error(`cuda backend: matmul precision '${p}' is not one of ${Object.keys(PRECISION).join(', ')}`);
    this.precision = p;
    this.precisionCode = PRECISION[p];
  }

  // ---- storage ----

  private store(dataId: DataId, shape: number[], dtype: DataType, refCount: number, values?: BackendValues): void {
    const dt = checkDtype(dtype, 'write');
    const bytes = tf.util.sizeFromShape(shape) * bytesPerElement(dt);
    const ptr = this.device.alloc(bytes);
    if (values != null && bytes > 0) this.device.upload(ptr, toHostArray(values, dt));
    this.data.set(dataId, { ptr, bytes, dtype: dt, refCount });
  }

  override write(values: BackendValues, shape: number[], dtype: DataType): DataId {
    const dataId = { id: this.nextId++ };
    this.store(dataId, shape, dtype, 1, values);
    return dataId;
  }

  override move(dataId: DataId, values: BackendValues, shape: number[], dtype: DataType, refCount: number): void {
    this.store(dataId, shape, dtype, refCount, values);
  }

  /** A new device tensor (uninitialised: the kernel that asks for it writes every element). */
  makeOutput(shape: number[], dtype: DataType): TensorInfo {
    const dataId = { id: this.nextId++ };
    this.store(dataId, shape, dtype, 1);
    return { dataId, shape, dtype };
  }

  /** A new device tensor holding host values (small constants). */
  makeTensorInfo(shape: number[], dtype: DataType, values: BackendValues): TensorInfo {
    return { dataId: this.write(values, shape, dtype), shape, dtype };
  }

  ptr(t: TensorInfo): number {
    return this.floatBuffer(this.data.get(t.dataId));
  }

  /** d's buffer; a bf16-only tensor gets its float32 buffer here, widened from the bf16 copy (exact). */
  private floatBuffer(d: TensorData): number {
    if (d.bf16Only) {
      d.ptr = this.device.alloc(d.bytes);
      this.device.fromBf16(d.bf16!, d.ptr, d.bytes / 4);
      d.bf16Only = false;
    }
    return d.ptr;
  }

  /**
   * A float32 output of a kernel whose result feeds bf16 products (the MLP activation, dlogits, attention's q, k, v,
   * ...) or is bf16 in the record (the FP8 head's logits, §5). Under bf16 matmul precision the kernel writes it in
   * bf16 only, as the products would round it anyway: half the bytes written and no conversion pass (PyTorch
   * autocast likewise keeps such activations in bf16); anything else that reads it gets the bf16 values widened to
   * float32, made on first use (ptr, read). Else an ordinary float32 output.
   * Returns the tensor, the pointer the kernel writes and whether that is bf16.
   */
  makeBf16Output(shape: number[]): { out: TensorInfo; ptr: number; bf16: boolean } {
    return this.makeStoredOutput(shape, this.precisionCode === PRECISION.bf16);
  }

  /** A new float32 tensor stored in bf16 only where bf16 (makeBf16Only), else an ordinary float32 one; the pointer the
   * kernel writes and whether that is bf16. */
  makeStoredOutput(shape: number[], bf16: boolean): { out: TensorInfo; ptr: number; bf16: boolean } {
    if (bf16) return this.makeBf16Only(shape);
    const out = this.makeOutput(shape, 'float32');
    return { out, ptr: this.ptr(out), bf16: false };
  }

  /** A new float32 tensor stored in bf16 only, whatever the precision (makeBf16Output; a slice of such a tensor). */
  makeBf16Only(shape: number[]): { out: TensorInfo; ptr: number; bf16: true } {
    const dataId = { id: this.nextId++ }, n = tf.util.sizeFromShape(shape);
    const bf16 = this.device.alloc(n * 2);
    this.data.set(dataId, { ptr: 0, bytes: n * 4, dtype: 'float32', refCount: 1, bf16, bf16Only: true });
    return { out: { dataId, shape, dtype: 'float32' }, ptr: bf16, bf16: true };
  }

  /** Where float32 tensor t's values are, as stored: the bf16 buffer of a bf16-only tensor (makeBf16Output), else
   * the float32 buffer. For a kernel that reads either form (fp8Quantise), so that no float32 copy is made. */
  storedValues(t: TensorInfo): { ptr: number; bf16: boolean } {
    const d = this.data.get(t.dataId);
    return d.bf16Only ? { ptr: d.bf16!, bf16: true } : { ptr: d.ptr, bf16: false };
  }

  /** Runs body with device scratch buffers of the given byte sizes, freed afterwards (stream-ordered: after the work it
   * queued, a queued read included). */
  withScratch<T>(sizes: number[], body: (...ptrs: number[]) => T): T {
    const ptrs: number[] = [];
    try {
      for (const n of sizes) ptrs.push(this.device.alloc(n));
      return body(...ptrs);
    } finally {
      for (const p of ptrs) this.device.free(p);
    }
  }

  /** A new device buffer of `bytes` kept with tensor t and freed with t's buffer: what a fused kernel
   * saves beside its output for its gradient (the gradient gets the output, not extra tensors). */
  attachSaved(t: TensorInfo, bytes: number): number {
    const d = this.data.get(t.dataId);
    if (d.saved !== undefined) throw new Error('attachSaved: this tensor already carries a saved buffer');
    if (bytes === 0) return 0;
    d.saved = this.device.alloc(bytes);
    d.savedBytes = bytes;
    return d.saved;
  }

  /** The buffer attachSaved kept with t, if any. */
  saved(t: TensorInfo): number | undefined {
    return this.data.get(t.dataId).saved;
  }

  /** The size of that buffer in bytes (0 where none): for a gradient whose forward chose the buffer's layout. */
  savedBytes(t: TensorInfo): number {
    return this.data.get(t.dataId).savedBytes ?? 0;
  }

  /**
   * The pointer a matmul in `precision` (a PRECISION code) takes for float32 tensor t: t's own buffer (tf32, fp32), or
   * under bf16 its bf16 copy, made on first use and kept with t's buffer. Tensors are immutable, so the copy
   * stays valid, and one conversion serves every matmul that reads t: an activation in the forward and again
   * in its weight gradient, an output gradient in both products of the backward, a weight over all
   * micro-steps until the optimiser replaces it. (Converting per call cost ~10 % of the speedrun step.)
   */
  matmulOperand(t: TensorInfo, precision: number): number {
    const d = this.data.get(t.dataId);
    if (precision !== PRECISION.bf16) return this.floatBuffer(d);
    if (d.dtype !== 'float32') throw new Error(`matmulOperand: a bf16 matmul operand must be float32, got ${d.dtype}`);
    if (d.bf16 === undefined) {
      const n = d.bytes / 4;
      d.bf16 = this.device.alloc(n * 2);
      this.device.toBf16(d.ptr, d.bf16, n);
    }
    return d.bf16;
  }

  /**
   * t's buffer as a new tensor for a kernel to update in place, where the caller gives t up (it is disposed right after,
   * as tfjs_node.ts's backward drops a gradient so far) and no other tensor shares the buffer (a view would see the
   * update); null where one does, or where t carries a bf16 copy or a saved buffer (they would go stale) or is bf16-only.
   */
  takeOver(t: TensorInfo): TensorInfo | null {
    const d = this.data.get(t.dataId);
    if (d.refCount !== 1 || d.bf16 !== undefined || d.bf16Only || d.saved !== undefined) return null;
    this.incRef(t.dataId);
    return { dataId: t.dataId, shape: t.shape.slice(), dtype: t.dtype };
  }

  /** Marks t (a matmul's output) as a tensor whose gradient the matmul's backward reads as bf16 operands (dW = aᵀ·dy,
   * da = dy·bᵀ): a gradient kernel that makes it can write the bf16 copy in its own pass (gradientTwin). */
  markGradientOperand(t: TensorInfo): void {
    this.data.get(t.dataId).gradientOperand = true;
  }

  /**
   * For a gradient kernel's float32 output dx, the gradient of x: where x's gradient is a bf16 matmul operand
   * (markGradientOperand) and the precision is bf16, dx's bf16 copy, allocated now for the kernel to write beside
   * dx in the same pass (the values toBf16 would make: rounded to nearest even), so that no conversion pass reads dx
   * again; else 0. The residual stream's gradients (RMSNormGrad's and ScaledAddGrad's dx) were ~170 conversions of
   * [32768, 768] a step.
   */
  gradientTwin(x: TensorInfo, dx: TensorInfo): number {
    if (this.precisionCode !== PRECISION.bf16 || !this.data.get(x.dataId).gradientOperand) return 0;
    const d = this.data.get(dx.dataId);
    if (d.dtype !== 'float32' || d.bf16Only || d.bf16 !== undefined) return 0;
    d.bf16 = this.device.alloc(d.bytes / 2);
    return d.bf16;
  }

  override numDataIds(): number {
    return this.data.numDataIds();
  }

  override refCount(dataId: DataId): number {
    return this.data.has(dataId) ? this.data.get(dataId).refCount : 0;
  }

  override incRef(dataId: DataId): void {
    this.data.get(dataId).refCount++;
  }

  /** Drops one reference; frees the device buffer (stream-ordered) when none is left. */
  override disposeData(dataId: DataId, force = false): boolean {
    if (!this.data.has(dataId)) return true;
    const d = this.data.get(dataId);
    d.refCount--;
    if (!force && d.refCount > 0) return false;
    if (!d.bf16Only) this.device.free(d.ptr);
    if (d.saved !== undefined) this.device.free(d.saved);
    if (d.bf16 !== undefined) this.device.free(d.bf16);
    this.data.delete(dataId);
    return true;
  }

  disposeIntermediateTensorInfo(t: TensorInfo): void {
    this.disposeData(t.dataId);
  }

  // ---- transfers ----

  // A bf16-only tensor is widened into a temporary buffer for a read, so that reading it (a checkpoint, a log line) does
  // not keep a float32 copy beside it: the bf16 parameters and Adam moments (§5) stay at half their bytes.
  override readSync(dataId: DataId): HostValues {
    const d = this.data.get(dataId);
    return this.widenedForRead(d, (ptr) => fromBuffer(this.device.readSync(ptr, d.bytes), d.dtype));
  }

  override async read(dataId: DataId): Promise<HostValues> {
    const d = this.data.get(dataId);
    const pending = this.widenedForRead(d, (ptr) => this.device.read(ptr, d.bytes));
    return fromBuffer(await pending, d.dtype);
  }

  /** read(d's float32 values' pointer); a bf16-only d widened into a scratch buffer for it. */
  private widenedForRead<R>(d: TensorData, read: (ptr: number) => R): R {
    if (!d.bf16Only) return read(d.ptr);
    return this.withScratch([d.bytes], (wide) => {
      this.device.fromBf16(d.bf16!, wide, d.bytes / 4);
      return read(wide);
    });
  }

  // ---- timing and memory ----

  override timerAvailable(): boolean {
    return true;
  }

  override async time(f: () => void): Promise<BackendTimingInfo> {
    const id = this.device.timerStart();
    f();
    return { kernelMs: await this.device.timerEnd(id) };
  }

  /** peakBytes and poolBytes are the names train_gpt.ts reads for its "peak memory" log line. */
  override memory(): { unreliable: boolean; numBytesInGPU: number; numBytesInGPUAllocated: number; peakBytesInGPU: number; poolReservedBytes: number; liveBuffers: number; allocRetries: number; peakBytes: number; poolBytes: number } {
    const m = this.device.memory();
    return {
      unreliable: false,
      numBytesInGPU: m.bytesInUse,
      numBytesInGPUAllocated: m.poolReservedBytes,
      peakBytesInGPU: m.peakBytesInUse,
      poolReservedBytes: m.poolReservedBytes,
      liveBuffers: m.liveBuffers,
      allocRetries: m.allocRetries,
      peakBytes: m.peakBytesInUse,
      poolBytes: m.poolReservedBytes,
    };
  }

  override floatPrecision(): 32 {
    return 32;
  }

  override dispose(): void {
    this.device.synchronize();
    this.device.dispose();
  }
}

