// The model of train_gpt.ts on the cpu backend: every architectural option has a correct gradient
// (finite differences), changes the output when turned on, and is causal (no future token and no
// earlier document reaches an output). Also the attention score functions against their formulas,
// the Muon orthogonalisation, the schedules and YaRN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { Matrix, SingularValueDecomposition } from 'ml-matrix';
import * as T from '../train_gpt.ts';
import { ARCHITECTURES } from './architectures.ts';
import { random, randomInt, tfSeed } from './seed.ts';

await tf.setBackend('cpu');

// A micro model with every option off; each case below turns options on.
const BOS = 63;
const OFF: Partial<T.Config> = {
  vocabSize: 64, bosToken: BOS, numLayers: 4, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 2,
  noAttnLayers: [], noMlpLayers: [], skip: 'none', blockLambdas: false, canon: 'none', valueEmbeds: 0, smear: false,
  attnGate: false, backout: false, logitCap: 'none', qkNorm: false, rotary: 'none', seqLen: 16,
  windowBlock: 4, windowSchedule: [2], windowPattern: 'SLSL', valWindow: 2, backoutLayer: 2,
};
const config = (over: Partial<T.Config>) => T.resolveConfig('tiny', { ...OFF, ...over }).cfg;

// Each architecture option (./architectures.ts) that OFF lacks (skip none is OFF's own), and each component of the
// speedrun block on its own.
const CASES: [string, Partial<T.Config>][] = [
  ...ARCHITECTURES.filter(([, over]) => Object.entries(over).some(([k, v]) => OFF[k as keyof T.Config] !== v)),
  ['skip 1-3', { skip: '1-3' }],
  ['block lambdas', { blockLambdas: true }],
  ['canon A', { canon: 'A' }],
  ['canon B', { canon: 'B' }],
  ['canon C', { canon: 'C' }],
  ['canon D', { canon: 'D' }],
  ['value embeddings', { valueEmbeds: 1 }],
  ['smear', { smear: true }],
  ['attention gate', { attnGate: true }],
  ['backout', { backout: true }],
  ['logit cap sigmoid', { logitCap: 'sigmoid' }],
  ['logit cap tanh', { logitCap: 'tanh', logitCapScale: 2 }],
  ['qk-norm', { qkNorm: true }],
  ['rotary half', { rotary: 'half' }],
  ['rotary full', { rotary: 'full' }],
  ['null and MLP-only layers', { noAttnLayers: [0, 2], noMlpLayers: [0] }],
  ['speedrun defaults', {
    skip: '1-3', blockLambdas: true, valueEmbeds: 1, smear: true, attnGate: true, backout: true, logitCap: 'sigmoid',
    qkNorm: true, rotary: 'half', noAttnLayers: [0], noMlpLayers: [0],
  }],
];

/** Two rows of 16 tokens: row 0 holds two documents (a BOS at 0 and at 9), row 1 one. */
function tokens(): number[][] {
  const row = () => Array.from({ length: 16 }, () => randomInt(0, BOS - 2));
  const a = row(), b = row();
  a[0] = BOS; a[9] = BOS; b[0] = BOS;
  return [a, b];
}

const schedule = (cfg: T.Config) => T.attnScheduleAt(2, T.initRope(cfg), cfg); // windows of 8 and 4 tokens

function batchOf(cfg: T.Config, rows: number[][]): T.Batch {
  const flat = rows.flat();
  const targets = flat.map(() => randomInt(0, BOS - 2));
  return T.toDevice({ inputs: Int32Array.from(flat), targets: Int32Array.from(targets), B: rows.length, T: rows[0].length }, cfg.bosToken);
}

/** Puts every parameter off its initial value (zero-initialised projections would hide gradients). */
function randomize(m: T.Model): void {
  for (const v of m.params.values()) tf.tidy(() => v.assign(v.add(tf.randomNormal(v.shape, 0, 0.2, 'float32', tfSeed()))));
}

function logits(m: T.Model, rows: number[][]): Float32Array {
  return tf.tidy(() => {
    const b = batchOf(m.cfg, rows);
    return T.headLogits(m, T.trunk(m, b.inputs, b.docIds, schedule(m.cfg))).dataSync() as Float32Array;
  });
}

/** Largest |a−b| over the logits of token positions [from, to) of one row. */
function maxDiff(a: Float32Array, b: Float32Array, row: number, from: number, to: number, V: number): number {
  let d = 0;
  for (let t = from; t < to; t++) for (let v = 0; v < V; v++) d = Math.max(d, Math.abs(a[(row * 16 + t) * V + v] - b[(row * 16 + t) * V + v]));
  return d;
}

for (const [name, over] of CASES) {
  test(`${name}: gradients match finite differences for every parameter`, () => {
    const cfg = config(over);
    const m = T.createModel(cfg);
    randomize(m);
    const batch = batchOf(cfg, tokens());
    const sched = schedule(cfg);
    const loss = () => T.modelLoss(m, batch, sched, 'mean');
    const { grads } = tf.variableGrads(loss);
    const eps = 3e-3; // some directions curve sharply (sas's β_FF): a small step, float32 rounding allowed for below
    for (const [pname, v] of m.params) {
      const g = grads[v.name];
      assert.ok(g, `${name}: no gradient for ${pname}`);
      const original = v.clone();
      // Softpick is a step function of the score where a query has a single key (its document's first
      // token), relu and |·| have kinks, and some directions curve sharply (sas's β_FF): when the central
      // difference changes with the step size, or the one-sided differences disagree by more than curvature
      // explains (a kink inside the step, which the central difference averages over whatever the step), each
      // by more than float32 rounding, another random direction is drawn with a smaller step.
      let checked = false;
      for (let attempt = 0; attempt < 6 && !checked; attempt++) {
        const u = tf.tidy(() => { const r = tf.randomNormal(v.shape, 0, 1, 'float32', tfSeed()); return r.div(r.norm()); });
        const analytic = tf.tidy(() => g.mul(u).sum().dataSync()[0]);
        const at = (s: number) => tf.tidy(() => { v.assign(original.add(u.mul(s))); return loss().dataSync()[0]; });
        const step = eps / 2 ** attempt;
        const [f0, fPlus, fMinus, fPlus3, fMinus3] = [at(0), at(step), at(-step), at(3 * step), at(-3 * step)];
        const numeric = (fPlus - fMinus) / (2 * step), coarse = (fPlus3 - fMinus3) / (6 * step);
        // forward − backward is f''·step on a smooth curve and the slope's jump at a kink. Curvature alone outgrows
        // any share of the slope: along sas's β_FF f'' reaches ~50 where f' is ~0.01, and β_FF has one element, so
        // every attempt draws the same line (u = ±1) and a small enough step drowns in rounding. Subtracting the
        // curvature over 3·step, (f(3s) − 2f(0) + f(−3s)) / 9s, cancels f''·step and keeps 2/3 of a kink's jump.
        const forward = (fPlus - f0) / step, backward = (f0 - fMinus) / step;
        const kink = forward - backward - (fPlus3 - 2 * f0 + fMinus3) / (9 * step);
        v.assign(original);
        assert.ok(Number.isFinite(analytic), `${name}: ${pname} gradient is ${analytic}`);
        // The difference quotient of float32 losses moves in steps of ulp(loss)/step: at the smaller steps of the
        // later attempts a few of those exceed a fixed bound (sas-p's β_FF once: -0.01411 vs -0.01526 = 1000 ulps/2·step).
        // Rounding is no kink: one ulp in each loss moves numeric − coarse by up to 4/3 of such steps and kink by up
        // to 4 (sas's β_FF once had f' ≈ 0.001 and f''' ≈ 400, smooth enough only at the smaller steps, and there
        // numeric and coarse differed by one step of numeric's). The kink bound's floor is small: at 1e-3 a kink of
        // softpick's relu with a slope jump of ~0.004 near the step's end passed as smooth (analytic 0.0063 against a
        // central difference of 0.0083, TEST_SEED=3458795697).
        const resolutionAt = (s: number) => 2 ** (Math.floor(Math.log2(Math.abs(f0))) - 23) / s, resolution = resolutionAt(step);
        const differ = (a: number, b: number, rel: number, abs: number) => Math.abs(a - b) > rel * Math.max(Math.abs(a), Math.abs(b)) + abs;
        if (differ(numeric, coarse, 0.05, 2e-4 + 2 * resolution)
          || Math.abs(kink) > 0.1 * Math.max(Math.abs(forward), Math.abs(backward)) + 2e-4 + 4 * resolution) {
          u.dispose();
          continue;
        }
        // A slope jump close to the point and small beside the slope passes the tests above, and the central
        // difference's error then falls only linearly with the step: softpick's sa_lambdas once gave 0.0201 at 3·step,
        // 0.0215 at step, 0.0224 at step/3 and 0.0230 at step/10 against an analytic 0.0233 (TEST_SEED=2954655170).
        // Where the difference at step misses, the one at step/3 decides (its rounding allowed for); a wrong gradient
        // misses at every step.
        const matches = (fd: number, s: number) => !differ(analytic, fd, 0.03, 6e-4 + 2 * resolutionAt(s));
        let fine = NaN;
        if (!matches(numeric, step)) {
          fine = (at(step / 3) - at(-step / 3)) / (2 * step / 3);
          v.assign(original);
        }
        u.dispose();
        assert.ok(matches(numeric, step) || matches(fine, step / 3),
          `${name}: ${pname}: analytic ${analytic} vs finite difference ${numeric} (step ${step}) and ${fine} (step ${step / 3})`);
        checked = true;
      }
      assert.ok(checked, `${name}: ${pname}: every direction crossed a kink`);
      original.dispose();
    }
    tf.dispose(Object.values(grads));
    T.disposeBatch(batch);
    T.disposeModel(m);
  });

  test(`${name}: causal, and no information crosses a document boundary`, () => {
    const cfg = config(over);
    const m = T.createModel(cfg);
    randomize(m);
    const V = cfg.vocabSize;
    const rows = tokens();
    const base = logits(m, rows);
    // A future token (row 1, position 12) reaches no earlier position.
    const future = rows.map((r) => [...r]);
    future[1][12] = (future[1][12] + 1) % (BOS - 1);
    const f = logits(m, future);
    assert.ok(maxDiff(base, f, 1, 0, 12, V) < 1e-5, `${name}: position 12 leaked into earlier positions`);
    assert.ok(maxDiff(base, f, 1, 12, 16, V) > 1e-4, `${name}: changing a token changed nothing after it`);
    // A token of row 0's first document (position 3) reaches nothing in its second document (9..15).
    const earlier = rows.map((r) => [...r]);
    earlier[0][3] = (earlier[0][3] + 1) % (BOS - 1);
    const e = logits(m, earlier);
    assert.ok(maxDiff(base, e, 0, 9, 16, V) < 1e-5, `${name}: information crossed the document boundary`);
    assert.ok(maxDiff(base, e, 0, 3, 9, V) > 1e-4, `${name}: the change did not reach its own document`);
    assert.ok(maxDiff(base, e, 1, 0, 16, V) < 1e-5, `${name}: information crossed between rows`);
    T.disposeModel(m);
  });

  if (name === 'speedrun defaults' || name === 'null and MLP-only layers') continue;
  test(`${name}: turning it on changes the output`, () => {
    const off = T.createModel(config({})), on = T.createModel(config(over));
    randomize(off);
    randomize(on);
    for (const [pname, v] of off.params) {
      const w = on.params.get(pname);
      if (w && w.shape.join() === v.shape.join()) w.assign(v); // shared weights equal: only the option differs
    }
    const rows = tokens();
    const a = logits(off, rows), b = logits(on, rows);
    assert.ok(maxDiff(a, b, 0, 0, 16, 64) > 1e-3, `${name} left the output unchanged`);
    T.disposeModel(off);
    T.disposeModel(on);
  });
}

test('the sliding window: keys beyond the window reach no query', () => {
  const [B, Tn, H, h, W] = [1, 12, 2, 8, 4];
  // q ≥ 0 and the positive bump below make the bumped key's score clearly positive for every query: softpick
  // gives a key whose score is ≤ 0 no weight at all, so with a random q it was sometimes invisible (CI failed once).
  const normal = () => tf.randomNormal([B, Tn, H, h], 0, 1, 'float32', tfSeed());
  const q = normal().abs(), k = normal(), v = normal();
  const ctx = new T.ForwardContext(tf.zeros([B, Tn], 'int32'));
  for (const score of ['softmax', 'softpick', 'softmax1'] as const) {
    const y0 = T.attention(q, k, v, ctx, W, 0.3, score).arraySync() as number[][][][];
    const j = 3;
    const bump = tf.oneHot([j], Tn).reshape([1, Tn, 1, 1]).mul(5);
    const y1 = T.attention(q, k.add(bump), v.add(bump), ctx, W, 0.3, score).arraySync() as number[][][][];
    for (let i = 0; i < Tn; i++) {
      const diff = Math.max(...y0[0][i].flat().map((x, n) => Math.abs(x - y1[0][i].flat()[n])));
      const inWindow = i >= j && i - j < W;
      if (inWindow) assert.ok(diff > 1e-4, `${score}: query ${i} should see key ${j}`);
      else assert.ok(diff < 1e-6, `${score}: query ${i} saw key ${j} outside its window of ${W}`);
    }
  }
  ctx.dispose();
});

test('softmax, softpick and softmax1 match their formulas, with masked, fully masked and all-negative rows', () => {
  const R = 6, Tn = 7;
  const s = Array.from({ length: R }, () => Array.from({ length: Tn }, () => (random() - 0.5) * 6));
  s[3] = s[3].map((x) => -Math.abs(x) - 0.1); // all negative
  const mask = s.map(() => Array.from({ length: Tn }, () => (random() < 0.7 ? 1 : 0)));
  mask[0] = mask[0].map(() => 0); // fully masked
  mask[3] = mask[3].map(() => 1);
  mask[1][0] = 1;
  const keep = tf.tensor2d(mask), bias = keep.sub(1).mul(1e9);
  const st = tf.tensor2d(s);
  for (const kind of ['softmax', 'softpick', 'softmax1'] as const) {
    const p = T.attentionProbs(st, keep, bias, kind).arraySync() as number[][];
    for (let r = 0; r < R; r++) {
      const M = mask[r], e = s[r].map(Math.exp);
      const allowed = M.some((x) => x === 1);
      let expect: number[];
      if (kind === 'softmax') {
        const Z = e.reduce((a, x, j) => a + x * M[j], 0);
        expect = e.map((x, j) => (M[j] ? x / Z : 0));
      } else if (kind === 'softpick') {
        // relu(e^s − 1) / (Σ|e^s − 1| + ε); ε is 1e-6 in the frame shifted by the row max m, so ε·e^m here.
        const m = Math.max(...s[r].filter((_, j) => M[j]));
        const den = e.reduce((a, x, j) => a + Math.abs(x - 1) * M[j], 0) + 1e-6 * Math.exp(m);
        expect = e.map((x, j) => (M[j] ? Math.max(0, x - 1) / den : 0));
      } else {
        const Z = 1 + e.reduce((a, x, j) => a + x * M[j], 0);
        expect = e.map((x, j) => (M[j] ? x / Z : 0));
      }
      if (!allowed && kind === 'softmax') continue; // an empty softmax row is undefined; attention never has one
      for (let j = 0; j < Tn; j++) assert.ok(Math.abs(p[r][j] - expect[j]) < 1e-5, `${kind} row ${r} col ${j}: ${p[r][j]} vs ${expect[j]}`);
      if (!allowed) assert.ok(p[r].every((x) => x === 0), `${kind}: a fully masked row must be all zeros`);
    }
    if (kind === 'softpick') assert.ok(p[3].every((x) => x === 0), 'softpick: an all-negative row gives all zeros');
    if (kind === 'softmax1') assert.ok(p[3].reduce((a, x) => a + x, 0) < 1, 'softmax1: rows sum below 1');
  }
});

test("softpick's gradient matches the closed form of model.md", () => {
  const Tn = 9;
  const s = tf.tensor2d([Array.from({ length: Tn }, () => (random() - 0.4) * 4)]);
  const keep = tf.ones([1, Tn]), bias = tf.zeros([1, Tn]);
  const g = tf.randomNormal([1, Tn], 0, 1, 'float32', tfSeed());
  const grad = tf.grad((x: tf.Tensor) => T.attentionProbs(x, keep, bias, 'softpick').mul(g).sum())(s).dataSync();
  const sv = s.dataSync(), gv = g.dataSync();
  const a = Array.from(sv, Math.exp);
  const S = a.reduce((acc, x) => acc + Math.abs(x - 1), 0);
  const p = a.map((x) => Math.max(0, x - 1) / S);
  const gp = p.reduce((acc, x, i) => acc + x * gv[i], 0);
  for (let j = 0; j < Tn; j++) {
    const expect = (a[j] / S) * (gv[j] * (sv[j] > 0 ? 1 : 0) - Math.sign(sv[j]) * gp);
    assert.ok(Math.abs(grad[j] - expect) < 1e-4 * Math.max(1, Math.abs(expect)), `dL/ds_${j}: ${grad[j]} vs ${expect}`);
  }
});

function singularValues(x: tf.Tensor2D): number[] {
  return new SingularValueDecomposition(new Matrix(x.arraySync()), { autoTranspose: true }).diagonal;
}

/** A random matrix with singular values in [0.3, 3]: Newton-Schulz leaves near-zero ones near zero by design. */
function wellConditioned(m: number, n: number): tf.Tensor2D {
  const r = Math.min(m, n);
  const [U] = tf.linalg.qr(tf.randomNormal([m, r], 0, 1, 'float32', tfSeed()) as tf.Tensor2D);
  const [V] = tf.linalg.qr(tf.randomNormal([n, r], 0, 1, 'float32', tfSeed()) as tf.Tensor2D);
  return tf.matMul(U.mul(tf.randomUniform([1, r], 0.3, 3, 'float32', tfSeed())), V, false, true);
}

test("Muon's orthogonalised update has singular values near 1 (Newton-Schulz and Polar Express), for wide and tall matrices", () => {
  for (const kind of ['ns5', 'polar'] as const) {
    for (const shape of [[24, 40], [40, 24], [32, 32]] as [number, number][]) {
      const G = wellConditioned(...shape);
      const O = T.orthogonalize(G, kind);
      assert.deepEqual(O.shape, shape);
      const sv = singularValues(O);
      // The quintic iterations do not converge to exactly 1: they push every singular value into a band
      // around it (≈ 0.68-1.13 for the Newton-Schulz coefficients), which is all Muon needs.
      for (const x of sv) assert.ok(x > 0.6 && x < 1.25, `${kind} ${shape}: singular value ${x}`);
      // And it points along G: ⟨G, O⟩ equals the nuclear norm of G to within the band.
      const inner = tf.sum(G.mul(O)).dataSync()[0], nuclear = singularValues(G).reduce((a, b) => a + b, 0);
      assert.ok(inner > 0.6 * nuclear && inner < 1.25 * nuclear, `${kind} ${shape}: <G,O> ${inner} vs nuclear norm ${nuclear}`);
    }
  }
});

test('a Muon step moves each q/k/v block of a merged projection by an orthogonal matrix times lr·scale', () => {
  // Plain Muon (the 2025-08 recipe's): NorMuon's per-neuron scaling and the weight decay are tested in recipe.test.ts.
  const cfg = config({ muonMomentumStart: 0, muonMomentum: 0, cooldownFrac: 0, optimizer: 'muon', weightDecay: 0 });
  const m = T.createModel(cfg);
  const st = T.createOptimizerState(m);
  const grads = new Map([...m.params].map(([n, v]) => [n, tf.randomNormal(v.shape, 0, 1, 'float32', tfSeed())]));
  const d = cfg.modelDim;
  grads.set('layer.1.qkv', tf.concat([wellConditioned(d, d), wellConditioned(d, d), wellConditioned(d, d)], 1));
  grads.set('layer.1.w1', wellConditioned(d, 4 * d));
  const before = m.params.get('layer.1.qkv')!.clone(), w1Before = m.params.get('layer.1.w1')!.clone();
  T.optimizerStep(m, st, grads, 0);
  const delta = before.sub(m.params.get('layer.1.qkv')!).div(cfg.muonLr) as tf.Tensor2D;
  for (const block of tf.split(delta, 3, 1)) {
    for (const x of singularValues(block as tf.Tensor2D)) assert.ok(x > 0.6 && x < 1.25, `qkv block singular value ${x}`);
  }
  // w1 is [d, 4d]: as a PyTorch [out, in] matrix it is tall, so its update is scaled by sqrt(4d/d) = 2.
  const dw1 = w1Before.sub(m.params.get('layer.1.w1')!).div(cfg.muonLr * 2) as tf.Tensor2D;
  for (const x of singularValues(dw1)) assert.ok(x > 0.6 && x < 1.25, `w1 singular value ${x}`);
  T.disposeOptimizerState(st);
  T.disposeModel(m);
});

test('schedules: lr cooldown, Muon momentum warm-up, window stages, YaRN', () => {
  // No extension steps here (the record's schedules, with them, are tested in recipe.test.ts).
  const cfg = config({ numIterations: 100, extensionFrac: 0, cooldownFrac: 0.4, cooldownFloor: 0.1, muonWarmupSteps: 10, muonCooldownSteps: 0, windowSchedule: [1, 2, 3, 4] });
  assert.equal(T.lrScale(0, cfg), 1);
  assert.equal(T.lrScale(60, cfg), 1);
  assert.ok(Math.abs(T.lrScale(80, cfg) - 0.55) < 1e-12);
  assert.ok(Math.abs(T.lrScale(99, cfg) - 0.1225) < 1e-12, 'the last step is 1 % of the cooldown above the floor');
  assert.equal(T.muonMomentumAt(0, cfg), cfg.muonMomentumStart);
  assert.equal(T.muonMomentumAt(10, cfg), cfg.muonMomentum);
  assert.deepEqual([0, 24, 25, 50, 99].map((s) => T.longWindowBlocks(s, cfg)), [1, 1, 2, 3, 4]);
  const rope = T.initRope(config({ rotary: 'half' }));
  assert.equal(rope.freqs[0], 1);
  assert.ok(Math.abs(rope.freqs[3] - 1 / 1024) < 1e-9);
  assert.ok(rope.freqs.slice(4).every((f) => f === 0), 'half the dims are stationary');
  const ext = T.yarnExtend(rope, 1024, 2048);
  assert.ok(Math.abs(ext.attnScale - rope.attnScale * (0.2 * Math.log(2) + 1)) < 1e-12);
  assert.ok(Math.abs(ext.freqs[0] - rope.freqs[0]) < 1e-6, 'fast frequencies (> 32 turns in the old window) are kept');
  const mid = T.yarnExtend(rope, 128, 256).freqs[0]; // 20.4 turns: between α = 1 and β = 32
  const w = (128 / (2 * Math.PI) - 1) / 31;
  assert.ok(Math.abs(mid - (0.5 + w * 0.5)) < 1e-6, `ramp: ${mid}`);
  assert.ok(Math.abs(ext.freqs[3] - rope.freqs[3] / 2) < 1e-9, 'slow frequencies are interpolated by old/new');
  const replay = T.ropeAt(60, { ...cfg, rotary: 'half', headDim: 16 });
  assert.equal(replay.version, 2, 'two window growths by step 60');
});

test('the shaped blocks\' [W_Q | W_K]: W_Q zero (A = I at init), W_K uniform, two column blocks for Muon', () => {
  for (const block of ['sas', 'sas-p'] as const) {
    const m = T.createModel(config({ block, seed: randomInt(0, 1e6) })), { modelDim: d, numHeads: H, headDim: h } = m.cfg;
    const bound = Math.sqrt(3) * 0.5 * d ** -0.5;
    const wks = m.plan.flatMap((lp, i) => (lp.attn ? [i] : [])).map((i) => {
      const name = `layer.${i}.wqk`, w = m.params.get(name)!;
      assert.deepEqual(w.shape, [d, 2 * H * h]);
      assert.deepEqual(m.info.get(name)!.split, [H * h, H * h], `${block}: Muon's column blocks`);
      const [wq, wk] = tf.tidy(() => tf.split(w, 2, 1).map((t) => Array.from(t.dataSync())));
      assert.ok(wq.every((x) => x === 0), `${block}, layer ${i}: W_Q zero`);
      const meanSquare = wk.reduce((a, x) => a + x * x, 0) / wk.length;  // b²/3 for Uniform(±b)
      assert.ok(wk.every((x) => Math.abs(x) < bound) && meanSquare > bound ** 2 / 4, `${block}, layer ${i}: W_K uniform in ±${bound}`);
      return wk;
    });
    assert.ok(wks.length >= 2);
    assert.notDeepEqual(wks[0], wks[1], `${block}: each layer's W_K drawn with a seed of its own`);
    T.disposeModel(m);
  }
});

test('--seed makes initialisation reproducible; a different seed gives a different model', () => {
  const params = (seed: number) => {
    const m = T.createModel(config({ seed, valueEmbeds: 1, smear: true }));
    const values = [...m.params.values()].map((v) => Array.from(v.dataSync()));
    T.disposeModel(m);
    return values;
  };
  const seed = randomInt(0, 1e6);
  const a = params(seed), b = params(seed), c = params(seed + 1);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a[0], c[0], 'the embedding differs between seeds');
});
