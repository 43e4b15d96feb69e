// The fused RMSNorm ('RMSNorm', rms_norm.cu) against its oracle, train_gpt.ts's composite rmsNorm() on the cpu
// backend: values and gradients (through a random weighting, so dy ≠ 1) on fresh random inputs, rows of 1 to
// 768 columns and an empty tensor; bad inputs failing with the kernel's name.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { rmsNorm } from '../../../train_gpt.ts';
import { compare, describeOrSkip, randFloat, targets, useBackend } from '../../../test/cuda_harness.ts';
import { RMS_NORM, RMS_NORM_GRAD } from './rms_norm.ts';

for (const target of targets) {
  describeOrSkip(`fused RMSNorm on ${target.name}`, target.skip, () => {
    const B = target.name;

    it('forward and backward match the composite on cpu', async () => {
      for (const shape of [[5, 32], [3, 7, 768], [4, 1], [2, 0, 8]]) {
        const x = randFloat(shape), w = randFloat(shape);
        await compare(B, `rmsNorm [${shape}]`, [x, w], (xt, wt) => {
          const f = (a: tf.Tensor) => tf.sum(tf.mul(rmsNorm(a, 1e-6), wt));
          return [rmsNorm(xt, 1e-6), tf.grad(f)(xt)];
        }, { rtol: 1e-4, atol: 1e-5 });
      }
      await useBackend(B);
      assert.ok(tf.getKernel(RMS_NORM, B) != null, 'the fused kernel is registered on this backend');
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const run = (kernel: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap = { eps: 1e-6 }) =>
          () => tf.engine().runKernel(kernel, inputs, attrs);
        assert.throws(run(RMS_NORM, { x: tf.zeros([2, 3], 'int32') }), /kernel RMSNorm\(.*RMSNorm: x must be float32, got int32\[2,3\]/);
        assert.throws(run(RMS_NORM, {}), /RMSNorm: input x is missing/);
        assert.throws(run(RMS_NORM, { x: tf.zeros([2, 3]) }, {}), /RMSNorm: attr eps must be a finite number, got undefined/);
        assert.throws(run(RMS_NORM_GRAD, { x: tf.zeros([2, 3]) }), /RMSNormGrad: input dy is missing/);
      });
    });
  });
}
