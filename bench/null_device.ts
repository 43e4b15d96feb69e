// A cuda device whose kernels do nothing (bench/host_overhead.ts, bench/memory.ts): allocations are numbers counted
// as the native device counts them (requested bytes in use, their peak, live buffers), reads return zeros and every
// kernel is a counted no-op. The cuda backend's TypeScript runs over it unchanged, so on any machine it gives the
// host's share of a step and the device bytes a step allocates, without a GPU or the compute.
import * as tf from '@tensorflow/tfjs-core';
import { CudaBackend } from '../backend-cuda/backend.ts';
import type { CudaDevice } from '../backend-cuda/device.ts';
import { registerReductionGradients } from '../backend-cuda/gradients.ts';
import { registerAllKernels } from '../backend-cuda/register_all_kernels.ts';

export interface NullDevice {
  device: CudaDevice;
  /** Native calls by name since the last clear (what the kernels would launch). */
  calls: Map<string, number>;
}

export function nullDevice(): NullDevice {
  const calls = new Map<string, number>(), sizes = new Map<number, number>();
  let next = 1 << 20, inUse = 0, peak = 0;
  const base: Partial<Record<keyof CudaDevice, unknown>> = {
    probe: () => ({ deviceCount: 1, driverVersion: 0, runtimeVersion: 0 }),
    init: (ordinal: number) => ({ name: 'null device', ordinal, multiProcessorCount: 0, totalMemory: 0, computeCapability: 'none' }),
    dispose() {},
    alloc: (bytes: number) => {
      if (bytes === 0) return 0;
      const p = next;
      next += Math.ceil(bytes / 256) * 256;
      sizes.set(p, bytes);
      inUse += bytes;
      peak = Math.max(peak, inUse);
      return p;
    },
    free: (p: number) => {
      const bytes = sizes.get(p);
      if (bytes === undefined) return;
      inUse -= bytes;
      sizes.delete(p);
    },
    memory: () => ({ bytesInUse: inUse, peakBytesInUse: peak, poolReservedBytes: 0, poolUsedBytes: 0, liveBuffers: sizes.size, allocRetries: 0 }),
    upload() {}, readSync: (_p: number, bytes: number) => new ArrayBuffer(bytes), read: async (_p: number, bytes: number) => new ArrayBuffer(bytes),
    synchronize() {}, sync: async () => {}, timerStart: () => 0, timerEnd: async () => 0,
  };
  const device = new Proxy(base, {
    get: (t, k: string) => t[k as keyof CudaDevice] ?? (() => { calls.set(k, (calls.get(k) ?? 0) + 1); }),
  }) as CudaDevice;
  return { device, calls };
}

/** Registers the cuda backend over a null device as tfjs backend `name` (matmul precision bf16 until set otherwise);
 * returns the device's native-call counts. */
export function registerNullBackend(name = 'null'): Map<string, number> {
  const { device, calls } = nullDevice();
  registerReductionGradients();
  tf.registerBackend(name, () => new CudaBackend(device, device.init(0), 'bf16'));
  registerAllKernels(name);
  return calls;
}
