// The fused ReLU² ('ReluSquared', relu_squared.cu) against its oracle, train_gpt.ts's composite on the cpu
// backend: values and gradients (dy ≠ 1) through train_gpt.ts's own hook (reluSquared → runFused) on fresh random
// inputs, sizes with and without a multiple of 4; that the hook runs the fused kernels and `--fused off`
// (useFusedKernels(false)) the composite; what the tape keeps; bad inputs failing with the kernel's name.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import { bytesInUse, checkFusionHook, compare, describeOrSkip, randFloat, targets, useBackend, withFusedOff } from '../../../test/cuda_harness.ts';
import { RELU_SQUARED, RELU_SQUARED_GRAD } from './relu_squared.ts';

/** [y, dx] for a given dy: the fused kernels where the backend has them, the composite on cpu. */
const reluSquaredAndGrad = (x: tf.Tensor, dy: tf.Tensor): tf.Tensor[] =>
  [T.reluSquared(x), tf.grad((v: tf.Tensor) => T.reluSquared(v))(x, dy)];

for (const target of targets) {
  describeOrSkip(`fused ReluSquared on ${target.name}`, target.skip, () => {
    const B = target.name;

    it('ReluSquared: output and dx match the composite on cpu (sizes with and without a multiple of 4)', async () => {
      for (const shape of [[7], [3, 5, 9], [2, 16, 64], [1, 1], [0, 3], [target.big]]) {
        await compare(B, `reluSquared [${shape}]`, [randFloat(shape), randFloat(shape)], reluSquaredAndGrad, { rtol: 1e-6, atol: 1e-7 });
      }
    });

    it('train_gpt.ts\'s hook runs the fused kernels, and useFusedKernels(false) (--fused off) the composite', async () => {
      await useBackend(B);
      const x = tf.tensor(randFloat([2, 5, 3, 8]).values, [2, 5, 3, 8]), dy = tf.tensor(randFloat([2, 5, 3, 8]).values, [2, 5, 3, 8]);
      await checkFusionHook(() => reluSquaredAndGrad(x, dy),
        { fused: [RELU_SQUARED, RELU_SQUARED_GRAD], composite: ['Relu', 'Square'], compositeOnly: ['Relu', 'Square', 'Step'] });
      tf.dispose([x, dy]);
    });

    it('ReluSquared keeps only x for its gradient (the composite also keeps relu(x))', async () => {
      await useBackend(B);
      const x = tf.tensor(randFloat([4, 257]).values, [4, 257]), bytes = x.size * 4;
      /** Bytes alive right after the forward, before backprop: y and whatever the tape saved. */
      const heldAfterForward = () => {
        const before = bytesInUse();
        let held = 0;
        const { value, grads } = tf.valueAndGrads((v: tf.Tensor) => {
          const y = T.reluSquared(v);
          held = bytesInUse() - before;
          return y.sum();
        })([x]);
        tf.dispose([value, grads[0]]);
        assert.equal(bytesInUse(), before, 'no buffer outlives the step');
        return held;
      };
      assert.equal(heldAfterForward(), bytes, 'fused: y only (the saved x shares x\'s buffer)');
      await withFusedOff(() => assert.equal(heldAfterForward(), 2 * bytes, 'composite: y and relu(x)'));
      x.dispose();
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const run = (kernel: string, inputs: tf.NamedTensorMap) => () => tf.engine().runKernel(kernel, inputs, {});
        assert.throws(run(RELU_SQUARED, { x: tf.zeros([3], 'int32') }), /kernel ReluSquared\(.*ReluSquared: x must be float32, got int32\[3\]/);
        assert.throws(run(RELU_SQUARED_GRAD, { dy: tf.zeros([3]), x: tf.zeros([4]) }), /ReluSquaredGrad: dy \[3\] and x \[4\] differ in shape/);
        assert.throws(run(RELU_SQUARED_GRAD, { dy: tf.zeros([3], 'bool'), x: tf.zeros([3]) }), /ReluSquaredGrad: dy must be float32/);
      });
    });
  });
}
