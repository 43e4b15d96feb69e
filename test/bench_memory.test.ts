// bench/memory.ts's measurement on the host reference device, in float32 and bf16 matmul precision: the saved
// tensors it attributes to kernels (parameters excluded) fit in what the forward left in use and hold at least the
// residual stream of each layer, and the peak covers the forward's bytes. Over the null device (bench/null_device.ts,
// `--device null`) the same: it counts allocations as the host device (and the GPU) does.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { memoryProfile } from '../bench/memory.ts';
import { registerNullBackend } from '../bench/null_device.ts';
import type { CudaBackend } from '../backend-cuda/backend.ts';
import * as T from '../train_gpt.ts';
import { random, useBackend } from './cuda_harness.ts';

it('attributes the forward\'s saved bytes to kernels, bf16 copies included, within what the forward left in use', async () => {
  await useBackend('cuda-host');
  const { cfg } = T.resolveConfig('tiny', { vocabSize: 64, bosToken: 63, numLayers: 4, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 2, seqLen: 64, deviceBatch: 1 });
  const backend = tf.backend() as CudaBackend;
  for (const precision of ['fp32', 'bf16'] as const) {
    backend.setMatmulPrecision(precision);
    const m = T.createModel(cfg);
    const tokens = Int32Array.from({ length: 64 }, (_, i) => (i % 20 === 0 ? 63 : Math.floor(random() * 62)));
    const batch = T.toDevice({ inputs: tokens, targets: tokens.map((t) => (t + 1) % 62), B: 1, T: 64 }, 63);
    try {
      const p = memoryProfile(m, batch, T.attnScheduleAt(cfg.windowSchedule[0], T.initRope(cfg), cfg));
      const saved = p.savedByKernel.reduce((s, [, b]) => s + b, 0);
      assert.ok(p.afterForward > 0 && saved > 0, `${precision}: forward ${p.afterForward}, saved ${saved}`);
      assert.ok(saved <= p.afterForward, `${precision}: ${saved} saved bytes attributed, more than the forward's ${p.afterForward}`);
      assert.ok(p.peak >= p.before + p.afterForward, `${precision}: peak ${p.peak} below ${p.before} + ${p.afterForward}`);
      // at least the residual stream of each layer (64 × 32 float32) is saved
      assert.ok(saved >= cfg.numLayers * 64 * 32 * 4, `${precision}: ${saved} bytes saved`);
      // widening needs bf16-only tensors: none under fp32; under bf16 the attention gate's logits are (the gated
      // attention reads them in float32)
      const widened = new Map(p.widenedByKernel);
      if (precision === 'fp32') assert.equal(widened.size, 0, `fp32: widened ${[...widened.keys()]}`);
      else assert.ok((widened.get('GatedCausalAttention') ?? 0) > 0, `bf16: GatedCausalAttention's widening not counted (${[...widened.keys()]})`);
    } finally {
      T.disposeBatch(batch);
      T.disposeModel(m);
    }
  }
  backend.setMatmulPrecision('fp32');
});

it('the null device counts what the host reference device allocates: the same saved bytes by kernel and forward', async () => {
  registerNullBackend('null-memory');
  const { cfg } = T.resolveConfig('tiny', { vocabSize: 64, bosToken: 63, numLayers: 4, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 2, seqLen: 48,
    deviceBatch: 1, canon: 'ABCD' });
  const tokens = Int32Array.from({ length: 48 }, (_, i) => (i % 20 === 0 ? 63 : Math.floor(random() * 62)));
  const profile = async (backendName: string) => {
    if (backendName === 'cuda-host') await useBackend('cuda-host');
    else await tf.setBackend(backendName);
    (tf.backend() as CudaBackend).setMatmulPrecision('bf16');
    const m = T.createModel(cfg), batch = T.toDevice({ inputs: tokens, targets: tokens.map((t) => (t + 1) % 62), B: 1, T: 48 }, 63);
    try {
      return memoryProfile(m, batch, T.attnScheduleAt(cfg.windowSchedule[0], T.initRope(cfg), cfg));
    } finally {
      T.disposeBatch(batch);
      T.disposeModel(m);
      (tf.backend() as CudaBackend).setMatmulPrecision('fp32');
    }
  };
  const host = await profile('cuda-host'), nothing = await profile('null-memory');
  await useBackend('cuda-host');
  assert.deepEqual(nothing.savedByKernel, host.savedByKernel);
  assert.deepEqual(nothing.widenedByKernel, host.widenedByKernel);
  // the same forward, up to the rotary tables (train_gpt.ts caches them: made on the first backend, moved to the second)
  assert.ok(Math.abs(nothing.afterForward - host.afterForward) <= 4 * 48 * 16, `forward: null ${nothing.afterForward}, host ${host.afterForward}`);
  assert.ok(host.afterForward > 0);
});
