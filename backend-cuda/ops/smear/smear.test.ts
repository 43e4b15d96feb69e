// The token smear ('Smear', 'SmearGrad'; smear.cu) against train_gpt.ts's composite on the cpu backend, through
// train_gpt.ts's smear() on fresh random inputs: batch rows of several documents, across documents (the record's) and
// within them (a mask), sizes with and without a multiple of 4 channels (the GPU's scalar and float4 paths) and, on the
// GPU, the speedrun's [1, 32768, 768]; the output, and the gradients of x, the gate's weights and λ. The gate's dot and
// the gradient's sums run in another order than the composite's, so within float32 rounding. Under bf16 matmuls the
// fused gate rounds its operands as the composite's Linear does (the same backend, both ways). Also the hook, and bad
// inputs failing with the kernel's name.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import type { CudaBackend } from '../../backend.ts';
import { checkFusionHook, compare, describeOrSkip, type HostTensor, randFloat, random, relError, targets, useBackend, withFusedOff } from '../../../test/cuda_harness.ts';
import { SMEAR, SMEAR_GRAD } from './smear.ts';

/** Document ids [B, T]: a new document every 3 … 40 tokens. */
function docIds(B: number, Tn: number): HostTensor {
  const v = new Int32Array(B * Tn);
  for (let b = 0; b < B; b++) for (let t = 0, doc = 0, next = 0; t < Tn; t++) {
    if (t === next) { doc++; next = t + 3 + Math.floor(random() * 38); }
    v[b * Tn + t] = doc;
  }
  return { shape: [B, Tn], dtype: 'int32', values: v };
}

/** smear(x, w, λ) and its gradients of x, w and λ for dy, with the documents `ids`. */
const smearAndGrads = (acrossDocs: boolean) => (x: tf.Tensor, w: tf.Tensor, lambda: tf.Tensor, dy: tf.Tensor, ids: tf.Tensor) => {
  const ctx = new T.ForwardContext(ids as tf.Tensor2D);
  const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => T.smear(a, b, c, ctx, acrossDocs);
  const y = f(x, w, lambda), grads = tf.grads(f)([x, w, lambda], dy);
  ctx.dispose();
  return [y, ...grads];
};

for (const target of targets) {
  describeOrSkip(`fused Smear on ${target.name}`, target.skip, () => {
    const B = target.name;
    const SHAPES = [[2, 37, 24], [3, 20, 13], [1, 64, 12], ...(B === 'cuda' ? [[1, 32768, 768], [2, 1000, 770]] : [])];

    it('the output and the gradients of x, w and λ match the composite on cpu (across documents and within them)', async () => {
      for (const [b, t, d] of SHAPES) {
        for (const acrossDocs of [true, false]) {
          const k = Math.min(12, d);
          const inputs = [randFloat([b, t, d]), randFloat([k, 1], -1, 1), randFloat([1], -1, 1), randFloat([b, t, d]), docIds(b, t)];
          await compare(B, `[${b}, ${t}, ${d}], acrossDocs ${acrossDocs}`, inputs, smearAndGrads(acrossDocs), { rtol: 2e-5, atol: 2e-5 });
        }
      }
    });

    it('under bf16 matmuls the fused gate rounds its operands as the composite\'s Linear (the same backend both ways)', async () => {
      await useBackend(B);
      const backend = tf.backend() as CudaBackend, before = backend.matmulPrecision;
      backend.setMatmulPrecision('bf16');
      try {
        const [b, t, d] = B === 'cuda' ? [1, 4096, 768] : [2, 37, 24];
        const inputs = [randFloat([b, t, d]), randFloat([12, 1], -1, 1), randFloat([1], -1, 1), randFloat([b, t, d]), docIds(b, t)]
          .map((h) => tf.tensor(h.values, h.shape, h.dtype));
        const run = () => smearAndGrads(true)(...(inputs as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor])).map((r) => r.dataSync().slice());
        const fused = run(), composite = await withFusedOff(run);
        ['y', 'dx', 'dw', 'dλ'].forEach((name, i) => {
          const err = relError(fused[i], composite[i]);
          assert.ok(err < 1e-4, `${name}: relative error ${err} against the composite under bf16 matmuls`);
        });
        tf.dispose(inputs);
      } finally {
        backend.setMatmulPrecision(before);
      }
    });

    it('the hook runs the fused kernels, --fused off the composite; bad inputs fail naming them', async () => {
      await useBackend(B);
      const x = tf.randomNormal([2, 9, 16], 0, 1, 'float32', Math.floor(random() * 2 ** 31)), w = tf.randomNormal([12, 1], 0, 1, 'float32', Math.floor(random() * 2 ** 31));
      const lambda = tf.tensor1d([0.3]), ids = tf.tensor(docIds(2, 9).values, [2, 9], 'int32'), dy = tf.onesLike(x);
      await checkFusionHook(() => smearAndGrads(false)(x, w, lambda, dy, ids), { fused: [SMEAR, SMEAR_GRAD], composite: ['Sigmoid', 'Add'], compositeOnly: ['Sigmoid'] });
      const run = (inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap = { acrossDocs: true }) => () => tf.engine().runKernel(SMEAR, { docIds: ids, ...inputs }, attrs);
      assert.throws(run({ x: x.reshape([18, 16]), w, lambda }), /Smear: x must be \[B, T, d\], got float32\[18,16\]/);
      assert.throws(run({ x, w: tf.zeros([17, 1]), lambda }), /Smear: w must be \[k, 1\] with 1 ≤ k ≤ 16, got float32\[17,1\]/);
      assert.throws(run({ x, w, lambda: tf.zeros([2]) }), /Smear: lambda must hold one value, got float32\[2\]/);
      assert.throws(run({ x, w, lambda, docIds: ids.reshape([18]) }), /Smear: docIds must be \[2,9\], got int32\[18\]/);
      assert.throws(run({ x, w, lambda }, {}), /Smear: attr acrossDocs must be a boolean, got undefined/);
      assert.throws(() => tf.engine().runKernel(SMEAR_GRAD, { dy: dy.slice([0, 0, 0], [2, 8, 16]), x, w, lambda, docIds: ids }, { acrossDocs: false }),
        /SmearGrad: dy float32\[2,8,16\] and x float32\[2,9,16\] differ in shape/);
      tf.dispose([x, w, lambda, ids, dy]);
    });
  });
}
