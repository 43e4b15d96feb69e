// The project's tfjs backend 'cuda': a Node-API addon (native/) driving one NVIDIA GPU.
//   cudaAvailability()       cheap, never throws: is the addon built and a GPU visible?
//   registerCudaBackend()    registers the tfjs backend 'cuda' (then tf.setBackend('cuda'))
//   cudaDeviceName()         the GPU's name, for logs
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { CudaBackend } from './backend.ts';
import { PRECISION, type CudaDevice, type MatmulPrecision } from './device.ts';
import { registerAllKernels } from './register_all_kernels.ts';
import './fused/rms_norm.ts';

export type { MatmulPrecision } from './device.ts';
export { rmsNorm, rmsNormComposite } from './fused/rms_norm.ts';

/** Where `npm run build:cuda` puts the addon; TSGPT_CUDA_ADDON overrides. */
export const ADDON_PATH = process.env.TSGPT_CUDA_ADDON ?? fileURLToPath(new URL('../build/cuda/Release/tsgpt_cuda.node', import.meta.url));

type Loaded = { ok: true; addon: CudaDevice; deviceCount: number } | { ok: false; reason: string };
let loaded: Loaded | undefined;

function load(): Loaded {
  if (loaded) return loaded;
  if (!existsSync(ADDON_PATH)) {
    loaded = { ok: false, reason: `the cuda addon is not built (${ADDON_PATH} is missing): run \`npm run build:cuda\` on a machine with the CUDA toolkit, cuBLAS and NCCL` };
    return loaded;
  }
  try {
    const addon = createRequire(import.meta.url)(ADDON_PATH) as CudaDevice;
    const probe = addon.probe();
    loaded = probe.deviceCount > 0
      ? { ok: true, addon, deviceCount: probe.deviceCount }
      : { ok: false, reason: 'no CUDA device is visible (cudaGetDeviceCount returned 0)' };
  } catch (e) {
    loaded = { ok: false, reason: `the cuda addon cannot start: ${e instanceof Error ? e.message : String(e)}` };
  }
  return loaded;
}

export function cudaAvailability(): { ok: true } | { ok: false; reason: string } {
  const l = load();
  return l.ok ? { ok: true } : { ok: false, reason: l.reason };
}

let kernelsRegistered = false;
let deviceName: string | undefined;

export async function registerCudaBackend(opts: { matmulPrecision?: MatmulPrecision; device?: number } = {}): Promise<void> {
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
    deviceName = info.name;
    return new CudaBackend(l.addon, info, precision);
  });
  if (!kernelsRegistered) {
    registerAllKernels('cuda');
    kernelsRegistered = true;
  }
}

/** The GPU's name (e.g. "NVIDIA H100 80GB HBM3"), once the backend has started; else ''. */
export function cudaDeviceName(): string {
  return deviceName ?? '';
}
