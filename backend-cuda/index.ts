// The project's tfjs backend 'cuda': a Node-API addon (native/) driving one NVIDIA GPU.
//   cudaAvailability()       cheap, never throws: is the addon built and a GPU visible?
//   registerCudaBackend()    registers the tfjs backend 'cuda' (then tf.setBackend('cuda'))
//   cudaDeviceName()         the GPU's name, for logs
//   ncclUniqueId() / ncclInit() / ncclAllReduce() / ncclAllGather() / ncclDestroy()   NCCL collectives for data parallelism
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { CudaBackend } from './backend.ts';
import { PRECISION, type CudaCollectives, type CudaDevice, type MatmulPrecision } from './device.ts';
import { HostDevice } from './host_device.ts';
import { fusedOps } from './ops/index.ts';
import { registerAllKernels } from './register_all_kernels.ts';
import { registerReductionGradients } from './gradients.ts';

export type { MatmulPrecision } from './device.ts';

/** Where `npm run build:cuda` puts the addon; TSGPT_CUDA_ADDON overrides. */
export const ADDON_PATH = process.env.TSGPT_CUDA_ADDON ?? fileURLToPath(new URL('../build/cuda/Release/tsgpt_cuda.node', import.meta.url));

type Loaded = { ok: true; addon: CudaDevice & CudaCollectives; deviceCount: number } | { ok: false; reason: string };
let loaded: Loaded | undefined;

function load(): Loaded {
  if (loaded) return loaded;
  if (!existsSync(ADDON_PATH)) {
    loaded = { ok: false, reason: `the cuda addon is not built (${ADDON_PATH} is missing): run \`npm run build:cuda\` on a machine with the CUDA toolkit, cuBLAS and NCCL` };
    return loaded;
  }
  try {
    const addon = createRequire(import.meta.url)(ADDON_PATH) as CudaDevice & CudaCollectives;
    // An addon built before an op was added lacks its launchers (or a core function added since): say so
    // here, not at the first call.
    const missing = [...fusedOps.flatMap(op => ('host' in op ? Object.keys(op.host(new HostDevice())) : [])), 'matmulFp8', 'setMatmulAutotune']
      .filter(name => typeof (addon as unknown as Record<string, unknown>)[name] !== 'function');
    if (missing.length) {
      loaded = { ok: false, reason: `the cuda addon at ${ADDON_PATH} is older than the sources (no ${missing.join(', ')}): run \`npm run build:cuda\`` };
      return loaded;
    }
    const probe = addon.probe();
    loaded = probe.deviceCount > 0
      ? { ok: true, addon, deviceCount: probe.deviceCount }
      : { ok: false, reason: 'no CUDA device is visible (cudaGetDeviceCount returned 0)' };
  } catch (e) {
    loaded = { ok: false, reason: `the cuda addon cannot start: ${e instanceof Error ? e.message : String(e)}` };
  }
  return loaded;
}

registerReductionGradients();

export function cudaAvailability(): { ok: true } | { ok: false; reason: string } {
  const l = load();
  return l.ok ? { ok: true } : { ok: false, reason: l.reason };
}

let kernelsRegistered = false;
let deviceName: string | undefined;

export async function registerCudaBackend(opts: { matmulPrecision?: MatmulPrecision; device?: number; matmulAutotune?: boolean } = {}): Promise<void> {
  const l = load();
  if (!l.ok) throw new Error(`cuda backend unavailable: ${l.reason}`);
  const precision = opts.matmulPrecision ?? 'bf16';
  if (!(precision in PRECISION)) {
    throw new Error(`cuda backend: matmulPrecision '${precision}' is not one of ${Object.keys(PRECISION).join(', ')}`);
  }
  const ordinal = opts.device ?? 0;
  if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= l.deviceCount) {
    throw new Error(`cuda backend: device ${ordinal} does not exist (${l.deviceCount} CUDA device(s) visible)`);
  }
  if (tf.findBackendFactory('cuda') != null) tf.removeBackend('cuda');
  tf.registerBackend('cuda', () => {
    const info = l.addon.init(ordinal);
    l.addon.setMatmulAutotune(opts.matmulAutotune ?? true);
    deviceName = info.name;
    return new CudaBackend(l.addon, info, precision);
  });
  registerReductionGradients(); // again here: an import of tfjs_node.ts (tfjs-core's gradient registrations) after this module would have put tfjs's back
  if (!kernelsRegistered) {
    registerAllKernels('cuda');
    kernelsRegistered = true;
  }
}

/** The GPU's name (e.g. "NVIDIA H100 80GB HBM3"), once the backend has started; else ''. */
export function cudaDeviceName(): string {
  return deviceName ?? '';
}

// ---- NCCL collectives ----
// One communicator per process, on the backend's device. All-reduce runs on the backend's one stream,
// so it is ordered after the kernels that wrote its inputs and before those that read its outputs.

const NCCL_UNIQUE_ID_BYTES = 128;

function ncclAddon(fn: string): CudaDevice & CudaCollectives {
  const l = load();
  if (!l.ok) throw new Error(`${fn}: the cuda backend is unavailable: ${l.reason}`);
  return l.addon;
}

/** The started cuda backend (ncclInit/ncclAllReduce need its device and stream). */
function startedBackend(fn: string): CudaBackend {
  if (tf.findBackendFactory('cuda') == null) throw new Error(`${fn}: call registerCudaBackend() first`);
  const backend = tf.findBackend('cuda');
  if (!(backend instanceof CudaBackend)) throw new Error(`${fn}: the 'cuda' backend failed to start`);
  return backend;
}

/** Rank 0's ncclGetUniqueId as base64, to hand to every rank; callable before the backend is registered. */
export function ncclUniqueId(): string {
  return Buffer.from(ncclAddon('ncclUniqueId').ncclGetUniqueId()).toString('base64');
}

/** The open communicator's rank count (ncclAllGather's outputs are that many inputs long); 0 when none is open. */
let ncclWorldSize = 0;

/** Joins the communicator (ncclCommInitRank on the backend's device); blocks until every rank has joined. */
export function ncclInit(opts: { uniqueId: string; worldSize: number; rank: number }): void {
  const addon = ncclAddon('ncclInit');
  const { uniqueId, worldSize, rank } = opts;
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new Error(`ncclInit: worldSize ${worldSize} is not a positive integer`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new Error(`ncclInit: rank ${rank} is outside [0, ${worldSize})`);
  const id = typeof uniqueId === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(uniqueId) ? Buffer.from(uniqueId, 'base64') : null;
  if (!id || id.length !== NCCL_UNIQUE_ID_BYTES) {
    throw new Error(`ncclInit: uniqueId is not the base64 of ${NCCL_UNIQUE_ID_BYTES} bytes (got ${id ? `${id.length} bytes` : JSON.stringify(String(uniqueId).slice(0, 32))}); pass rank 0's ncclUniqueId()`);
  }
  startedBackend('ncclInit');
  addon.ncclInit(id, worldSize, rank);
  ncclWorldSize = worldSize;
}

/**
 * Sum or average of each float32 tensor over all ranks, as new tensors (out of place; the inputs are
 * untouched). One NCCL group for the whole list: one launch of fused collectives, not one per tensor.
 */
export function ncclAllReduce(tensors: tf.Tensor[], op: 'sum' | 'avg'): tf.Tensor[] {
  const addon = ncclAddon('ncclAllReduce');
  if (op !== 'sum' && op !== 'avg') throw new Error(`ncclAllReduce: op '${String(op)}' is not 'sum' or 'avg'`);
  return collective('ncclAllReduce', tensors, (t) => t.shape.slice(), (ins, outs, counts) => addon.ncclAllReduce(ins, outs, counts, op === 'avg'));
}

/**
 * Every rank's float32 tensors, stacked in rank order: out[i] is [worldSize, ...tensors[i].shape] with rank r's
 * tensors[i] at index r (the tensors' shapes must be the same on every rank). One NCCL group for the whole list.
 */
export function ncclAllGather(tensors: tf.Tensor[]): tf.Tensor[] {
  const addon = ncclAddon('ncclAllGather');
  if (ncclWorldSize === 0) throw new Error('ncclAllGather: no communicator (call ncclInit first)');
  const size = ncclWorldSize;
  return collective('ncclAllGather', tensors, (t) => [size, ...t.shape], (ins, outs, counts) => addon.ncclAllGather(ins, outs, counts));
}

/** A grouped collective over float32 tensors of the started cuda backend into new outputs of outShape(t) each (the
 * outputs freed if the native call throws). */
function collective(fn: string, tensors: tf.Tensor[], outShape: (t: tf.Tensor) => number[],
                    call: (ins: number[], outs: number[], counts: number[]) => void): tf.Tensor[] {
  const backend = startedBackend(fn);
  tensors.forEach((t, i) => {
    if (t.isDisposed) throw new Error(`${fn}: tensor ${i} is disposed`);
    if (t.dtype !== 'float32') throw new Error(`${fn}: tensor ${i} [${t.shape}] is ${t.dtype}; only float32 is supported`);
    if (!backend.data.has(t.dataId)) throw new Error(`${fn}: tensor ${i} [${t.shape}] is not on the cuda backend (tf.getBackend() is '${tf.getBackend()}')`);
  });
  const outs = tensors.map(t => backend.makeOutput(outShape(t), 'float32'));
  try {
    call(tensors.map(t => backend.ptr(t)), outs.map(o => backend.ptr(o)), tensors.map(t => t.size));
  } catch (e) {
    for (const o of outs) backend.disposeData(o.dataId);
    throw e;
  }
  return outs.map(o => tf.engine().makeTensorFromTensorInfo(o, backend));
}

/** Leaves the communicator (ncclCommFinalize + ncclCommDestroy); a no-op when none is open. */
export function ncclDestroy(): void {
  ncclAddon('ncclDestroy').ncclDestroy();
  ncclWorldSize = 0;
}
