// backend-wasm/index.ts: its BatchMatMul, UnsortedSegmentSum, Identity, Slice, SplitV and Unpack kernels on the 'wasm' backend against
// the 'cpu' backend (the reference) on fresh random inputs, and the gradient of tf.gather through them.
// tfjs has one global active backend: each computation runs on one, its inputs built there from arrays.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '../tfjs_node.ts'; // gradients, chained ops and the cpu backend
import { registerWasmKernels } from '../backend-wasm/index.ts';
import { random, randomInt } from './seed.ts';

const stockBatchMatMul = tf.getKernel(tf.BatchMatMul, 'wasm')?.kernelFunc;
const stockSegmentSum = tf.getKernel(tf.UnsortedSegmentSum, 'wasm');

before(async () => {
  registerWasmKernels();
  registerWasmKernels(); // idempotent
  assert.ok(await tf.setBackend('wasm'), 'the wasm backend initialises');
});

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
/** Uniform in [-1, 1), never all zero. */
const randomArray = (n: number) => Float32Array.from({ length: n }, () => random() * 2 - 1);

/** Runs fn on a backend; returns its result's values and shape, and checks it left no tensor or buffer behind. */
async function on(backend: 'cpu' | 'wasm', fn: () => tf.Tensor): Promise<{ values: Float32Array; shape: number[] }> {
  assert.ok(await tf.setBackend(backend));
  const tensorsBefore = tf.memory().numTensors, buffersBefore = tf.engine().backend.numDataIds();
  const out = fn();
  const result = { values: Float32Array.from(out.dataSync()), shape: out.shape };
  out.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore, `${backend}: tensors leaked`);
  assert.equal(tf.engine().backend.numDataIds(), buffersBefore, `${backend}: backend buffers leaked`);
  return result;
}

/** The computation on cpu (cpuFn if given) and on wasm must agree in shape and, to float32 rounding, in every value. */
async function assertAgree(what: string, fn: () => tf.Tensor, cpuFn = fn, atol = 1e-4): Promise<Float32Array> {
  const cpu = await on('cpu', cpuFn);
  const wasm = await on('wasm', fn);
  assert.deepEqual(wasm.shape, cpu.shape, `${what}: shape`);
  assert.ok(cpu.values.some((v) => v !== 0), `${what}: the reference is not all zeros`);
  for (let i = 0; i < cpu.values.length; i++) {
    const d = Math.abs(wasm.values[i] - cpu.values[i]);
    if (!(d <= atol * (1 + Math.abs(cpu.values[i])))) assert.fail(`${what}: element ${i} is ${wasm.values[i]} on wasm, ${cpu.values[i]} on cpu`);
  }
  return cpu.values;
}

test('registerWasmKernels replaces BatchMatMul and adds UnsortedSegmentSum on wasm', () => {
  assert.equal(stockSegmentSum, undefined, 'tfjs-backend-wasm 4.22 has no UnsortedSegmentSum of its own');
  assert.ok(tf.getKernel(tf.UnsortedSegmentSum, 'wasm'));
  assert.ok(stockBatchMatMul);
  assert.notEqual(tf.getKernel(tf.BatchMatMul, 'wasm')!.kernelFunc, stockBatchMatMul, 'BatchMatMul is the replacement');
});

test('BatchMatMul on wasm equals cpu: 2-D, batched, transposed operands, broadcast batch dimensions', async () => {
  const m = randomInt(3, 9), k = randomInt(3, 40), n = randomInt(2, 9);
  // [a shape before transposition, b shape before transposition] for each case; transposes apply to the last two dims.
  const cases: { a: number[]; b: number[] }[] = [
    { a: [m, k], b: [k, n] },
    { a: [1, m, k], b: [k, n] }, // batch of one: output keeps the batch dim
    { a: [1, 1, m, k], b: [1, k, n] },
    { a: [4, m, k], b: [4, k, n] },
    { a: [3, m, k], b: [k, n] }, // b shared by every matrix of a
    { a: [m, k], b: [2, 3, k, n] },
    { a: [2, 1, m, k], b: [3, k, n] }, // broadcast both ways to [2, 3]
    { a: [2, 3, 1, m, k], b: [1, 4, k, n] },
    { a: [2, 33, 65], b: [2, 65, 17] }, // sizes past any blocking of the wasm kernel
    { a: [1, k], b: [k, 1] },
  ];
  for (const c of cases) {
    for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const swap = (s: number[]) => [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]];
      const aShape = tA ? swap(c.a) : c.a, bShape = tB ? swap(c.b) : c.b;
      const av = randomArray(size(aShape)), bv = randomArray(size(bShape));
      // The cpu kernel broadcasts only a batch of one against a batch (its output has max(batchA, batchB)
      // matrices), so its operands are broadcast to the full batch first; wasm gets them as they are.
      const batch = tf.broadcast_util.assertAndGetBroadcastShape(c.a.slice(0, -2), c.b.slice(0, -2));
      const full = (s: number[]) => [...batch, ...s.slice(-2)];
      await assertAgree(`[${aShape}]${tA ? 'ᵀ' : ''} × [${bShape}]${tB ? 'ᵀ' : ''}`,
        () => tf.tidy(() => tf.matMul(tf.tensor(av, aShape), tf.tensor(bv, bShape), tA, tB)),
        () => tf.tidy(() => tf.matMul(tf.broadcastTo(tf.tensor(av, aShape), full(aShape)), tf.broadcastTo(tf.tensor(bv, bShape), full(bShape)), tA, tB)));
    }
  }
});

test('BatchMatMul on wasm: every matrix of a batch is its own product (checked against a plain JS reference)', async () => {
  const [B, m, k, n] = [3, randomInt(2, 6), randomInt(2, 6), randomInt(2, 6)];
  for (const bShared of [false, true]) {
    const av = randomArray(B * m * k), bv = randomArray((bShared ? 1 : B) * k * n);
    const got = await on('wasm', () => tf.tidy(() => tf.matMul(tf.tensor(av, [B, m, k]), tf.tensor(bv, bShared ? [k, n] : [B, k, n]))));
    assert.deepEqual(got.shape, [B, m, n]);
    for (let b = 0; b < B; b++) for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += av[(b * m + i) * k + p] * bv[(bShared ? 0 : b * k * n) + p * n + j];
      assert.ok(Math.abs(got.values[(b * m + i) * n + j] - s) < 1e-5, `b ${bShared ? 'shared' : 'batched'}: [${b},${i},${j}]`);
    }
  }
});

test('UnsortedSegmentSum on wasm equals cpu: repeated ids summed, out-of-range ids dropped', async () => {
  for (const rowShape of [[], [3], [2, 5]]) {
    const numSegments = randomInt(4, 9), N = randomInt(20, 40);
    // Ids from -2 to numSegments + 1: some repeated, some out of range on both sides.
    const ids = Int32Array.from({ length: N }, () => randomInt(-2, numSegments + 1));
    ids[0] = ids[1] = 1; // at least one repeat
    ids[2] = -1; ids[3] = numSegments; // at least one out of range each side
    const xs = randomArray(N * size(rowShape));
    const values = await assertAgree(`x [${N},${rowShape}], ${numSegments} segments`,
      () => tf.tidy(() => tf.unsortedSegmentSum(tf.tensor(xs, [N, ...rowShape]), tf.tensor1d(ids, 'int32'), numSegments)));
    // And the definition, by hand.
    const row = size(rowShape), want = new Float64Array(numSegments * row);
    ids.forEach((s, i) => { if (s >= 0 && s < numSegments) for (let j = 0; j < row; j++) want[s * row + j] += xs[i * row + j]; });
    want.forEach((w, i) => assert.ok(Math.abs(values[i] - w) < 1e-5, `segment element ${i}: ${values[i]} vs ${w}`));
  }
});

test('UnsortedSegmentSum on wasm: int32 values, and a 2-D segmentIds is refused with a clear error', async () => {
  const xs = Int32Array.from({ length: 12 }, () => randomInt(-50, 50));
  const ids = Int32Array.from([0, 2, 2, 5]);
  const cpu = await on('cpu', () => tf.tidy(() => tf.unsortedSegmentSum(tf.tensor(xs, [4, 3], 'int32'), tf.tensor1d(ids, 'int32'), 3)));
  const wasm = await on('wasm', () => tf.tidy(() => tf.unsortedSegmentSum(tf.tensor(xs, [4, 3], 'int32'), tf.tensor1d(ids, 'int32'), 3)));
  assert.deepEqual(wasm, cpu);
  await tf.setBackend('wasm');
  assert.throws(() => tf.tidy(() => tf.engine().runKernel(tf.UnsortedSegmentSum,
    { x: tf.ones([2, 2]), segmentIds: tf.tensor2d([0, 1, 0, 1], [2, 2], 'int32') }, { numSegments: 2 })), /segmentIds \[2,2\] must be 1-D/);
});

test('the gradient of tf.gather on wasm equals cpu (embedding rows hit several times, axis 0 and 1)', async () => {
  const V = randomInt(10, 30), d = randomInt(3, 12), N = randomInt(30, 60);
  const table = randomArray(V * d);
  const ids = Int32Array.from({ length: N }, () => randomInt(0, V - 1));
  ids[0] = ids[1] = ids[2] = randomInt(0, V - 1); // a row used three times
  const weights = randomArray(N * d);
  const grad0 = await assertAgree('d/dtable Σ w·gather(table, ids)', () => tf.tidy(() => {
    const w = tf.tensor(weights, [N, d]);
    return tf.grad((p: tf.Tensor) => tf.gather(p, tf.tensor1d(ids, 'int32')).mul(w).sum())(tf.tensor(table, [V, d]));
  }));
  // By hand: row v of the gradient is the sum of the weights of the lookups of v; unused rows are zero.
  for (let v = 0; v < V; v++) for (let j = 0; j < d; j++) {
    let s = 0;
    ids.forEach((id, i) => { if (id === v) s += weights[i * d + j]; });
    assert.ok(Math.abs(grad0[v * d + j] - s) < 1e-5, `gradient [${v},${j}]`);
  }
  const cols = Int32Array.from({ length: 7 }, () => randomInt(0, d - 1));
  const w1 = randomArray(V * cols.length);
  await assertAgree('gradient of gather along axis 1', () => tf.tidy(() => {
    const w = tf.tensor(w1, [V, cols.length]);
    return tf.grad((p: tf.Tensor) => tf.gather(p, tf.tensor1d(cols, 'int32'), 1).mul(w).sum())(tf.tensor(table, [V, d]));
  }));
});

test('Slice, SplitV and Unpack read the heap in place and agree with cpu (contiguous and strided, ranks 1-5)', async () => {
  for (const shape of [[17], [5, 9], [3, 4, 7], [2, 3, 4, 5], [2, 2, 3, 2, 4]]) {
    const values = randomArray(size(shape));
    const begin = shape.map((d) => randomInt(0, d - 1));
    const sliceSize = shape.map((d, i) => randomInt(1, d - begin[i]));
    await assertAgree(`slice [${shape}] at [${begin}] size [${sliceSize}]`, () => tf.tidy(() => tf.slice(tf.tensor(values, shape), begin, sliceSize)));
    for (let axis = 0; axis < shape.length; axis++) {
      if (shape[axis] >= 2) {
        const first = randomInt(1, shape[axis] - 1);
        for (const [k, part] of [[0, 0], [1, 1]]) {
          await assertAgree(`split [${shape}] axis ${axis} part ${part}`, () => tf.tidy(() => tf.split(tf.tensor(values, shape), [first, shape[axis] - first], axis)[k]));
        }
      }
      const pick = randomInt(0, shape[axis] - 1);
      await assertAgree(`unstack [${shape}] axis ${axis} item ${pick}`, () => tf.tidy(() => tf.unstack(tf.tensor(values, shape), axis)[pick]));
    }
  }
  const even = randomArray(24);
  await assertAgree('split into equal parts', () => tf.tidy(() => tf.split(tf.tensor(even, [4, 6]), 3, 1)[2]));
});

test('Identity shares the buffer (no copy), and gradients through saved tensors still agree with cpu', async () => {
  assert.ok(await tf.setBackend('wasm'));
  const x = tf.tensor(randomArray(12), [3, 4]);
  const y = tf.engine().runKernel(tf.Identity, { x }) as tf.Tensor;
  assert.equal(y.dataId, x.dataId, 'the output is the input buffer');
  x.dispose();
  assert.equal(y.dataSync().length, 12, 'the buffer outlives the first owner');
  y.dispose();
  const a = randomArray(20), b = randomArray(20);
  const f = () => tf.tidy(() => tf.grad((t: tf.Tensor) => t.mul(t).sin().mul(tf.tensor(b, [4, 5])).sum())(tf.tensor(a, [4, 5])));
  await assertAgree('gradient of sum(sin(x²)·b)', f);
});
