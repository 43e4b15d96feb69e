// The fused rotary embedding ('Rotary', rotary.cu) against its oracle, train_gpt.ts's composite on the cpu
// backend: values and gradients (dy ≠ 1) through train_gpt.ts's own hook (rotary → runFused) on fresh random
// inputs and tables; shapes whose half is not a multiple of 4 (the GPU's scalar path), T = 1, B > 1;
// half-rotary tables (frequency 0: cos = 1, sin = 0); that the hook runs the fused kernels and `--fused off`
// (useFusedKernels(false)) the composite; under bf16 precision, a bf16-only input read as stored and the output in bf16
// only; bad inputs failing with the kernel's name.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import { bf16, compare, describeOrSkip, checkFusionHook, randFloat, randomRope, targets, useBackend } from '../../../test/cuda_harness.ts';
import type { CudaBackend } from '../../backend.ts';
import { ROTARY, ROTARY_GRAD } from './rotary.ts';

/** [y, dx] for a given dy: the fused kernels where the backend has them, the composite on cpu. */
const rotaryAndGrad = (rope: T.RopeState) => (x: tf.Tensor, dy: tf.Tensor): tf.Tensor[] =>
  [T.rotary(x, rope), tf.grad((v: tf.Tensor) => T.rotary(v, rope))(x, dy)];

for (const target of targets) {
  describeOrSkip(`fused Rotary on ${target.name}`, target.skip, () => {
    const B = target.name;
    // [B, T, H, h]: half = 5, 1, 3 and 7 take the GPU's scalar path, half = 8 and 64 its float4 path
    const ROTARY_SHAPES = [[2, 7, 3, 10], [1, 1, 2, 8], [3, 1, 2, 2], [2, 33, 3, 6], [1, 9, 1, 14], [3, 5, 2, 16],
      target.name === 'cuda' ? [4, 512, 6, 128] : [2, 64, 6, 128]];

    it('Rotary: output and dx match the composite on cpu (full and half-rotary tables, odd shapes)', async () => {
      for (const shape of ROTARY_SHAPES) {
        for (const kind of ['full', 'half'] as const) {
          const rope = randomRope(shape[3], kind);
          await compare(B, `rotary ${kind} [${shape}]`, [randFloat(shape), randFloat(shape)], rotaryAndGrad(rope), { rtol: 1e-5, atol: 2e-6 });
        }
      }
    });

    it('Rotary: a YaRN-extended table of the model\'s half rotary at T = 1 and T > 1', async () => {
      const cfg = T.resolveConfig('tiny', { headDim: 16, rotary: 'half' }).cfg;
      const rope = T.yarnExtend(T.initRope(cfg), 8, 32);
      assert.ok(rope.freqs.some(f => f === 0) && rope.freqs.some(f => f !== 0), 'half rotary has stationary and rotating dims');
      for (const shape of [[3, 1, 2, 16], [2, 40, 4, 16]]) {
        await compare(B, `rotary yarn [${shape}]`, [randFloat(shape), randFloat(shape)], rotaryAndGrad(rope), { rtol: 1e-5, atol: 2e-6 });
      }
    });

    it('under bf16 precision: a bf16-only x read as stored, y bf16 only (the float32 rotation rounded once), dx float32', async () => {
      await useBackend(B);
      const backend = tf.backend() as CudaBackend, shape = [2, 9, 3, 16], rope = randomRope(16, 'full');
      const [x, dy] = [randFloat(shape), randFloat(shape)].map(h => tf.tensor(h.values, h.shape));
      try {
        backend.setMatmulPrecision('bf16');
        const xn = T.rmsNorm(x);  // a bf16-only activation, as the composite attentionInputs()'s q and k under QK-norm
        assert.equal(backend.storedValues(xn).bf16, true, 'RMSNorm: bf16 only');
        const y = T.rotary(xn, rope), dx = tf.grad((v: tf.Tensor) => T.rotary(v, rope))(xn, dy);
        assert.equal(backend.storedValues(y).bf16, true, 'Rotary: bf16 only under bf16 precision');
        assert.equal(backend.storedValues(xn).bf16, true, 'Rotary made no float32 copy of its bf16-only input');
        assert.equal(backend.storedValues(dx).bf16, false, 'RotaryGrad: float32');
        backend.setMatmulPrecision('fp32');
        const xv = tf.tensor(xn.dataSync(), shape);  // the same values in float32
        const want = T.rotary(xv, rope).dataSync(), wantDx = tf.grad((v: tf.Tensor) => T.rotary(v, rope))(xv, dy).dataSync();
        Array.from(y.dataSync()).forEach((v, i) => {
          assert.equal(v, bf16(v), `y[${i}] = ${v} is not a bf16 value`);
          assert.ok(Math.abs(v - want[i]) <= 2 ** -8 * Math.abs(want[i]) + 1e-30, `y[${i}] = ${v}: not ${want[i]} rounded to bf16`);
        });
        if (B !== 'cuda') assert.deepEqual(Array.from(y.dataSync()), Array.from(want, bf16), 'the float32 rotation rounded to nearest even');
        assert.deepEqual(Array.from(dx.dataSync()), Array.from(wantDx), 'dx as under float32 precision');
        tf.dispose([xn, y, dx, xv]);
      } finally {
        backend.setMatmulPrecision('fp32');
        tf.dispose([x, dy]);
      }
    });

    it('train_gpt.ts\'s hook runs the fused kernels, and useFusedKernels(false) (--fused off) the composite', async () => {
      await useBackend(B);
      const rope = randomRope(8, 'half');
      const x = tf.tensor(randFloat([2, 5, 3, 8]).values, [2, 5, 3, 8]), dy = tf.tensor(randFloat([2, 5, 3, 8]).values, [2, 5, 3, 8]);
      await checkFusionHook(() => rotaryAndGrad(rope)(x, dy),
        { fused: [ROTARY, ROTARY_GRAD], composite: ['Concat'], compositeOnly: ['SplitV', 'Concat', 'Multiply'] });
      tf.dispose([x, dy]);
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const x = tf.zeros([2, 5, 3, 8]), cos = tf.ones([1, 5, 1, 4]), sin = tf.zeros([1, 5, 1, 4]);
        const run = (kernel: string, inputs: tf.NamedTensorMap) => () => tf.engine().runKernel(kernel, inputs, {});
        assert.throws(run(ROTARY, { x: tf.zeros([2, 5, 24]), cos, sin }), /kernel Rotary\(.*Rotary: x must be float32 \[B,T,H,h\] with h even, got float32\[2,5,24\]/);
        assert.throws(run(ROTARY, { x: tf.zeros([2, 5, 3, 7]), cos, sin }), /Rotary: x must be float32 \[B,T,H,h\] with h even/);
        assert.throws(run(ROTARY, { x: tf.zeros([2, 5, 3, 8], 'int32'), cos, sin }), /Rotary: x must be float32/);
        assert.throws(run(ROTARY, { x, cos: tf.ones([1, 5, 1, 8]), sin }), /Rotary: cos must be float32 \[1,5,1,4\] for x float32\[2,5,3,8\], got float32\[1,5,1,8\]/);
        assert.throws(run(ROTARY, { x, cos, sin: tf.zeros([1, 6, 1, 4]) }), /Rotary: sin must be float32 \[1,5,1,4\]/);
        assert.throws(run(ROTARY, { x, cos: tf.ones([5, 4]), sin }), /Rotary: cos must be/);
        assert.throws(run(ROTARY, { x, cos }), /Rotary: the sin table is missing/);
        assert.throws(run(ROTARY_GRAD, { dy: tf.zeros([2, 5, 3]), cos, sin }), /kernel RotaryGrad\(.*RotaryGrad: dy must be float32 \[B,T,H,h\]/);
        assert.throws(run(ROTARY_GRAD, { x, cos, sin }), /RotaryGrad: input dy is missing/);
      });
    });
  });
}
