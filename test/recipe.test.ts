// The 2025-11 record's optimisers and schedules (../shared/reference/record-2025-11.md §4, §6, §7) in train_gpt.ts:
// NorMuon and the Adam cadence against float64 references written here from the spec, and `--describe --json`
// against the spec's own numbers. Random inputs are fresh each run: the seed is printed, TEST_SEED repeats it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import * as T from '../train_gpt.ts';
import { random, testSeed } from './seed.ts';

await tf.setBackend('cpu');
const REPO = fileURLToPath(new URL('..', import.meta.url));

const normals = (n: number, scale = 1) => Array.from({ length: n }, () => scale * Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random()));

type Mat = number[][]; // float64, row-major
const matrix = (rows: number, cols: number, flat: ArrayLike<number>): Mat => Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => flat[i * cols + j]));
const transpose = (a: Mat): Mat => a[0].map((_, j) => a.map((row) => row[j]));
const matmul = (a: Mat, b: Mat): Mat => a.map((row) => b[0].map((_, j) => row.reduce((s, x, k) => s + x * b[k][j], 0)));
const combine = (a: Mat, b: Mat, f: (x: number, y: number) => number): Mat => a.map((row, i) => row.map((x, j) => f(x, b[i][j])));
const scale = (a: Mat, s: number): Mat => a.map((row) => row.map((x) => x * s));
const frobenius = (a: Mat) => Math.sqrt(a.flat().reduce((s, x) => s + x * x, 0));

// Polar Express (§6.2 step 3), coefficients as the spec lists them.
const POLAR: [number, number, number][] = [
  [8.156554524902461, -22.48329292557795, 15.878769915207462],
  [4.042929935166739, -2.808917465908714, 0.5000178451051316],
  [3.8916678022926607, -2.772484153217685, 0.5060648178503393],
  [3.285753657755655, -2.3681294933425376, 0.46449024233003106],
  [2.3465413258596377, -1.7097828382687081, 0.42323551169305323],
];
function polarExpress(a: Mat): Mat {
  const tall = a.length > a[0].length;
  let X = scale(tall ? transpose(a) : a, 1 / (1.02 * frobenius(a) + 1e-6));
  for (const [pa, pb, pc] of POLAR) {
    const S = matmul(X, transpose(X));
    const B = combine(scale(S, pb), scale(matmul(S, S), pc), (x, y) => x + y);
    X = combine(scale(X, pa), matmul(B, X), (x, y) => x + y);
  }
  return tall ? transpose(X) : X;
}

/** The record's NorMuon on one matrix P [rows, cols] (as this port stores it: [in, out]), one step, in float64. */
class NorMuonReference {
  M: Mat;
  v: number[];
  perRow: boolean;
  /** Entries of the last step whose update O was within float32 rounding of 0 (|O| ≤ 1e-4·rms O): there the cautious
   * mask (O·P ≥ 0) may go either way in float32, a jump of η·λ·P; P after the step with the decay and without. */
  ambiguous: { i: number; j: number; withDecay: number; without: number }[] = [];
  constructor(public P: Mat) {
    this.M = scale(P, 0);
    // "if rows ≥ cols, one value per row; else one value per column" (§6.2 step 4.2)
    this.perRow = P.length >= P[0].length;
    this.v = Array(this.perRow ? P.length : P[0].length).fill(0);
  }
  step(G: Mat, mu: number, eta: number, lambda: number): void {
    this.M = combine(scale(this.M, mu), scale(G, 1 - mu), (x, y) => x + y); // 1. momentum
    const U = combine(scale(G, 1 - mu), scale(this.M, mu), (x, y) => x + y); //    Nesterov
    let O = polarExpress(U); // 3.
    const n0 = frobenius(O); // 4.
    const at = (i: number, j: number) => (this.perRow ? i : j);
    const sums = Array(this.v.length).fill(0);
    O.forEach((row, i) => row.forEach((x, j) => { sums[at(i, j)] += x * x; }));
    const count = this.perRow ? O[0].length : O.length;
    this.v = this.v.map((v, k) => 0.95 * v + 0.05 * (sums[k] / count));
    O = O.map((row, i) => row.map((x, j) => x / Math.sqrt(Math.max(this.v[at(i, j)], 1e-10))));
    O = scale(O, n0 / Math.max(frobenius(O), 1e-10));
    // 6. η_p = η·√max(1, out/in): the record's √max(1, rows/cols) of its [out, in] storage (c_fc's lr_mul 2).
    const etaP = eta * Math.sqrt(Math.max(1, this.P[0].length / this.P.length));
    const nearZero = 1e-4 * frobenius(O) / Math.sqrt(O.length * O[0].length);
    this.ambiguous = [];
    O.forEach((row, i) => row.forEach((o, j) => {
      const p = this.P[i][j];
      if (Math.abs(o) <= nearZero) this.ambiguous.push({ i, j, withDecay: p - etaP * (o + lambda * p), without: p - etaP * o });
    }));
    O = combine(O, this.P, (o, p) => o + (o * p >= 0 ? lambda * p : 0)); // 5. cautious weight decay
    this.P = combine(this.P, O, (p, o) => p - etaP * o);
  }
}

/** A model of one parameter, for optimizerStep. */
function oneParamModel(cfg: T.Config, shape: number[], values: number[], info: T.ParamInfo): T.Model {
  return { cfg, plan: [], skips: [], params: new Map([['w', tf.variable(tf.tensor(values, shape))]]), info: new Map([['w', info]]) };
}

const maxAbsDiff = (a: Mat, b: Mat) => Math.max(...a.flat().map((x, i) => Math.abs(x - b.flat()[i])));

test('NorMuon (momentum, Polar Express, per-neuron second moment, norm restored, cautious weight decay) matches a float64 reference', () => {
  const cfg = T.resolveConfig('speedrun', {}).cfg;
  // wide (one value per column), square (per row), tall (per row), and a q|k|v projection of three square blocks.
  for (const [rows, cols, split] of [[8, 20], [12, 12], [20, 8], [8, 24, [8, 8, 8]]] as [number, number, number[]?][]) {
    const init = normals(rows * cols, 0.05);
    const m = oneParamModel(cfg, [rows, cols], init, { opt: 'muon', lrMul: 1, split });
    const st = T.createOptimizerState(m);
    const blocks = (split ?? [cols]).map((c, b) => ({ c, at: (split ?? [cols]).slice(0, b).reduce((s, x) => s + x, 0) }));
    const refs = blocks.map(({ c, at }) => new NorMuonReference(matrix(rows, cols, init).map((row) => row.slice(at, at + c))));
    for (const step of [0, 1, 1500]) { // warm-up momentum, then the cooldown's lr and weight decay
      const g = normals(rows * cols);
      T.optimizerStep(m, st, new Map([['w', tf.tensor(g, [rows, cols])]]), step);
      const eta = cfg.muonLr * T.lrScale(step, cfg), lambda = 1.2 * eta;
      blocks.forEach(({ c, at }, b) => refs[b].step(matrix(rows, cols, g).map((row) => row.slice(at, at + c)), T.muonMomentumAt(step, cfg), eta, lambda));
      const got = matrix(rows, cols, m.params.get('w')!.dataSync());
      // Where the mask is decided by rounding (an update entry within float32 rounding of 0: TEST_SEED=2997848160 had
      // O = 2.4e-7 beside an rms of 0.22), either decision is right: the reference takes the one the optimiser took.
      blocks.forEach(({ at }, b) => refs[b].ambiguous.forEach(({ i, j, withDecay, without }) => {
        refs[b].P[i][j] = Math.abs(got[i][at + j] - withDecay) < Math.abs(got[i][at + j] - without) ? withDecay : without;
      }));
      const want = refs.map((r) => r.P).reduce((acc, P) => acc.map((row, i) => [...row, ...P[i]]), Array.from({ length: rows }, () => [] as number[]));
      const moved = maxAbsDiff(want, matrix(rows, cols, init));
      assert.ok(maxAbsDiff(got, want) < 2e-4 * moved, `${rows}×${cols}${split ? ' split' : ''} step ${step}: off by ${maxAbsDiff(got, want)} (moved ${moved}; TEST_SEED=${testSeed})`);
    }
    T.disposeOptimizerState(st);
    T.disposeModel(m);
  }
});

for (const every of [2, 3]) {
  test(`Adam steps only every ${every}${every === 2 ? 'nd (the odd steps)' : 'rd'} step, on the sum of the gradients since, with eps added to √v before the bias correction`, () => {
    const cfg = T.resolveConfig('speedrun', { bf16State: false, adamEvery: every }).cfg; // the float64 reference keeps float moments
    const n = 16, init = normals(n), steps = 2 * every + 1;
    const m = oneParamModel(cfg, [n], init, { opt: 'adam', lrMul: 5 });
    const st = T.createOptimizerState(m);
    // Gradients of the order of eps, where its placement shows.
    const grads = Array.from({ length: steps }, () => normals(n, 3e-8));
    let p = init.slice(), mom = Array(n).fill(0), v = Array(n).fill(0), t = 0;
    for (let step = 0; step < steps; step++) {
      const before = Array.from(m.params.get('w')!.dataSync());
      T.optimizerStep(m, st, new Map([['w', tf.tensor(grads[step])]]), step);
      const got = Array.from(m.params.get('w')!.dataSync());
      if ((step + 1) % every !== 0) {
        assert.deepEqual(got, before, `step ${step}: Adam moves only every ${every} steps`);
        continue;
      }
      t += 1;
      const lr = 0.008 * 5 * T.lrScale(step, cfg);
      // §6.4: the sum of the gradients of the steps since the last Adam step, this one's included
      const g = init.map((_, i) => grads.slice(step + 1 - every, step + 1).reduce((sum, gs) => sum + gs[i], 0));
      mom = mom.map((x, i) => 0.65 * x + 0.35 * g[i]);
      v = v.map((x, i) => 0.95 * x + 0.05 * g[i] ** 2);
      p = p.map((x, i) => x - lr * (Math.sqrt(1 - 0.95 ** t) / (1 - 0.65 ** t)) * mom[i] / (Math.sqrt(v[i]) + 1e-8)); // §6.3
      got.forEach((x, i) => assert.ok(Math.abs(x - p[i]) < 1e-6 + 1e-3 * Math.abs(p[i] - init[i]), `step ${step}, entry ${i}: ${x} vs ${p[i]} (TEST_SEED=${testSeed})`));
    }
    assert.equal(t, 2, 'two Adam steps');
    T.disposeOptimizerState(st);
    T.disposeModel(m);
  });
}

test('--describe --json gives the schedules of record-2025-11.md §4.2, §4.3 and §7', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'train_gpt.ts', '--describe', '--json', '--steps', '0,299,300,729,1093,1456,1457,1500,2000,2175,2176,2184,2185,2223,2224'],
    { cwd: REPO, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const d = JSON.parse(r.stdout) as ReturnType<typeof T.describeRun>;
  assert.equal(d.config.recipe, '2025-11');
  const at = new Map(d.steps.map((s) => [s.step, s]));
  const near = (got: number, want: number, tol: number, what: string) => assert.ok(Math.abs(got - want) <= tol, `${what}: ${got}, the spec says ${want}`);
  // §7: lr 1 up to 1092, then 0.1 + 1.8·(1 − s/2185), flat at 0.10018 in the extension.
  for (const [s, lr] of [[0, 1], [729, 1], [1093, 0.99959], [1500, 0.66430], [2000, 0.25240], [2184, 0.10082], [2185, 0.10018], [2224, 0.10018]]) {
    near(at.get(s)!.lr, lr, 5e-6, `lr at ${s}`);
    near(at.get(s)!.weightDecay, 0.036 * lr, 1e-6, `weight decay λ at ${s}`);
  }
  // §7: momentum 0.85 → 0.95 over 300 steps, 0.95 to 2175, then down to 0.852 at 2224.
  for (const [s, mu] of [[0, 0.85], [300, 0.95], [2175, 0.95], [2176, 0.948], [2224, 0.852]]) near(at.get(s)!.muonMomentum, mu, 1e-9, `momentum at ${s}`);
  // §4.3 windows (short, long) in blocks, W + 1 keys; §4.2 α after each YaRN.
  const stages: [number, [number, number], [number, number], number][] = [
    [0, [1, 3], [129, 385], 0.1], [729, [3, 7], [385, 897], 0.116946], [1456, [3, 7], [385, 897], 0.116946],
    [1457, [5, 11], [641, 1409], 0.127518], [2184, [5, 11], [641, 1409], 0.127518], [2185, [6, 13], [769, 1665], 0.131778],
  ];
  for (const [s, window, keys, alpha] of stages) {
    assert.deepEqual(at.get(s)!.window, window, `window at ${s}`);
    assert.deepEqual(at.get(s)!.windowKeys, keys, `keys at ${s}`);
    near(at.get(s)!.attnScale, alpha, 5e-7, `α at ${s}`);
  }
  // §6.4: Adam on odd steps only.
  assert.deepEqual([0, 299, 2223, 2224].map((s) => at.get(s)!.adamSteps), [false, true, true, false]);
  // §4.2–4.3: the final validation at long 20, short 6, with no further YaRN.
  assert.equal(d.finalValidation.step, 2225);
  assert.deepEqual(d.finalValidation.window, [6, 20]);
  assert.deepEqual(d.finalValidation.windowKeys, [769, 2561]);
  near(d.finalValidation.attnScale, 0.131778, 5e-7, 'α at the final validation');
});

test('the rotary frequencies after the three YaRN calls are those of §4.2', () => {
  const cfg = T.resolveConfig('speedrun', {}).cfg;
  const spec = [1.0, 0.79964, 0.63942, 0.50422, 0.35601, 0.25451, 0.17184, 0.11121, 0.073630, 0.050803, 0.036175, 0.026393,
    0.019625, 0.014811, 0.011310, 0.0087174, 0.0067691, 0.0052874, 0.0041495, 0.0032973, 0.0026366, 0.0021083,
    0.0016859, 0.0013481, 0.0010780, 8.6202e-4, 6.8930e-4, 5.5119e-4, 4.4076e-4, 3.5244e-4, 2.8183e-4, 2.2536e-4];
  const rope = T.ropeAt(cfg.numIterations - 1, cfg);
  assert.equal(rope.version, 3, 'YaRN at 729, 1457 and 2185');
  spec.forEach((w, j) => assert.ok(Math.abs(rope.freqs[j] - w) <= 5e-5 * w, `ω_${j}: ${rope.freqs[j]}, the spec says ${w}`));
  assert.ok(rope.freqs.slice(32).every((w) => w === 0), 'ω_32…ω_63 stay zero');
});

test('--bf16-state (§5): the embeddings, value embeddings, head and gates, their optimiser state and every Adam moment hold bf16 values after steps (an Adam parameter\'s gradient sum after a cycle\'s first step: its gradient as given, rounded where used); the matrices do not', () => {
  const isBf16 = (v: ArrayLike<number>) => Array.from(v).every((x) => Math.fround(x) === x && (new Uint32Array(Float32Array.of(x).buffer)[0] & 0xffff) === 0);
  const micro = { vocabSize: 64, bosToken: 63, numLayers: 2, modelDim: 16, numHeads: 2, headDim: 8, kvHeads: 2, noAttnLayers: [], noMlpLayers: [],
    skip: 'none', valueEmbeds: 1, backout: false, seqLen: 8, windowBlock: 4, windowSchedule: [2], windowPattern: 'SL', valWindow: 2 };
  for (const on of [true, false]) {
    const cfg = T.resolveConfig('tiny', { ...micro, bf16State: on }).cfg;
    const m = T.createModel(cfg), st = T.createOptimizerState(m);
    for (const v of m.params.values()) tf.tidy(() => v.assign(v.add(tf.randomNormal(v.shape, 0, 0.05, 'float32', Math.floor(random() * 1e9)))));
    let last = new Map<string, Float32Array>();  // the gradients of step 2, the first of an Adam cycle (adamEvery 2)
    for (const step of [0, 1, 2]) {
      const grads = new Map([...m.params].map(([n, v]) => [n, tf.randomNormal(v.shape, 0, 0.1, 'float32', Math.floor(random() * 1e9))]));
      last = new Map([...grads].map(([n, g]) => [n, g.dataSync() as Float32Array]));
      T.optimizerStep(m, st, grads, step);
      tf.dispose([...grads.values()]);
    }
    const half = ['embed', 'value_embed.0', 'head', 'smear_gate', 'layer.0.attn_gate', 'layer.1.attn_gate'];
    for (const name of half) {
      assert.equal(m.info.get(name)!.bf16 ?? false, on, `${name}: stored in bf16`);
      const values = [m.params.get(name)!, ...st.slots.get(name)!].map((t) => t.dataSync());
      const gradSum = m.info.get(name)!.opt === 'adam' ? 3 : -1;  // value, m, v, the sum
      if (on) values.forEach((v, k) => k === gradSum ? assert.deepEqual(v, last.get(name), `${name}: the gradient sum is step 2's gradient`)
        : assert.ok(isBf16(v), `${name}: ${k ? `slot ${k - 1}` : 'value'} holds bf16 values`));
      else assert.ok(!isBf16(values[0]), `${name}: float32 values without --bf16-state`);
    }
    for (const [name, info] of m.info) {
      if (info.opt === 'adam') st.slots.get(name)!.slice(0, 2).forEach((s, k) => assert.equal(isBf16(s.dataSync()), on || s.size === 0, `${name}: Adam moment ${k}`));
    }
    assert.ok(!isBf16(m.params.get('layer.0.qkv')!.dataSync()), 'the matrices stay float32');
    T.disposeOptimizerState(st);
    T.disposeModel(m);
  }
  assert.equal(T.resolveConfig('speedrun', T.parseFlags(['--recipe', '2025-08']).overrides).cfg.bf16State, false, '2025-08 kept float32 state');
});

test('--recipe 2025-08 restores the earlier recipe, under the tiny preset too; an unknown recipe is a ConfigError', () => {
  const resolve = (argv: string[], preset: 'speedrun' | 'tiny') => T.resolveConfig(preset, T.parseFlags(argv).overrides).cfg;
  const old = resolve(['--recipe', '2025-08'], 'speedrun');
  assert.deepEqual([old.optimizer, old.orthogonalizer, old.muonLr, old.weightDecay, old.gateOptimizer, old.adamBeta1, old.adamEps, old.adamEvery, old.cooldownFrac, old.valYarn],
    ['muon', 'ns5', 0.05, 0, 'adam', 0.8, 1e-10, 1, 0.45, true]);
  assert.equal(T.scheduledSteps(old), old.numIterations, 'no extension');
  assert.equal(resolve(['--recipe', '2025-08', '--adam-every', '2'], 'speedrun').adamEvery, 2, 'an explicit flag wins over the recipe');
  const tinyOld = resolve(['--recipe', '2025-08'], 'tiny');
  assert.deepEqual([tinyOld.muonLr, tinyOld.cooldownFrac, tinyOld.windowSchedule, tinyOld.muonCooldownSteps], [0.03, 0.4, [2, 4], 0], 'the tiny values stay');
  assert.throws(() => T.parseFlags(['--recipe', '2024-01']), (e: unknown) => e instanceof T.ConfigError && /--recipe "2024-01": expected one of 2025-11, 2025-08/.test(e.message));
});
