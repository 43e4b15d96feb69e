// The projection-to-an-activation ('Linear', ops/linear) against its oracle, tf.matMul on the cpu backend: values and
// gradients (dy ≠ 1) through train_gpt.ts's own hook (linear → runFused) on fresh random inputs, in float32 precision
// (its bf16 output and the kernels that read it: test/cuda_kernels.test.ts, "bf16 activations"); that the hook runs the
// fused kernel and `--fused off` the composite; bad inputs failing with the kernel's name.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import { checkFusionHook, compare, describeOrSkip, randFloat, targets, useBackend } from '../../../test/cuda_harness.ts';
import { LINEAR } from './linear.ts';

/** [x·w, dx, dw] for a weighting r of the output: the fused kernel where the backend has it, tf.matMul on cpu. */
const linearAndGrads = (x: tf.Tensor, w: tf.Tensor, r: tf.Tensor): tf.Tensor[] =>
  [T.linear(x, w), ...tf.grads((a: tf.Tensor, b: tf.Tensor) => T.linear(a, b).mul(r).sum())([x, w])];

for (const target of targets) {
  describeOrSkip(`fused Linear on ${target.name}`, target.skip, () => {
    const B = target.name;

    it('x·w and its gradients match tf.matMul on cpu (x of rank 1 to 3, k = 1, an empty batch)', async () => {
      for (const [xs, k, m] of [[[3, 5], 7, 4], [[2, 3], 16, 9], [[6], 1, 5], [[], 7, 3], [[0, 2], 4, 3]] as const) {
        const inputs = [randFloat([...xs, k]), randFloat([k, m]), randFloat([...xs, m])];
        await compare(B, `linear [${xs},${k}]·[${k},${m}]`, inputs, linearAndGrads, { rtol: 1e-5, atol: 1e-5 });
      }
    });

    it('train_gpt.ts\'s hook runs the fused kernel, and useFusedKernels(false) (--fused off) the composite', async () => {
      await useBackend(B);
      const [x, w, r] = [[2, 3, 8], [8, 5], [2, 3, 5]].map(s => tf.tensor(randFloat(s).values, s));
      await checkFusionHook(() => linearAndGrads(x, w, r), { fused: [LINEAR], composite: ['BatchMatMul'], compositeOnly: [] });
      tf.dispose([x, w, r]);
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const run = (inputs: tf.NamedTensorMap) => () => tf.engine().runKernel(LINEAR, inputs, {});
        assert.throws(run({ x: tf.zeros([2, 3], 'int32'), w: tf.zeros([3, 4]) }), /Linear: x must be float32, got int32\[2,3\]/);
        assert.throws(run({ x: tf.zeros([2, 3]), w: tf.zeros([4, 4]) }), /Linear: x \[\.\.\., k\] and w \[k, m\] must agree on k, got x float32\[2,3\] and w float32\[4,4\]/);
        assert.throws(run({ x: tf.zeros([2, 3]) }), /Linear: input w is missing/);
      });
    });
  });
}
