// train_gpt.ts's shapedAttention() (SAS, SAS-P) against the formula with the T×T matrices written out: α·X +
// β·softmax(QKᵀ/√h + mask)·X − γ·C·X, C the uniform average over each query's visible keys, on fresh random
// inputs with several documents per row and a window shorter than the rows; values and the gradients of every
// input (q, k, X, the shape parameters and the block's gain β_SA folded in).
import '../tfjs_node.ts';
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ForwardContext, shapedAttention } from '../train_gpt.ts';
import { random, relError } from './cuda_harness.ts';

/** The same maths with every T×T matrix materialised (what shapedAttentionSublayer computed before). */
function reference(x: tf.Tensor, q: tf.Tensor, k: tf.Tensor, shape: tf.Tensor, docIds: tf.Tensor2D, window: number): tf.Tensor {
  const [B, T, H, h] = x.shape;
  const heads = (t: tf.Tensor) => t.transpose([0, 2, 1, 3]);  // [B,H,T,h]
  const same = tf.equal(docIds.expandDims(2), docIds.expandDims(1)).cast('float32');
  const i = tf.range(0, T).reshape([T, 1]), j = tf.range(0, T).reshape([1, T]);
  const band = tf.logicalAnd(tf.lessEqual(j, i), tf.less(i.sub(j), window)).cast('float32');
  const keep = same.mul(band).expandDims(1);  // [B,1,T,T]
  const scores = tf.matMul(heads(q), heads(k), false, true).mul(1 / Math.sqrt(h)).add(keep.sub(1).mul(1e9));
  const probs = tf.softmax(scores), uniform = keep.div(keep.sum(-1, true));
  const [alpha, beta, gamma] = tf.unstack(shape.add(1)).map((t) => t.reshape([1, H, 1, 1]));
  const X = heads(x);
  const y = X.mul(alpha).add(tf.matMul(probs, X).mul(beta)).sub(tf.matMul(uniform.tile([1, H, 1, 1]), X).mul(gamma));
  return y.transpose([0, 2, 1, 3]).reshape([B, T, H, h]);
}

test('shapedAttention equals the materialised formula, values and gradients (documents, a sliding window)', async () => {
  await tf.setBackend('cpu');
  const [B, T, H, h, window] = [2, 24, 3, 8, 7];
  const rand = (shape: number[], s = 1) => tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (2 * random() - 1) * s), shape);
  const docs = Int32Array.from({ length: B * T }, (_, n) => Math.floor((n % T) / 9) + (n >= T ? 5 : 0));  // documents of 9 tokens
  const docIds = tf.tensor2d(docs, [B, T], 'int32');
  const [x, q, k, shape, dy] = [rand([B, T, H, h]), rand([B, T, H, h], 2), rand([B, T, H, h], 2), rand([3, H], 0.5), rand([B, T, H, h])];
  const gain = tf.tensor1d([0.5 + random()]);  // the block's β_SA, folded into α, β and γ
  // the reference scaled by the gain afterwards, as the blocks did before folding it in
  const f = (fn: typeof reference) => (xs: tf.Tensor, qs: tf.Tensor, ks: tf.Tensor, ss: tf.Tensor, g: tf.Tensor) =>
    fn(xs, qs, ks, ss, docIds, window).mul(g);
  const ctx = new ForwardContext(docIds);
  const ours = (xs: tf.Tensor, qs: tf.Tensor, ks: tf.Tensor, ss: tf.Tensor, _d: tf.Tensor2D, w: number) =>
    shapedAttention(xs, qs, ks, ss, ctx, w);
  const oursWithGain = (xs: tf.Tensor, qs: tf.Tensor, ks: tf.Tensor, ss: tf.Tensor, g: tf.Tensor) =>
    shapedAttention(xs, qs, ks, ss, ctx, window, g);
  const inputs = [x, q, k, shape, gain];
  for (const [label, fn] of [['without a gain', f(ours)], ['with a gain', oursWithGain]] as const) {
    // without a gain the gain's gradient is compared against the reference's too: that of y·1 (1 fed in as g)
    const args = label === 'with a gain' ? inputs : [x, q, k, shape, tf.ones([1])];
    const got = [fn(...(args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor])), ...tf.grads(fn)(args, dy)];
    const want = [f(reference)(...(args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor])), ...tf.grads(f(reference))(args, dy)];
    ['y', 'dx', 'dq', 'dk', 'dshape', 'dgain'].forEach((name, n) => {
      const err = relError(got[n].dataSync(), want[n].dataSync());
      assert.ok(err < 1e-5, `${label}, ${name}: relative error ${err}`);
    });
  }
  ctx.dispose();
});
