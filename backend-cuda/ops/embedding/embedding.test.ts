// The embedding lookup ('Embedding', 'EmbeddingGrad'; embedding.ts) against tf.gather (its composite) on fresh random
// tables and ids (repeated ids, the first and last rows): the rows bit for bit, from a float32 table and from one stored in
// bf16 (read as stored); the table's gradient against the
// composite's (UnsortedSegmentSum), without and with a gradient so far (accumulated + the composite's gradient: the
// atomic adds of repeated ids in any order, so within float32 rounding); on the host reference device (CI) and on the
// GPU where there is one; a gradient so far given up (inPlace) updated in its own buffer, or a copy where a view shares it,
// also through the backward's starting sums; the hook runs the fused kernels and --fused off the composite; bad inputs
// fail naming the kernel.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import { variableGradsSummed } from '../../../tfjs_node.ts';
import { bf16, checkFusionHook, describeOrSkip, random, randFloat, relError, storedInBf16, targets, useBackend, withFusedOff } from '../../../test/cuda_harness.ts';
import { EMBEDDING, EMBEDDING_GRAD } from './embedding.ts';

for (const target of targets) {
  describeOrSkip(`fused Embedding on ${target.name}`, target.skip, () => {
    const B = target.name, gpu = B === 'cuda';
    const [V, d, rows, cols] = gpu ? [50304, 768, 8, 2048] : [37, 24, 3, 40];

    /** A table, ids [rows, cols] (with 0, V − 1 and repeats), dy [rows, cols, d] and a gradient so far. */
    function problem() {
      const table = randFloat([V, d]), acc = randFloat([V, d]), dy = randFloat([rows, cols, d]);
      const ids = Int32Array.from({ length: rows * cols }, (_, i) => (i === 0 ? 0 : i === 1 ? V - 1 : Math.floor(random() * Math.min(V, rows * cols / 4))));
      return {
        table: tf.tensor(table.values, table.shape), acc: tf.tensor(acc.values, acc.shape), dy: tf.tensor(dy.values, dy.shape),
        ids: tf.tensor(ids, [rows, cols], 'int32'),
      };
    }

    it('gives tf.gather\'s rows bit for bit, and its gradient with and without a gradient so far', async () => {
      await useBackend(B);
      const { table, acc, dy, ids } = problem();
      const fused = T.embed(table, ids), composite = tf.gather(table, ids);
      assert.deepEqual(fused.dataSync(), composite.dataSync());
      const gradOf = () => tf.grads((t: tf.Tensor) => T.embed(t, ids))([table], dy)[0];
      const grad = gradOf(), want = await withFusedOff(gradOf);
      assert.ok(relError(grad.dataSync(), want.dataSync()) < 1e-6, `gradient: relative error ${relError(grad.dataSync(), want.dataSync())}`);
      const summed = tf.engine().runKernel(EMBEDDING_GRAD, { dy, ids, accumulated: acc }, { rows: V }) as tf.Tensor;
      const wantSummed = acc.add(want);
      assert.ok(relError(summed.dataSync(), wantSummed.dataSync()) < 1e-6, `gradient with the sum so far: relative error ${relError(summed.dataSync(), wantSummed.dataSync())}`);
      tf.dispose([table, acc, dy, ids, fused, composite, grad, want, summed, wantSummed]);
    });

    it('reads a table stored in bf16 (a bf16 parameter as Adam stores it) as it is: tf.gather\'s rows of its values, no float32 copy', async () => {
      await useBackend(B);
      // the model's width (the vector path) and an odd one (the scalar path)
      for (const width of [d, 7]) {
        const values = randFloat([V, width]).values.map(bf16), ids = problem().ids;
        const table = T.roundToBf16(tf.tensor(values, [V, width]));
        assert.ok(storedInBf16(table), 'the test\'s table is stored in bf16 only');
        const fused = T.embed(table, ids), want = tf.gather(tf.tensor(values, [V, width]), ids);
        assert.deepEqual(fused.dataSync(), want.dataSync(), `rows of width ${width}`);
        assert.ok(storedInBf16(table), 'the lookup made no float32 copy of the table');
        tf.dispose([table, ids, fused, want]);
      }
    });

    it('adds into a gradient so far that is given up (inPlace) in its own buffer, and into a copy where another tensor shares it', async () => {
      await useBackend(B);
      const { table, acc, dy, ids } = problem();
      const accValues = acc.dataSync().slice();
      const want = await withFusedOff(() => acc.add(tf.grads((t: tf.Tensor) => T.embed(t, ids))([table], dy)[0]));
      const check = (got: tf.Tensor, label: string) => {
        const err = relError(got.dataSync(), want.dataSync());
        assert.ok(err < 1e-6, `${label}: relative error ${err}`);
      };
      // shared by a view: a copy, the view unchanged
      const view = acc.reshape([V * d]), before = view.dataSync().slice();
      const copied = tf.engine().runKernel(EMBEDDING_GRAD, { dy, ids, accumulated: acc }, { rows: V, inPlace: true }) as tf.Tensor;
      assert.notEqual(copied.dataId, acc.dataId, 'a buffer another tensor shares is not updated in place');
      assert.deepEqual(view.dataSync(), before);
      check(copied, 'into a copy');
      view.dispose();
      // given up, alone on its buffer: updated in place
      const inPlace = tf.engine().runKernel(EMBEDDING_GRAD, { dy, ids, accumulated: acc }, { rows: V, inPlace: true }) as tf.Tensor;
      assert.equal(inPlace.dataId, acc.dataId, 'the gradient so far, given up and alone on its buffer, is updated in place');
      acc.dispose();
      check(inPlace, 'in place');
      // through the backward: variableGradsSummed's starting sum is the backward's alone
      const v = tf.variable(table), sum = tf.tensor(accValues, [V, d]);
      const sumId = sum.dataId;
      const { grads } = variableGradsSummed(() => T.embed(v, ids).mul(dy).sum() as tf.Scalar, new Map([[v, sum]]));
      assert.equal(grads[v.name].dataId, sumId, 'the backward adds the table\'s gradient into its sum so far in place');
      check(grads[v.name], 'through variableGradsSummed');
      tf.dispose([table, dy, ids, want, copied, inPlace, v, grads[v.name]]);
    });

    it('the hook runs the fused kernels, --fused off the composite; bad inputs fail naming them', async () => {
      await useBackend(B);
      const { table, acc, dy, ids } = problem();
      await checkFusionHook(() => tf.grads((t: tf.Tensor) => T.embed(t, ids))([table], dy), { fused: [EMBEDDING, EMBEDDING_GRAD], composite: ['GatherV2', 'UnsortedSegmentSum'] });
      assert.throws(() => tf.engine().runKernel(EMBEDDING, { table, ids: ids.cast('float32') }, {}), /Embedding: ids must be int32, got float32/);
      assert.throws(() => tf.engine().runKernel(EMBEDDING_GRAD, { dy: dy.reshape([rows * cols, d]), ids }, { rows: V }),
        /EmbeddingGrad: dy must be \[\.\.\.ids' shape, d\]/);
      assert.throws(() => tf.engine().runKernel(EMBEDDING_GRAD, { dy, ids, accumulated: acc.slice([0, 0], [V - 1, d]) }, { rows: V }),
        new RegExp(`EmbeddingGrad: accumulated must be float32 \\[${V},${d}\\] \\(the table's shape\\)`));
      tf.dispose([table, acc, dy, ids]);
    });
  });
}
