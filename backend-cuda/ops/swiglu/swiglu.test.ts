// The fused SwiGLU ('Swiglu', swiglu.cu) against its oracle, train_gpt.ts's composite swiglu() on the cpu backend:
// values and gradients (dy ≠ 1) on fresh random inputs, halves with and without a multiple of 4 (the GPU's float4
// and scalar paths); that the hook runs the fused kernels and `--fused off` the composite; the MLP of a
// --mlp swiglu model against --fused off; bad inputs failing with the kernel's name.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import { checkFusionHook, compare, describeOrSkip, randFloat, targets, useBackend } from '../../../test/cuda_harness.ts';
import { SWIGLU, SWIGLU_GRAD } from './swiglu.ts';

/** [y, dx] for a given dy: the fused kernels where the backend has them, the composite on cpu. */
const swigluAndGrad = (x: tf.Tensor, dy: tf.Tensor): tf.Tensor[] => [T.swiglu(x), tf.grad((v: tf.Tensor) => T.swiglu(v))(x, dy)];

for (const target of targets) {
  describeOrSkip(`fused Swiglu on ${target.name}`, target.skip, () => {
    const B = target.name;

    it('output and dx match the composite on cpu (halves with and without a multiple of 4)', async () => {
      const shapes = [[3, 10], [2, 5, 16], [1, 2], [0, 8], target.name === 'cuda' ? [4, 2048, 2 * 1024] : [4, 33, 2 * 64]];
      for (const shape of shapes) {
        const half = [...shape.slice(0, -1), shape[shape.length - 1] / 2];
        await compare(B, `swiglu [${shape}]`, [randFloat(shape, -4, 4), randFloat(half)], swigluAndGrad, { rtol: 1e-5, atol: 1e-6 });
      }
    });

    it('train_gpt.ts\'s hook runs the fused kernels, and useFusedKernels(false) (--fused off) the composite', async () => {
      await useBackend(B);
      const x = tf.tensor(randFloat([2, 5, 16]).values, [2, 5, 16]), dy = tf.tensor(randFloat([2, 5, 8]).values, [2, 5, 8]);
      await checkFusionHook(() => swigluAndGrad(x, dy),
        { fused: [SWIGLU, SWIGLU_GRAD], composite: ['Sigmoid'], compositeOnly: ['SplitV', 'Sigmoid', 'Concat'] });
      tf.dispose([x, dy]);
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const run = (kernel: string, inputs: tf.NamedTensorMap) => () => tf.engine().runKernel(kernel, inputs, {});
        assert.throws(run(SWIGLU, { x: tf.zeros([2, 5]) }), /kernel Swiglu\(.*Swiglu: x must be \[\.\.\., 2F\] \(gate and value halves\), got float32\[2,5\]/);
        assert.throws(run(SWIGLU, { x: tf.zeros([2, 4], 'int32') }), /Swiglu: x must be float32, got int32\[2,4\]/);
        assert.throws(run(SWIGLU_GRAD, { dy: tf.zeros([2, 4]), x: tf.zeros([2, 4]) }), /SwigluGrad: dy float32\[2,4\] must be \[2,2\] for x float32\[2,4\]/);
        assert.throws(run(SWIGLU_GRAD, { x: tf.zeros([2, 4]) }), /SwigluGrad: input dy is missing/);
      });
    });
  });
}
