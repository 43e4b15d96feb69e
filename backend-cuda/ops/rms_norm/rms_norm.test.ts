// The fused RMSNorm ('RMSNorm', rms_norm.cu) against its oracle, train_gpt.ts's composite rmsNorm() on the cpu
// backend: values and gradients (through a random weighting, so dy ≠ 1) on fresh random inputs, rows of 1 to
// 768 columns and an empty tensor; the leading channels only (attr channels) and as a second output (attr leading); bad
// inputs failing with the kernel's name.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { rmsNorm, rmsNormLeading, rmsNormWithLeading } from '../../../train_gpt.ts';
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

    it('attr channels: the first channels of the normed row (the same values as the whole norm\'s), and their gradient', async () => {
      for (const [shape, channels] of [[[3, 7, 768], 12], [[5, 32], 1], [[4, 9], 9]] as const) {
        const x = randFloat([...shape]), w = randFloat([...shape.slice(0, -1), channels]), acc = randFloat([...shape]);
        // the gradient so far summed in, as x's in the model (the residual stream's)
        await compare(B, `rmsNormLeading [${shape}] ${channels}`, [x, w, acc], (xt, wt, at) => {
          const f = (a: tf.Tensor) => tf.add(tf.sum(tf.mul(rmsNormLeading(a, channels), wt)), tf.sum(tf.mul(a, at)));
          return [rmsNormLeading(xt, channels), tf.grad(f)(xt)];
        }, { rtol: 1e-4, atol: 1e-5 });
        await useBackend(B);
        tf.tidy(() => {
          const xt = tf.tensor(x.values, x.shape), leading = rmsNormLeading(xt, channels), full = rmsNorm(xt);
          assert.deepEqual(leading.shape, [...shape.slice(0, -1), channels]);
          const begin = shape.map(() => 0), size = [...shape.slice(0, -1), channels];
          assert.deepEqual(Array.from(leading.dataSync()), Array.from(full.slice(begin, size).dataSync()), 'the whole norm\'s first channels, bit for bit');
        });
      }
    });

    it('leading: the normed row and its first channels as a second output (bit for bit the row\'s), and the gradient of both', async () => {
      for (const [shape, channels] of [[[3, 7, 768], 12], [[5, 32], 1], [[4, 9], 9], [[2, 6, 16], 5]] as const) {
        const lead = [...shape.slice(0, -1), channels];
        const x = randFloat([...shape]), w = randFloat([...shape]), wl = randFloat(lead), acc = randFloat([...shape]);
        await compare(B, `rmsNormWithLeading [${shape}] ${channels}`, [x, w, wl, acc], (xt, wt, wlt, at) => {
          // both outputs read, and the gradient so far summed in (x's in the model: the residual stream's)
          const f = (a: tf.Tensor) => {
            const [xn, l] = rmsNormWithLeading(a, channels);
            return tf.addN([tf.sum(tf.mul(xn, wt)), tf.sum(tf.mul(l, wlt)), tf.sum(tf.mul(a, at))]);
          };
          const unusedLead = (a: tf.Tensor) => tf.sum(tf.mul(rmsNormWithLeading(a, channels)[0], wt));
          return [...rmsNormWithLeading(xt, channels), tf.grad(f)(xt), tf.grad(unusedLead)(xt)];
        }, { rtol: 1e-4, atol: 1e-5 });
        await useBackend(B);
        tf.tidy(() => {
          const [xn, l] = rmsNormWithLeading(tf.tensor(x.values, x.shape), channels);
          assert.deepEqual(l.shape, lead);
          assert.deepEqual(Array.from(l.dataSync()), Array.from(xn.slice(shape.map(() => 0), lead).dataSync()), 'the normed row\'s first channels, bit for bit');
        });
      }
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
        assert.throws(run(RMS_NORM, { x: tf.zeros([2, 3]) }, { eps: 1e-6, channels: 4 }), /RMSNorm: attr channels 4 is more than the row's 3/);
        assert.throws(run(RMS_NORM, { x: tf.zeros([2, 3]) }, { eps: 1e-6, channels: 0 }), /RMSNorm: attr channels must be a positive integer, got 0/);
        assert.throws(run(RMS_NORM, { x: tf.zeros([2, 3]) }, { eps: 1e-6, leading: 4 }), /RMSNorm: attr leading 4 is more than the row's 3/);
        assert.throws(run(RMS_NORM, { x: tf.zeros([2, 3]) }, { eps: 1e-6, leading: 1, channels: 2 }), /RMSNorm: attrs leading and channels together/);
        assert.throws(run(RMS_NORM_GRAD, { x: tf.zeros([2, 3]), dy: tf.zeros([2, 3]), dLead: tf.zeros([2, 1]) }, { eps: 1e-6, leading: 2 }),
          /RMSNormGrad: dLead float32\[2,1\] is not x float32\[2,3\] with 2 channels/);
        assert.throws(run(RMS_NORM_GRAD, { x: tf.zeros([2, 3]), dy: tf.zeros([2, 3]) }, { eps: 1e-6, channels: 2 }),
          /RMSNormGrad: dy float32\[2,3\] is not x float32\[2,3\] with 2 channels/);
      });
    });
  });
}
