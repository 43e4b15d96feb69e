// The addon's bindings on the real GPU: every binding declares its arguments by name, and a wrong call (too
// few or too many arguments, a value of the wrong type, an integer out of range) is a JS Error naming the
// function and the argument, never a crash. Every fused op's launchers are exported (a stale addon built from
// older sources would lack some). Skips where no GPU is usable.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { CudaBackend } from '../backend-cuda/backend.ts';
import { HostDevice } from '../backend-cuda/host_device.ts';
import { fusedOps } from '../backend-cuda/ops/index.ts';
import { describeOrSkip, targets, useBackend } from './cuda_harness.ts';

const gpu = targets.find(t => t.name === 'cuda')!;

describeOrSkip('the addon\'s argument checks', gpu.skip, () => {
  it('every fused op\'s launchers are exported, and wrong calls name the function and the argument', async () => {
    await useBackend('cuda');
    const device = (tf.backend() as CudaBackend).device as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const op of fusedOps) {
      if (!('host' in op)) continue;
      for (const name of Object.keys(op.host(new HostDevice()))) assert.equal(typeof device[name], 'function', `the addon exports ${name}`);
    }
    const p = device.alloc(1024) as number;
    try {
      assert.throws(() => device.headGate(p, p), /headGate\(o, oBf16, g, y, yBf16, rows, h\): called with 2 argument\(s\), takes 7/);
      assert.throws(() => device.headGate(p, false, p, p, false, 1, 8, 0), /headGate.*called with 8 argument\(s\), takes 7/);
      assert.throws(() => device.headGate(p, false, p, p, 'yes', 1, 8), /headGate: argument 5 \(yBf16\) must be a boolean, got a string/);
      assert.throws(() => device.rmsNorm(p, false, p, false, 1.5, 8, 8, 1e-6, 0, 0), /rmsNorm: argument 5 \(rows\) must be an integer, got 1\.5/);
      assert.throws(() => device.rmsNorm(-8, false, p, false, 1, 8, 8, 1e-6, 0, 0), /rmsNorm: argument 1 \(x\) must be a device address/);
      assert.throws(() => device.attention(p, p, p, p, p, 0, 2 ** 40, 1, 1, 1, 8, 1, 1, 0), /attention: argument 7 \(B\) must be a 32-bit integer/);
      assert.throws(() => device.alloc('x'), /alloc: argument 1 \(bytes\) must be an integer, got a string/);
      assert.throws(() => device.matmul(p), /matmul\(a, b, out, batch, m, n, k, transA, transB, strideA, strideB, precision, outBf16\): called with 1/);
      assert.throws(() => device.muonGather([p, 4, 4, 0, 4, p]), /muonGather: argument 1 \(table\) must be a Float64Array, got an object/);
      assert.throws(() => device.muonGather(new Float64Array(5)), /muonGather/);  // not whole rows of 6: the launcher refuses it
      // a right call still runs: y = relu(x)² over 4 floats
      device.upload(p, new Float32Array([-1, 2, -3, 4]));
      device.reluSquared(p, false, p + 256, false, 4);
      assert.deepEqual(Array.from(new Float32Array(device.readSync(p + 256, 16) as ArrayBuffer)), [0, 4, 0, 16]);
    } finally {
      device.free(p);
    }
  });
});
