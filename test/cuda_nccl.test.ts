// NCCL bindings of the cuda backend (ncclUniqueId/ncclInit/ncclAllReduce/ncclAllGather/ncclDestroy) on the real
// GPU with a world of one rank: the whole NCCL path runs (communicator, grouped out-of-place collectives on the
// backend's stream), and with one rank a sum and an average are the identity and a gather adds a leading axis of 1. Skips where no
// GPU is usable; argument errors are checked there too, and the unavailable case everywhere.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { cudaAvailability, ncclAllGather, ncclAllReduce, ncclDestroy, ncclInit, ncclUniqueId } from '../backend-cuda/index.ts';
import { describeOrSkip, randFloat, targets, useBackend } from './cuda_harness.ts';

const gpu = targets.find(t => t.name === 'cuda')!;

describeOrSkip('NCCL without a usable GPU', gpu.skip === false ? 'a GPU is usable here' : false, () => {
  it('every call fails with the reason, naming the function', () => {
    const avail = cudaAvailability();
    assert.equal(avail.ok, false);
    const reason = avail.ok ? '' : avail.reason;
    assert.throws(() => ncclUniqueId(), (e: Error) => e.message.startsWith('ncclUniqueId: the cuda backend is unavailable') && e.message.includes(reason));
    assert.throws(() => ncclInit({ uniqueId: '', worldSize: 1, rank: 0 }), /^Error: ncclInit: the cuda backend is unavailable/);
    assert.throws(() => ncclAllReduce([], 'sum'), /^Error: ncclAllReduce: the cuda backend is unavailable/);
    assert.throws(() => ncclAllGather([]), /^Error: ncclAllGather: the cuda backend is unavailable/);
  });
});

describeOrSkip('NCCL on the GPU, world size 1', gpu.skip, () => {
  it('unique id, init, grouped sum and avg (identity for one rank), gather ([1, ...shape]), destroy', async () => {
    const id = ncclUniqueId();  // before the backend starts: rank 0 makes it first
    assert.equal(Buffer.from(id, 'base64').length, 128);
    assert.notEqual(ncclUniqueId(), id, 'two unique ids differ');
    await useBackend('cuda');
    assert.throws(() => ncclInit({ uniqueId: id, worldSize: 1, rank: 1 }), /ncclInit: rank 1 is outside \[0, 1\)/);
    assert.throws(() => ncclInit({ uniqueId: id, worldSize: 0, rank: 0 }), /ncclInit: worldSize 0 is not a positive integer/);
    assert.throws(() => ncclInit({ uniqueId: 'abc', worldSize: 1, rank: 0 }), /ncclInit: uniqueId is not the base64 of 128 bytes/);
    assert.throws(() => ncclAllReduce([tf.ones([2])], 'sum'), /ncclAllReduce failed|no communicator/);
    assert.throws(() => ncclAllGather([tf.ones([2])]), /ncclAllGather: no communicator \(call ncclInit first\)/);
    ncclInit({ uniqueId: id, worldSize: 1, rank: 0 });
    try {
      assert.throws(() => ncclInit({ uniqueId: id, worldSize: 1, rank: 0 }), /already open/);
      // Shapes of a gradient list: a large matrix, a vector, a scalar, an empty tensor, odd sizes.
      const shapes = [[1024, 1031], [768], [], [0, 5], [3, 7, 11]];
      const hosts = shapes.map(s => randFloat(s));
      const xs = hosts.map(h => tf.tensor(h.values, h.shape, 'float32'));
      const before = tf.memory().numTensors;
      for (const op of ['sum', 'avg'] as const) {
        const ys = ncclAllReduce(xs, op);
        assert.equal(ys.length, xs.length);
        for (let i = 0; i < xs.length; i++) {
          assert.deepEqual(ys[i].shape, shapes[i], `${op} output ${i} shape`);
          assert.equal(ys[i].dtype, 'float32');
          assert.notEqual(ys[i].dataId, xs[i].dataId, 'out of place: a new buffer');
          assert.deepEqual(await ys[i].data(), hosts[i].values, `${op} of one rank is the identity (tensor ${i} [${shapes[i]}])`);
          assert.deepEqual(await xs[i].data(), hosts[i].values, `input ${i} untouched`);
        }
        // ordered on the stream: a kernel reading the output right away sees the reduced values
        const s = tf.sum(ys[0]);
        const want = (hosts[0].values as Float32Array).reduce((a, b) => a + b, 0);
        assert.ok(Math.abs((await s.data())[0] - want) <= 1e-3 * Math.abs(want) + 1e-2);
        tf.dispose([s, ...ys]);
      }
      const gathered = ncclAllGather(xs);  // the sharded optimiser's exchange
      for (let i = 0; i < xs.length; i++) {
        assert.deepEqual(gathered[i].shape, [1, ...shapes[i]], `gather output ${i} shape`);
        assert.notEqual(gathered[i].dataId, xs[i].dataId, 'out of place: a new buffer');
        assert.deepEqual(await gathered[i].data(), hosts[i].values, `the gather of one rank holds its tensor ${i} [${shapes[i]}]`);
      }
      tf.dispose(gathered);
      assert.equal(tf.memory().numTensors, before, 'no tensor leaked');
      assert.throws(() => ncclAllReduce([tf.ones([2], 'int32')], 'sum'), /ncclAllReduce: tensor 0 \[2\] is int32; only float32 is supported/);
      assert.throws(() => ncclAllReduce(xs, 'max' as 'sum'), /ncclAllReduce: op 'max' is not 'sum' or 'avg'/);
      tf.dispose(xs);
    } finally {
      ncclDestroy();
    }
    ncclDestroy();  // a second destroy is a no-op
    assert.throws(() => ncclAllReduce([tf.ones([2])], 'avg'), /no communicator \(call ncclInit first\)/);
    assert.throws(() => ncclAllGather([tf.ones([2])]), /ncclAllGather: no communicator/);
  });
});
