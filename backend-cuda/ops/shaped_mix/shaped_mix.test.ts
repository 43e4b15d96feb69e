// The fused shaped mix ('ShapedMix' α·x + β·m − γ·C·x per head and 'ShapedMixGrad', shaped_mix.cu: shaped attention's sum
// with its causal window mean C·x) against a float64 reference of its definition and against its oracle, train_gpt.ts's
// composite shapedMix() (windowMean()'s sums by doubling, per-head products, an Add and a Sub) on the cpu backend: the
// value and the gradients of x, m and coef (the reference's dx is the adjoint of the definition, each token's dy / n
// scattered over its window, not the kernel's backwards walk). Fresh random inputs, several documents per row at random
// boundaries, windows of 1, shorter and longer than the documents and over T, head dims on the GPU's float4 and scalar
// paths; on the GPU, rows longer than one walk and a 33k-token row offset by 100 (an fp32 running sum would drift
// there). Also: two runs agree bit for bit; bf16-only x and m read as stored and dm bf16-only under bf16 precision; x's
// gradient so far summed in by the kernel (no Add); the model's --block sas and sas-p run it with the loss and gradients
// of --fused off, and sas-p's backward has no Add of the residual stream's shape (its MLP runs first); bad inputs fail
// with the kernel's name.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import type { CudaBackend } from '../../backend.ts';
import { atMatmulPrecision, bf16OnlyAndFloat32, checkModelKernels, describeOrSkip, kernelsRun, random, storedInBf16, targets,
  useBackend } from '../../../test/cuda_harness.ts';
import { SHAPED_MIX, SHAPED_MIX_GRAD } from './shaped_mix.ts';

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

const randoms = (n: number, offset = 0) => Float32Array.from({ length: n }, () => offset + 4 * random() - 2);

interface Problem { x: Float32Array; m: Float32Array; coef: Float32Array; dy: Float32Array; doc: Int32Array; shape: number[]; window: number }

function problem({ shape, window, docEvery, offset = 0 }: Case): Problem {
  const n = tf.util.sizeFromShape(shape);
  return {
    x: randoms(n, offset), m: randoms(n), dy: randoms(n), doc: randomDocIds(shape[0], shape[1], docEvery), shape, window,
    coef: Float32Array.from({ length: 3 * shape[2] }, () => 0.5 + random()),  // α, β, γ in [0.5, 1.5)
  };
}

/** The definition in float64: y = α·x + β·m − γ·mean (mean by prefix sums), dx = α·dy − γ·S (S the adjoint of the mean:
 * a difference array, then prefix sums), dm = β·dy, dcoef = (Σ dy·x, Σ dy·m, −Σ dy·mean) per head; with each element's
 * scale (the sum of its terms' sizes) for the float32 bounds, and each coefficient sum's (Σ of its terms' sizes). */
function reference({ x, m, coef, dy, doc, shape: [B, Tn, H, h], window }: Problem) {
  const C = H * h, n = B * Tn * C;
  const y = new Float64Array(n), dx = new Float64Array(n), dm = new Float64Array(n), yScale = new Float64Array(n), dxScale = new Float64Array(n);
  const dcoef = new Float64Array(3 * H), dcoefScale = new Float64Array(3 * H);
  const lo = new Int32Array(Tn), prefix = new Float64Array(Tn + 1), diff = new Float64Array(Tn + 1);
  for (let b = 0; b < B; b++) {
    let start = 0;
    for (let t = 0; t < Tn; t++) {
      if (t > 0 && doc[b * Tn + t] !== doc[b * Tn + t - 1]) start = t;
      lo[t] = Math.max(start, t - window + 1);
    }
    for (let c = 0; c < C; c++) {
      const at = (t: number) => (b * Tn + t) * C + c, head = Math.floor(c / h);
      const [alpha, beta, gamma] = [coef[head], coef[H + head], coef[2 * H + head]];
      diff.fill(0);
      for (let t = 0; t < Tn; t++) {
        const i = at(t), size = t - lo[t] + 1;
        prefix[t + 1] = prefix[t] + x[i];
        const mean = (prefix[t + 1] - prefix[lo[t]]) / size;
        y[i] = alpha * x[i] + beta * m[i] - gamma * mean;
        yScale[i] = Math.abs(alpha * x[i]) + Math.abs(beta * m[i]) + Math.abs(gamma * mean);
        dm[i] = beta * dy[i];
        dcoef[head] += dy[i] * x[i];
        dcoef[H + head] += dy[i] * m[i];
        dcoef[2 * H + head] -= dy[i] * mean;
        dcoefScale[head] += Math.abs(dy[i] * x[i]);
        dcoefScale[H + head] += Math.abs(dy[i] * m[i]);
        dcoefScale[2 * H + head] += Math.abs(dy[i] * mean);
        diff[lo[t]] += dy[i] / size;
        diff[t + 1] -= dy[i] / size;
      }
      let S = 0;
      for (let s = 0; s < Tn; s++) {
        const i = at(s);
        S += diff[s];
        dx[i] = alpha * dy[i] - gamma * S;
        dxScale[i] = Math.abs(alpha * dy[i]) + Math.abs(gamma * S);
      }
    }
  }
  return { y, dx, dm, dcoef, yScale, dxScale, dcoefScale };
}

/** shapedMix's value and gradients of x, m and coef for dy on the current backend, and the kernels it ran. */
async function run(p: Problem) {
  const [x, m, dy] = [p.x, p.m, p.dy].map((v) => tf.tensor(v, p.shape)), coef = tf.tensor(p.coef, [3, p.shape[2]]);
  const docIds = tf.tensor2d(p.doc, [p.shape[0], p.shape[1]], 'int32'), ctx = new T.ForwardContext(docIds);
  const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => T.shapedMix(a, b, c, ctx, p.window);
  const both = () => tf.valueAndGrads(f)([x, m, coef], dy);
  const kernels = await kernelsRun(() => { const r = both(); return [r.value, ...r.grads]; });
  const { value, grads } = both();
  assert.deepEqual(value.shape, p.shape);
  const read = (t: tf.Tensor) => t.dataSync() as Float32Array;
  const out = { y: read(value), dx: read(grads[0]), dm: read(grads[1]), dcoef: read(grads[2]), kernels };
  tf.dispose([x, m, dy, coef, docIds, value, ...grads]);
  return out;
}

/** |got − want| ≤ tol·(1 + scale) everywhere (scale: the size of the terms summed into want). */
function close(label: string, got: ArrayLike<number>, want: ArrayLike<number>, scale: ArrayLike<number>, tol: number): void {
  assert.equal(got.length, want.length, `${label}: size`);
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol * (1 + scale[i]))) assert.fail(`${label}: differs at flat index ${i}: ${got[i]}, want ${want[i]}`);
  }
}

for (const target of targets) {
  describeOrSkip(`fused ShapedMix on ${target.name}`, target.skip, () => {
    const B = target.name;
    const CASES: Case[] = [
      { shape: [2, 24, 1, 5], window: 1, docEvery: 4 },
      { shape: [2, 24, 2, 3], window: 3, docEvery: 6 },  // windows shorter than most documents
      { shape: [3, 40, 1, 7], window: 12, docEvery: 5 },  // longer than most documents
      { shape: [2, 40, 3, 4], window: 9, docEvery: 10 },  // float4 on the GPU
      { shape: [1, 50, 2, 3], window: 50, docEvery: 0 },  // one document, the window the whole row
      { shape: [2, 30, 1, 3], window: 1000, docEvery: 8 },  // a window over T
      { shape: [1, 1, 1, 4], window: 5, docEvery: 3 },
      ...(target.name === 'cuda' ? [
        // rows of several walks (128 steps) and windows of whole chunks (32): every path of the kernels
        { shape: [2, 1000, 2, 20], window: 33, docEvery: 300 },
        { shape: [2, 1000, 5, 8], window: 777, docEvery: 150 },
        { shape: [3, 1000, 3, 11], window: 256, docEvery: 0 },
        { shape: [2, 2048, 2, 12], window: 1665, docEvery: 700 },
        { shape: [1, 4096, 6, 128], window: 1025, docEvery: 700 },  // the speedrun's heads
        { shape: [1, 33000, 2, 4], window: 32768, docEvery: 0, offset: 100 },
        { shape: [1, 33000, 2, 4], window: 1000, docEvery: 9000, offset: 100 },
      ] : []),
    ];

    it('y and the gradients of x, m and coef match the float64 definition and the composite on cpu (random documents and windows)', async () => {
      for (const c of CASES) {
        const p = problem(c), want = reference(p), label = `[${c.shape}] window ${c.window}, a document every ${c.docEvery || '∞'} tokens`;
        await useBackend(B);
        const fused = await run(p);
        assert.ok(fused.kernels.includes(SHAPED_MIX) && fused.kernels.includes(SHAPED_MIX_GRAD), `${label}: ran ${fused.kernels.join(', ')}`);
        // float32 products, sums and differences of fp64 window sums rounded once: a few ulps of the terms
        close(`${label}: y`, fused.y, want.y, want.yScale, 1e-6);
        close(`${label}: dx`, fused.dx, want.dx, want.dxScale, 1e-6);
        close(`${label}: dm`, fused.dm, want.dm, want.dm.map(Math.abs), 1e-7);
        close(`${label}: dcoef`, fused.dcoef, want.dcoef, want.dcoefScale, 1e-6);
        await tf.setBackend('cpu');
        const composite = await run(p);
        assert.ok(!composite.kernels.includes(SHAPED_MIX), `${label}: the composite ran ${composite.kernels.join(', ')}`);
        // fp32 trees of at most 2·log2(window) levels for the mean (windowSum's bound); float32 sums for dcoef
        close(`${label}: composite y`, composite.y, want.y, want.yScale, 1e-5);
        close(`${label}: composite dx`, composite.dx, want.dx, want.dxScale, 1e-5);
        close(`${label}: composite dcoef`, composite.dcoef, want.dcoef, want.dcoefScale, 1e-5);
        close(`${label}: y, fused vs composite`, fused.y, composite.y, want.yScale, 2e-5);
        close(`${label}: dx, fused vs composite`, fused.dx, composite.dx, want.dxScale, 2e-5);
      }
    });

    it('two runs agree bit for bit', async () => {
      await useBackend(B);
      const shape = target.name === 'cuda' ? [2, 4096, 6, 128] : [2, 60, 2, 4];
      const p = problem({ shape, window: Math.floor(shape[1] / 2) + 1, docEvery: shape[1] / 3 });
      const [first, second] = [await run(p), await run(p)];
      for (const k of ['y', 'dx', 'dm', 'dcoef'] as const) assert.deepEqual(second[k], first[k], k);
    });

    it('bf16-only x and m (the norm\'s and the attention\'s outputs under bf16 precision) are read as stored, and dm is bf16-only', async () => {
      await useBackend(B);
      const p = problem({ shape: [2, 40, 2, 8], window: 7, docEvery: 9 }), [b, t, H] = p.shape;
      const [xs, x32] = bf16OnlyAndFloat32(tf.tensor(p.x, p.shape)), [ms, m32] = bf16OnlyAndFloat32(tf.tensor(p.m, p.shape));
      const coef = tf.tensor(p.coef, [3, H]), dy = tf.tensor(p.dy, p.shape), docIds = tf.tensor2d(p.doc, [b, t], 'int32');
      try {
        const [y, dx, dm, dcoef] = atMatmulPrecision('bf16', () => {
          const out = T.shapedMix(xs, ms, coef, new T.ForwardContext(docIds), p.window);
          const grads = tf.engine().runKernel(SHAPED_MIX_GRAD, { dy, x: xs, m: ms, coef, docIds }, { window: p.window }) as tf.Tensor[];
          return [out, ...grads];
        });
        assert.ok(storedInBf16(xs) && storedInBf16(ms), 'ShapedMix and its gradient made no float32 copy of x or m');
        assert.ok(storedInBf16(dm), 'dm is stored in bf16 only');
        // against the float32 twins of the bf16 values at float32 precision: the same sums, dm rounded to bf16
        const [y32, dx32, dm32, dcoef32] = [T.shapedMix(x32, m32, coef, new T.ForwardContext(docIds), p.window),
          ...tf.engine().runKernel(SHAPED_MIX_GRAD, { dy, x: x32, m: m32, coef, docIds }, { window: p.window }) as tf.Tensor[]];
        assert.deepEqual(y.dataSync(), y32.dataSync(), 'y');
        assert.deepEqual(dx.dataSync(), dx32.dataSync(), 'dx');
        assert.deepEqual(dcoef.dataSync(), dcoef32.dataSync(), 'dcoef');
        assert.deepEqual(dm.dataSync(), T.roundToBf16(dm32).dataSync(), 'dm: β·dy rounded to bf16');
        tf.dispose([y, dx, dm, dcoef, y32, dx32, dm32, dcoef32]);
      } finally {
        tf.dispose([xs, x32, ms, m32, coef, dy, docIds]);
      }
    });

    it('x\'s gradient so far is summed in by the kernel (no Add), as tfjs\'s Add would', async () => {
      await useBackend(B);
      const p = problem({ shape: [2, 30, 3, 4], window: 6, docEvery: 7 }), [b, t, H] = p.shape;
      const [x, m, dy, acc] = [p.x, p.m, p.dy, randoms(p.x.length)].map((v) => tf.tensor(v, p.shape));
      const coef = tf.tensor(p.coef, [3, H]), docIds = tf.tensor2d(p.doc, [b, t], 'int32'), attrs = { window: p.window };
      const ctx = new T.ForwardContext(docIds);
      try {
        const [plain] = tf.engine().runKernel(SHAPED_MIX_GRAD, { dy, x, m, coef, docIds }, attrs) as tf.Tensor[];
        const [summed] = tf.engine().runKernel(SHAPED_MIX_GRAD, { dy, x, m, coef, docIds, accumulated: acc }, attrs) as tf.Tensor[];
        assert.deepEqual(Array.from(summed.dataSync()), Array.from(tf.add(acc, plain).dataSync()), 'accumulated + dx');
        // x read by two mixes: the outer's gradient of x comes first, the inner's kernel adds it (no Add of x's shape)
        const f = (v: tf.Tensor) => T.shapedMix(v, T.shapedMix(v, m, coef, ctx, p.window), coef, ctx, p.window);
        let dx: tf.Tensor | null = null;
        const profile = await tf.profile(() => { dx = tf.grad(f)(x, dy); return dx; });
        const adds = profile.kernels.filter((k) => k.name === 'Add' && k.inputShapes[0]?.join() === p.shape.join()).length;
        assert.equal(adds, 0, `Adds of x's shape in the backward: ${adds}`);
        await tf.setBackend('cpu');
        const cpuCtx = new T.ForwardContext(tf.tensor2d(p.doc, [b, t], 'int32'));
        const [mc, coefc] = [tf.tensor(p.m, p.shape), tf.tensor(p.coef, [3, H])];
        const want = tf.grad((v: tf.Tensor) => T.shapedMix(v, T.shapedMix(v, mc, coefc, cpuCtx, p.window), coefc, cpuCtx, p.window))(
          tf.tensor(p.x, p.shape), tf.tensor(p.dy, p.shape));
        const scale = (want.dataSync() as Float32Array).map((v) => 10 * (1 + Math.abs(v)));
        close('dx against the composite on cpu', dx!.dataSync() as Float32Array, want.dataSync() as Float32Array, scale, 1e-5);
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
        await checkModelKernels(cfg, [0, 5, 16, 27], { [SHAPED_MIX]: 2, [SHAPED_MIX_GRAD]: 2 });
      });
    }

    it('--block sas-p\'s backward sums its normed input\'s gradients in the kernels: no Add of the residual stream\'s shape', async () => {
      await useBackend(B);
      const cfg = T.resolveConfig('tiny', {
        block: 'sas-p', vocabSize: 64, bosToken: 63, numLayers: 2, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 2, noAttnLayers: [],
        noMlpLayers: [], seqLen: 16, windowBlock: 4, windowSchedule: [2], windowPattern: 'SL', valWindow: 2,
      }).cfg;
      const m = T.createModel(cfg), tokens = Int32Array.from({ length: 32 }, (_, i) => (i % 11 === 0 ? cfg.bosToken : Math.floor(random() * 60)));
      const batch = T.toDevice({ inputs: tokens, targets: tokens.map((t) => (t * 7) % 60), B: 2, T: 16 }, cfg.bosToken);
      try {
        const profile = await tf.profile(() => {
          const r = tf.variableGrads(() => T.modelLoss(m, batch, T.attnScheduleAt(2, T.initRope(cfg), cfg), 'mean'));
          return [r.value, ...Object.values(r.grads)];
        });
        const adds = profile.kernels.filter((k) => k.name === 'Add' && k.inputShapes[0]?.join() === [2, 16, cfg.modelDim].join());
        assert.equal(adds.length, 0, `Adds of [2,16,${cfg.modelDim}]: ${adds.length}`);
      } finally {
        T.disposeBatch(batch);
        T.disposeModel(m);
      }
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const x = tf.zeros([2, 5, 2, 4]), coef = tf.zeros([3, 2]), docIds = tf.zeros([2, 5], 'int32');
        const run = (kernel: string, inputs: tf.NamedTensorMap, window: unknown = 3) => () => tf.engine().runKernel(kernel, inputs, { window } as tf.NamedAttrMap);
        assert.throws(run(SHAPED_MIX, { x: tf.zeros([10, 8]), m: tf.zeros([10, 8]), coef, docIds }), /kernel ShapedMix\(.*ShapedMix: x must be \[B,T,H,h\], got float32\[10,8\]/);
        assert.throws(run(SHAPED_MIX, { x, m: tf.zeros([2, 5, 2, 3]), coef, docIds }), /ShapedMix: m float32\[2,5,2,3\] must have x's shape \[2,5,2,4\]/);
        assert.throws(run(SHAPED_MIX, { x, m: x, coef: tf.zeros([2, 2]), docIds }), /ShapedMix: coef must be \[3,2\] \(α, β, γ per head\), got float32\[2,2\]/);
        assert.throws(run(SHAPED_MIX, { x, m: x, coef, docIds: tf.zeros([2, 5]) }), /ShapedMix: docIds must be int32, got float32\[2,5\]/);
        assert.throws(run(SHAPED_MIX, { x, m: x, coef, docIds: tf.zeros([2, 4], 'int32') }), /ShapedMix: docIds must be \[2,5\], got int32\[2,4\]/);
        assert.throws(run(SHAPED_MIX, { x, m: x, coef }), /ShapedMix: input docIds is missing/);
        assert.throws(run(SHAPED_MIX, { x, m: x, coef, docIds }, 0), /ShapedMix: attr window must be a positive integer, got 0/);
        assert.throws(run(SHAPED_MIX, { x, m: x, coef, docIds }, 2.5), /ShapedMix: attr window must be a positive integer, got 2.5/);
        assert.throws(run(SHAPED_MIX_GRAD, { dy: x, x, m: x, coef, docIds, accumulated: tf.zeros([2, 5, 2, 2]) }), /ShapedMixGrad: accumulated float32\[2,5,2,2\] must have dy's shape \[2,5,2,4\]/);
        assert.throws(run(SHAPED_MIX_GRAD, { dy: tf.zeros([2, 5, 2, 4], 'int32'), x, m: x, coef, docIds }), /ShapedMixGrad: dy must be float32, got int32\[2,5,2,4\]/);
      });
    });
  });
}
