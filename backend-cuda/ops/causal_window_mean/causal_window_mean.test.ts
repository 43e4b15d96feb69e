// The fused causal windowed mean ('CausalWindowMean', causal_window_mean.cu: shaped attention's C·X) against a
// float64 loop reference of its definition and against its oracle, train_gpt.ts's composite windowMean() on the
// cpu backend: values, and dx for a random dy (the reference's dx is the adjoint of the definition, each token's
// dy / n scattered over its window, not the kernels' backwards walk). Fresh random inputs, several documents per
// row at random boundaries, windows of 1, shorter and longer than the documents and over T; on the GPU, rows
// longer than one walk and a 33k-token row offset by 100 (an fp32 running sum would drift there). Also: the
// kernels run where the model's --block sas and sas-p use it, with the loss and gradients of --fused off; two runs
// agree bit for bit; X's gradient so far summed in by the kernel (no Add); bad inputs fail with the kernel's name.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import type { CudaBackend } from '../../backend.ts';
import { checkModelKernels, describeOrSkip, kernelsRun, random, targets, useBackend } from '../../../test/cuda_harness.ts';
import { CAUSAL_WINDOW_MEAN, CAUSAL_WINDOW_MEAN_GRAD } from './causal_window_mean.ts';

interface Case { shape: number[]; window: number; docEvery: number; offset?: number }

/** Document ids [B,T], nondecreasing: each row starts at a random id and starts a new document after each token
 * with probability 1 / docEvery (none where docEvery is 0). */
function randomDocIds(B: number, Tn: number, docEvery: number): Int32Array {
  const ids = new Int32Array(B * Tn);
  for (let b = 0; b < B; b++) {
    let doc = Math.floor(random() * 5);
    for (let t = 0; t < Tn; t++) {
      if (t > 0 && docEvery > 0 && random() * docEvery < 1) doc++;
      ids[b * Tn + t] = doc;
    }
  }
  return ids;
}

/** The definition in float64 over x viewed as [B,T,C]: y[t] = Σ x[s] / n(t) over s ∈ [lo(t), t] (prefix sums), and
 * the adjoint dx = Σ_t dy[t] / n(t) spread over [lo(t), t] (a difference array, then prefix sums). */
function reference(x: Float32Array, dy: Float32Array, doc: Int32Array, B: number, Tn: number, C: number, window: number) {
  const y = new Float64Array(B * Tn * C), dx = new Float64Array(B * Tn * C);
  const lo = new Int32Array(Tn), prefix = new Float64Array(Tn + 1), diff = new Float64Array(Tn + 1);
  for (let b = 0; b < B; b++) {
    let start = 0;
    for (let t = 0; t < Tn; t++) {
      if (t > 0 && doc[b * Tn + t] !== doc[b * Tn + t - 1]) start = t;
      lo[t] = Math.max(start, t - window + 1);
    }
    for (let c = 0; c < C; c++) {
      const at = (t: number) => (b * Tn + t) * C + c;
      diff.fill(0);
      for (let t = 0; t < Tn; t++) {
        prefix[t + 1] = prefix[t] + x[at(t)];
        const n = t - lo[t] + 1;
        y[at(t)] = (prefix[t + 1] - prefix[lo[t]]) / n;
        diff[lo[t]] += dy[at(t)] / n;
        diff[t + 1] -= dy[at(t)] / n;
      }
      let acc = 0;
      for (let s = 0; s < Tn; s++) dx[at(s)] = acc += diff[s];
    }
  }
  return { y, dx };
}

/** windowMean's output and dx for dy on the current backend, and the kernels it ran. */
async function run(xv: Float32Array, dyv: Float32Array, doc: Int32Array, shape: number[], window: number) {
  const x = tf.tensor(xv, shape), dy = tf.tensor(dyv, shape), docIds = tf.tensor2d(doc, [shape[0], shape[1]], 'int32');
  const ctx = new T.ForwardContext(docIds);
  const f = (a: tf.Tensor) => T.windowMean(a, ctx, window);
  const kernels = await kernelsRun(() => [f(x), tf.grad(f)(x, dy)]);
  const [y, dx] = [f(x), tf.grad(f)(x, dy)];
  assert.deepEqual(y.shape, shape);
  const out = { y: y.dataSync() as Float32Array, dx: dx.dataSync() as Float32Array, kernels };
  tf.dispose([x, dy, docIds, y, dx]);
  return out;
}

/** |got − want| ≤ tol·(1 + |want|) everywhere. */
function close(label: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  assert.equal(got.length, want.length, `${label}: size`);
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i])))) assert.fail(`${label}: differs at flat index ${i}: ${got[i]}, want ${want[i]}`);
  }
}

for (const target of targets) {
  describeOrSkip(`fused CausalWindowMean on ${target.name}`, target.skip, () => {
    const B = target.name;
    const CASES: Case[] = [
      { shape: [2, 24, 5], window: 1, docEvery: 4 },
      { shape: [2, 24, 5], window: 3, docEvery: 6 },  // windows shorter than most documents
      { shape: [3, 40, 7], window: 12, docEvery: 5 },  // longer than most documents
      { shape: [2, 40, 3, 4], window: 9, docEvery: 10 },  // shaped attention's [B,T,H,h]
      { shape: [1, 50, 6], window: 50, docEvery: 0 },  // one document, the window the whole row
      { shape: [2, 30, 3], window: 1000, docEvery: 8 },  // a window over T
      { shape: [1, 1, 4], window: 5, docEvery: 3 },
      ...(target.name === 'cuda' ? [
        // rows of several walks (256 steps) and windows of whole chunks (32): every path of the kernels
        { shape: [2, 1000, 40], window: 33, docEvery: 300 },
        { shape: [2, 1000, 40], window: 777, docEvery: 150 },
        { shape: [3, 1000, 33], window: 256, docEvery: 0 },
        { shape: [2, 2048, 24], window: 1665, docEvery: 700 },
        { shape: [1, 33000, 8], window: 32768, docEvery: 0, offset: 100 },
        { shape: [1, 33000, 8], window: 1000, docEvery: 9000, offset: 100 },
      ] : []),
    ];

    it('values and dx match the float64 definition and the composite on cpu (random documents and windows)', async () => {
      for (const { shape, window, docEvery, offset = 0 } of CASES) {
        const [b, t] = shape, c = shape.slice(2).reduce((p, q) => p * q, 1), n = b * t * c;
        const xv = Float32Array.from({ length: n }, () => offset + 4 * random() - 2), dyv = Float32Array.from({ length: n }, () => 4 * random() - 2);
        const doc = randomDocIds(b, t, docEvery), label = `[${shape}] window ${window}, a document every ${docEvery || '∞'} tokens`;
        const want = reference(xv, dyv, doc, b, t, c, window);
        await useBackend(B);
        const fused = await run(xv, dyv, doc, shape, window);
        assert.ok(fused.kernels.includes(CAUSAL_WINDOW_MEAN) && fused.kernels.includes(CAUSAL_WINDOW_MEAN_GRAD), `${label}: ran ${fused.kernels.join(', ')}`);
        // the kernels sum in float64 and round once
        close(`${label}: y`, fused.y, want.y, 1e-6);
        close(`${label}: dx`, fused.dx, want.dx, 1e-6);
        await tf.setBackend('cpu');
        const composite = await run(xv, dyv, doc, shape, window);
        assert.ok(!composite.kernels.includes(CAUSAL_WINDOW_MEAN), `${label}: the composite ran ${composite.kernels.join(', ')}`);
        // fp32 trees of at most 2·log2(window) levels (windowSum's bound, with Σ|x| / n ≤ 2 + offset)
        close(`${label}: composite y`, composite.y, want.y, 1e-5);
        close(`${label}: composite dx`, composite.dx, want.dx, 1e-5);
        close(`${label}: y, fused vs composite`, fused.y, composite.y, 2e-5);
        close(`${label}: dx, fused vs composite`, fused.dx, composite.dx, 2e-5);
      }
    });

    it('two runs agree bit for bit', async () => {
      await useBackend(B);
      const shape = target.name === 'cuda' ? [4, 2048, 96] : [2, 60, 6], [b, t] = shape, n = tf.util.sizeFromShape(shape);
      const xv = Float32Array.from({ length: n }, () => 4 * random() - 2), dyv = Float32Array.from({ length: n }, () => 4 * random() - 2);
      const doc = randomDocIds(b, t, t / 3), window = Math.floor(t / 2) + 1;
      const [first, second] = [await run(xv, dyv, doc, shape, window), await run(xv, dyv, doc, shape, window)];
      assert.deepEqual(second.y, first.y);
      assert.deepEqual(second.dx, first.dx);
    });

    it('a bf16-only x (the norm\'s output under bf16 precision) is read as stored: the mean of its bf16 values, no float32 copy', async () => {
      await useBackend(B);
      const backend = tf.backend() as CudaBackend, shape = [2, 40, 8], [b, t] = shape, n = tf.util.sizeFromShape(shape);
      const xv = Float32Array.from({ length: n }, () => 4 * random() - 2), doc = randomDocIds(b, t, 9), window = 7;
      const x = tf.tensor(xv, shape), docIds = tf.tensor2d(doc, [b, t], 'int32');
      try {
        backend.setMatmulPrecision('bf16');
        const xn = T.rmsNorm(x), ctx = new T.ForwardContext(docIds);
        assert.equal(backend.storedValues(xn).bf16, true, 'RMSNorm: bf16 only');
        const y = T.windowMean(xn, ctx, window);
        assert.equal(backend.storedValues(xn).bf16, true, 'CausalWindowMean made no float32 copy of its bf16-only input');
        const xs = xn.dataSync() as Float32Array;  // the bf16 values, widened
        close('y of a bf16-only x', y.dataSync() as Float32Array, reference(xs, new Float32Array(n), doc, b, t, shape[2], window).y, 1e-6);
        tf.dispose([xn, y]);
        ctx.dispose();
      } finally {
        backend.setMatmulPrecision('fp32');
        tf.dispose([x, docIds]);
      }
    });

    it('the heads\' X as it is ([B,T,H,h]): its gradient from HeadMix is summed in by the kernel (no Add), as tfjs\'s Add would', async () => {
      await useBackend(B);
      const shape = [2, 30, 3, 4], [b, t] = shape, doc = randomDocIds(b, t, 7), window = 6;
      const [x, m, dy, acc] = [0, 1, 2, 3].map(() => tf.tensor(Float32Array.from({ length: 720 }, () => 4 * random() - 2), shape));
      const coef = tf.tensor(Float32Array.from({ length: 9 }, () => random() + 0.5), [3, 3]), docIds = tf.tensor2d(doc, [b, t], 'int32');
      const ctx = new T.ForwardContext(docIds);
      try {
        // the kernel with `accumulated`: the Add's float32 sum, bit for bit
        const plain = tf.engine().runKernel(CAUSAL_WINDOW_MEAN_GRAD, { dy, docIds }, { window }) as tf.Tensor;
        const summed = tf.engine().runKernel(CAUSAL_WINDOW_MEAN_GRAD, { dy, docIds, accumulated: acc }, { window }) as tf.Tensor;
        assert.deepEqual(Array.from(summed.dataSync()), Array.from(tf.add(acc, plain).dataSync()), 'accumulated + dx');
        // shaped attention's sum of the two terms that read X: X's two gradients meet with no Add of its shape
        const f = (v: tf.Tensor) => T.headMix(v, m, T.windowMean(v, ctx, window), coef);
        let dx: tf.Tensor | null = null;
        const profile = await tf.profile(() => { dx = tf.grad(f)(x, dy); return dx; });
        const adds = profile.kernels.filter((k) => k.name === 'Add' && k.inputShapes[0]?.join() === shape.join()).length;
        assert.equal(adds, 0, `Adds of X's shape in the backward: ${adds}`);
        await tf.setBackend('cpu');
        const want = tf.grad((v: tf.Tensor) => T.headMix(v, tf.tensor(m.dataSync(), shape), T.windowMean(v, new T.ForwardContext(tf.tensor2d(doc, [b, t], 'int32')), window), tf.tensor(coef.dataSync(), [3, 3])))(tf.tensor(x.dataSync(), shape), tf.tensor(dy.dataSync(), shape));
        close('dX against the composite on cpu', dx!.dataSync() as Float32Array, want.dataSync() as Float32Array, 1e-5);
      } finally {
        await useBackend(B);
        ctx.dispose();
        tf.dispose([x, m, dy, acc, coef, docIds]);
      }
    });

    for (const block of ['sas', 'sas-p'] as const) {
      it(`--block ${block} runs it in every layer, with the loss and gradients of --fused off`, async () => {
        await useBackend(B);
        const cfg = T.resolveConfig('tiny', {
          block, vocabSize: 64, bosToken: 63, numLayers: 2, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 2, noAttnLayers: [],
          noMlpLayers: [], seqLen: 16, windowBlock: 4, windowSchedule: [2], windowPattern: 'SL', valWindow: 2,
        }).cfg;
        // windows of 5 and 9 tokens in rows of 16
        await checkModelKernels(cfg, [0, 5, 16, 27], { [CAUSAL_WINDOW_MEAN]: 2, [CAUSAL_WINDOW_MEAN_GRAD]: 2 });
      });
    }

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const x = tf.zeros([2, 5, 8]), docIds = tf.zeros([2, 5], 'int32');
        const run = (kernel: string, inputs: tf.NamedTensorMap, window: unknown = 3) => () => tf.engine().runKernel(kernel, inputs, { window } as tf.NamedAttrMap);
        assert.throws(run(CAUSAL_WINDOW_MEAN, { x: tf.zeros([10, 8]), docIds }), /kernel CausalWindowMean\(.*CausalWindowMean: x must be \[B,T,C\] or \[B,T,...\], got float32\[10,8\]/);
        assert.throws(run(CAUSAL_WINDOW_MEAN_GRAD, { dy: x, docIds, accumulated: tf.zeros([2, 5, 4]) }), /CausalWindowMeanGrad: accumulated float32\[2,5,4\] and dy float32\[2,5,8\] differ in shape/);
        assert.throws(run(CAUSAL_WINDOW_MEAN, { x, docIds: tf.zeros([2, 5]) }), /CausalWindowMean: docIds must be int32, got float32\[2,5\]/);
        assert.throws(run(CAUSAL_WINDOW_MEAN, { x, docIds: tf.zeros([2, 4], 'int32') }), /CausalWindowMean: docIds must be \[2,5\], got int32\[2,4\]/);
        assert.throws(run(CAUSAL_WINDOW_MEAN, { x }), /CausalWindowMean: input docIds is missing/);
        assert.throws(run(CAUSAL_WINDOW_MEAN, { x, docIds }, 0), /CausalWindowMean: attr window must be a positive integer, got 0/);
        assert.throws(run(CAUSAL_WINDOW_MEAN, { x, docIds }, 2.5), /CausalWindowMean: attr window must be a positive integer, got 2.5/);
        assert.throws(run(CAUSAL_WINDOW_MEAN_GRAD, { dy: tf.zeros([2, 5], 'int32'), docIds }), /CausalWindowMeanGrad: dy must be float32, got int32\[2,5\]/);
      });
    });
  });
}
