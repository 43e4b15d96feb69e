// The FP8 head of the 2025-11 record (../shared/reference/record-2025-11.md §3.3) in train_gpt.ts: roundToFp8 against a
// float64 rounding written here from the formats' definitions (on cpu, wasm and the cuda backend's host device: the
// composite runs on each), the tf.customGrad head against an explicit float64 computation of §3.3, its place in the
// model (training loss only), the note of the emulation, the message of a non-finite loss, and the flag's wiring.
// Random inputs are fresh each run: the seed is printed, TEST_SEED repeats it.
import { mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import * as T from '../train_gpt.ts';
import { registerWasmKernels } from '../backend-wasm/index.ts';
import { registerCudaHostBackend } from '../backend-cuda/host_device.ts';
import { random, randomInt, testSeed } from './seed.ts';

await tf.setBackend('cpu');
const REPO = fileURLToPath(new URL('..', import.meta.url));
const seed = `(TEST_SEED=${testSeed})`;

// --- A float64 reference, from the definitions: e4m3fn (3 mantissa bits, normals from 2⁻⁶, largest 448, no infinity:
// overflow is NaN) and e5m2 (2 mantissa bits, normals from 2⁻¹⁴, largest 57344, overflow ±inf); round to nearest, ties
// to even. The exponent comes from the float64's own bits, not from a logarithm.
const FORMATS = { e4m3: { M: 3, minExp: -6, max: 448, overflow: NaN }, e5m2: { M: 2, minExp: -14, max: 57344, overflow: Infinity } };
type Format = keyof typeof FORMATS;

function exponentOf(a: number): number {  // a > 0, finite, normal as a float64
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, a);
  return ((view.getUint32(0) >>> 20) & 0x7ff) - 1023;
}
function halfEven(y: number): number {  // y ≥ 0
  const f = Math.floor(y), rest = y - f;
  return rest > 0.5 || (rest === 0.5 && f % 2 === 1) ? f + 1 : f;
}
function refRound(v: number, format: Format): number {
  const { M, minExp, max, overflow } = FORMATS[format];
  if (Number.isNaN(v)) return NaN;
  const a = Math.abs(v);
  if (a === Infinity) return overflow * Math.sign(v);
  if (a === 0) return 0;
  const spacing = 2 ** (Math.max(exponentOf(a), minExp) - M);
  const r = halfEven(a / spacing) * spacing;
  return (r > max ? overflow : r) * Math.sign(v);
}
/** Every non-negative finite value of the format, increasing. */
function grid(format: Format): number[] {
  const { M, minExp, max } = FORMATS[format], values: number[] = [];
  for (let m = 0; m < 2 ** M; m++) values.push(m * 2 ** (minExp - M));
  for (let e = minExp; ; e++) {
    for (let m = 0; m < 2 ** M; m++) {
      const v = (1 + m / 2 ** M) * 2 ** e;
      if (v > max) return values;
      values.push(v);
    }
  }
}

/** float32 inputs that probe the rounding: the grid, its midpoints (ties) and their float32 neighbours, powers of two
 * and theirs (where log2 lands on the wrong side), the overflow thresholds, random values over many binades, specials. */
function probes(format: Format): Float32Array {
  const { max } = FORMATS[format], g = grid(format), out: number[] = [];
  const below = (x: number) => x - 2 ** (exponentOf(x) - (x === 2 ** exponentOf(x) ? 24 : 23));  // the float32 below x > 0
  const above = (x: number) => x + 2 ** (exponentOf(x) - 23);
  for (let i = 0; i < g.length; i++) {
    out.push(g[i]);
    if (i + 1 < g.length) { const mid = (g[i] + g[i + 1]) / 2; out.push(mid, below(mid), above(mid)); }
  }
  for (let k = -30; k <= 20; k++) out.push(2 ** k, below(2 ** k), above(2 ** k));
  const next = 2 * max - g[g.length - 2], threshold = (max + next) / 2;  // 464 for e4m3, 61440 for e5m2
  out.push(threshold, below(threshold), above(threshold), next, 2 * next, 3.4e38, 1e-40, 2 ** -149);
  for (let i = 0; i < 4000; i++) out.push((1 + random()) * 2 ** (randomInt(-26, 20) + random()));
  const values = Float32Array.from(out);
  for (let i = 0; i < values.length; i++) if (random() < 0.5) values[i] = -values[i];
  return Float32Array.from([...values, 0, -0, Infinity, -Infinity, NaN]);
}

const BACKENDS = ['cpu', 'wasm', 'cuda-host'] as const;
async function useBackend(name: (typeof BACKENDS)[number]): Promise<void> {
  if (name === 'wasm') registerWasmKernels();
  if (name === 'cuda-host') registerCudaHostBackend('cuda-host');
  assert.ok(await tf.setBackend(name), `backend ${name}`);
}

test('the emulation says once that the backend has no FP8 kernels', async () => {
  const log = mock.method(console, 'log', () => {});
  try {
    const x = tf.randomNormal([16, 16]) as tf.Tensor2D, w = tf.randomUniform([16, 32], -0.1, 0.1) as tf.Tensor2D;
    tf.dispose([T.fp8Head(x, w), T.fp8Head(x, w)]);
    const notes = log.mock.calls.map((c) => String(c.arguments[0])).filter((s) => /FP8/.test(s));
    assert.equal(notes.length, 1, notes.join('\n'));
    assert.match(notes[0], /^note: the cpu backend has no FP8 kernels: the head's FP8 matmul \(--fp8-head\) is emulated/);
    tf.dispose([x, w]);
  } finally {
    log.mock.restore();
  }
});

for (const backend of BACKENDS) {
  test(`roundToFp8 on ${backend} equals the float64 rounding: grid, ties, powers of two, overflow, subnormals, specials`, async () => {
    await useBackend(backend);
    try {
      for (const format of ['e4m3', 'e5m2'] as const) {
        const xs = probes(format);
        const got = tf.tidy(() => T.roundToFp8(tf.tensor1d(xs), format).dataSync());
        for (let i = 0; i < xs.length; i++) {
          const want = refRound(xs[i], format);
          if (!(Number.isNaN(want) ? Number.isNaN(got[i]) : got[i] === want)) assert.fail(`${format}(${xs[i]}) on ${backend}: ${got[i]}, expected ${want} ${seed}`);
        }
      }
    } finally {
      await tf.setBackend('cpu');
    }
  });
}

test('the reference itself: ties go to the even neighbour and the overflow thresholds are 464 and 61440', () => {
  assert.deepEqual([refRound(464, 'e4m3'), refRound(465, 'e4m3'), refRound(-500, 'e4m3')], [448, NaN, NaN]);
  assert.deepEqual([refRound(61439, 'e5m2'), refRound(61440, 'e5m2'), refRound(-61440, 'e5m2')], [57344, Infinity, -Infinity]);
  assert.deepEqual([refRound(2 ** -10, 'e4m3'), refRound(3 * 2 ** -10, 'e4m3'), refRound(2 ** -17, 'e5m2'), refRound(3 * 2 ** -17, 'e5m2')],
    [0, 2 ** -8, 0, 2 ** -15]);
  assert.deepEqual([refRound(1.0625, 'e4m3'), refRound(1.1875, 'e4m3'), refRound(1.125, 'e5m2'), refRound(1.375, 'e5m2')], [1, 1.25, 1, 1.5]);
});

// --- The head (§3.3) in float64 ---------------------------------------------------------------------------------
type Mat = number[][];
const f32 = Math.fround;
const randMat = (rows: number, cols: number, draw: () => number): Mat => Array.from({ length: rows }, () => Array.from({ length: cols }, () => f32(draw())));
const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
/** Magnitudes over many binades (e5m2 subnormals of g/grad_s included), random signs. */
const spread = (lo: number, hi: number) => () => (random() < 0.5 ? -1 : 1) * 2 ** (lo + (hi - lo) * random());
/** Each entry of a (float32) divided by the float32 scale, as float32, then rounded to the format. */
const quantise = (a: Mat, scale: number, format: Format): Mat => a.map((row) => row.map((v) => refRound(f32(v / f32(scale)), format)));
const tr = (a: Mat): Mat => a[0].map((_, j) => a.map((row) => row[j]));
/** a·b with, per entry, Σ|a_ik·b_kj| (the scale of float32 accumulation's error). */
function product(a: Mat, b: Mat): { value: Mat; abs: Mat } {
  const value = a.map(() => b[0].map(() => 0)), abs = a.map(() => b[0].map(() => 0));
  a.forEach((row, i) => row.forEach((x, k) => b[k].forEach((y, j) => { value[i][j] += x * y; abs[i][j] += Math.abs(x * y); })));
  return { value, abs };
}
function assertClose(got: ArrayLike<number>, want: { value: Mat; abs: Mat }, scale: number, what: string): void {
  const cols = want.value[0].length;
  for (let i = 0; i < got.length; i++) {
    const w = want.value[Math.floor(i / cols)][i % cols] * scale, bound = 1e-6 * want.abs[Math.floor(i / cols)][i % cols] * scale + 1e-30;
    if (!(Math.abs(got[i] - w) <= bound)) assert.fail(`${what}[${i}]: ${got[i]}, §3.3 in float64 gives ${w} (bound ${bound}) ${seed}`);
  }
}

test('the FP8 head and its gradient equal §3.3 computed in float64 (on cpu), and approximate the unquantised head', () => {
  for (const [N, d, V] of [[16, 16, 16], [32, 16, 48], [16, 32, 32]]) {
    const { xScale, wScale, gradScale } = T.fp8HeadScales(d);
    assert.deepEqual([xScale, wScale, gradScale], [Math.sqrt(d) / 448, 2 ** -9, 1 / 448]);
    // x like a normed activation (and a few entries at ±√d, the largest a normed row holds), w across binades (e4m3
    // subnormals of w/2⁻⁹ included), g across binades down to e5m2's subnormals of g/grad_s.
    // x is clamped to ±√d: no entry of a normed row is larger, and past 464·x_s = 1.04·√d it overflows e4m3.
    const x = randMat(N, d, () => Math.max(-Math.sqrt(d), Math.min(Math.sqrt(d), normal()))), w = randMat(d, V, spread(-22, -1)), g = randMat(N, V, spread(-26, 0));
    x[0][0] = f32(Math.sqrt(d)); x[1][d - 1] = f32(-Math.sqrt(d));
    const X8 = quantise(x, xScale, 'e4m3'), W8 = quantise(w, wScale, 'e4m3'), G8 = quantise(g, gradScale, 'e5m2');
    const [xt, wt, gt] = [x, w, g].map((a) => tf.tensor2d(a));
    const [z, [dx, dw]] = tf.tidy(() => [T.fp8Head(xt as tf.Tensor2D, wt as tf.Tensor2D),
      tf.grads((a: tf.Tensor, b: tf.Tensor) => T.fp8Head(a as tf.Tensor2D, b as tf.Tensor2D))([xt, wt], gt)]);
    const what = `[${N},${d}]·[${d},${V}]`;
    assertClose(z.dataSync(), product(X8, W8), xScale * wScale, `z ${what}`);                // z = (X8·W8)·x_s·w_s
    assertClose(dx.dataSync(), product(G8, tr(W8)), gradScale * wScale, `dx ${what}`);      // dx = (G8·W8ᵀ)·grad_s·w_s
    assertClose(dw.dataSync(), product(tr(X8), G8), xScale * gradScale, `dw ${what}`);      // dW = (X8ᵀ·G8)·x_s·grad_s
    // Against the unquantised x·W and its gradient: e4m3 keeps 4 significant bits, e5m2 3 (relative rounding ≤ 1/16,
    // 1/8), so the products are within a few of those of the exact ones (measured against their size).
    const plain = tf.tidy(() => [tf.matMul(xt, wt), tf.matMul(gt, wt, false, true), tf.matMul(xt, gt, true, false)]);
    [z, dx, dw].forEach((t, i) => {
      const err = tf.tidy(() => t.sub(plain[i]).norm().div(plain[i].norm()).dataSync()[0]);
      assert.ok(err < 0.2, `${['z', 'dx', 'dw'][i]} ${what}: relative distance ${err} from the unquantised head ${seed}`);
    });
    tf.dispose([xt, wt, gt, z, dx, dw, ...plain]);
  }
});

test('overflow: a head weight past 464·2⁻⁹ makes the logits NaN; a gradient past 61440·grad_s makes dx and dW infinite or NaN', () => {
  tf.tidy(() => {
    // x within ±3 (at most 336 in e4m3 units, xScale = √16/448): only the planted weight may overflow. An unclipped
    // normal x passed 464 units (|x| > 4.14) in about 1 run of 100, and the first assertion failed.
    const matrix = (f: () => number) => Array.from({ length: 16 }, () => Array.from({ length: 16 }, f));
    const x = tf.tensor2d(matrix(() => Math.max(-3, Math.min(3, normal())))), w = matrix(() => random() - 0.5);
    w[3][5] = 0.9;  // 460.8 in e4m3 units: rounds to 448, still finite
    const ok = T.fp8Head(x, tf.tensor2d(w)).dataSync();
    assert.ok(ok.every(Number.isFinite), `a weight of 0.9 stays finite ${seed}`);
    w[3][5] = 0.91;  // 465.9: past 464, NaN (e4m3 has no infinity)
    const z = T.fp8Head(x, tf.tensor2d(w)).arraySync() as number[][];
    z.forEach((row) => row.forEach((v, j) => assert.ok(j === 5 ? Number.isNaN(v) : Number.isFinite(v), `column ${j}: ${v}`)));
    const g = tf.fill([16, 16], 0.001).arraySync() as number[][];
    g[2][7] = 200;  // 89600 in e5m2 units: ±inf
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => T.fp8Head(a as tf.Tensor2D, b as tf.Tensor2D))([x, tf.tensor2d(matrix(() => 0.1 + 0.4 * random()))], tf.tensor2d(g));
    assert.ok(!dx.slice([2, 0], [1, -1]).dataSync().some(Number.isFinite), 'the row of dx that the infinite gradient reaches');
    assert.ok(dx.slice([3, 0], [1, -1]).dataSync().every(Number.isFinite), 'the other rows of dx');
    assert.ok(!dw.slice([0, 7], [-1, 1]).dataSync().some(Number.isFinite), 'the column of dW that it reaches');
  });
});

// --- The model ------------------------------------------------------------------------------------------------
const MICRO: Partial<T.Config> = {
  vocabSize: 48, bosToken: 47, numLayers: 2, modelDim: 16, numHeads: 1, headDim: 16, kvHeads: 1, noAttnLayers: [], noMlpLayers: [],
  skip: 'none', valueEmbeds: 0, seqLen: 16, windowBlock: 4, windowSchedule: [2], windowPattern: 'SL', valWindow: 2, backoutLayer: 0,
};

function microBatch(cfg: T.Config): T.Batch {
  const row = () => [cfg.bosToken, ...Array.from({ length: cfg.seqLen - 1 }, () => randomInt(0, cfg.vocabSize - 2))];
  const inputs = [row(), row()].flat();
  return T.toDevice({ inputs: Int32Array.from(inputs), targets: Int32Array.from(inputs.map(() => randomInt(0, cfg.vocabSize - 2))), B: 2, T: cfg.seqLen }, cfg.bosToken);
}

test('in the model the training loss (summed) runs the head in FP8, validation (mean) the plain head; a head weight past the range stops it with a message naming the FP8 head', () => {
  const on = T.resolveConfig('tiny', MICRO).cfg, off = { ...on, fp8Head: false };
  assert.equal(on.fp8Head, true);
  const m = T.createModel(on);
  // off their initial values (the head starts at zero), the head well inside the FP8 weight range
  for (const v of m.params.values()) tf.tidy(() => v.assign(v.add(tf.randomNormal(v.shape, 0, 0.1, 'float32', randomInt(0, 2 ** 30)))));
  const mOff: T.Model = { ...m, cfg: off };
  const batch = microBatch(on), sched = T.attnScheduleAt(2, T.initRope(on), on);
  const loss = (model: T.Model, r: 'sum' | 'mean') => tf.tidy(() => T.modelLoss(model, batch, sched, r).dataSync()[0]);
  assert.equal(loss(m, 'mean'), loss(mOff, 'mean'), 'validation does not quantise');
  const [fp8Sum, plainSum] = [loss(m, 'sum'), loss(mOff, 'sum')];
  assert.notEqual(fp8Sum, plainSum, 'training quantises');
  assert.ok(Math.abs(fp8Sum - plainSum) < 0.05 * plainSum, `FP8 ${fp8Sum} against plain ${plainSum}`);
  const { grads } = tf.variableGrads(() => T.modelLoss(m, batch, sched, 'sum'));
  const names = new Map([...m.params].map(([n, v]) => [v.name, n]));
  for (const [k, g] of Object.entries(grads)) assert.ok(g.dataSync().every(Number.isFinite), `${names.get(k)}'s gradient is finite`);
  assert.ok(tf.tidy(() => grads[m.params.get('head')!.name].abs().max().dataSync()[0]) > 0, 'the head gets a gradient');
  tf.dispose(Object.values(grads));

  assert.match(T.fp8HeadDiagnosis(m), /^the head runs in FP8 \(--fp8-head on\) and its weights are within ±0\.90625 \(464·2⁻⁹/);
  const head = m.params.get('head')!;
  tf.tidy(() => head.assign(head.add(tf.oneHot([5], head.size).reshape(head.shape).mul(2))));
  assert.ok(Number.isNaN(loss(m, 'sum')), 'a weight past the range: NaN training loss');
  assert.ok(Number.isFinite(loss(m, 'mean')), 'validation stays finite');
  assert.match(T.fp8HeadDiagnosis(m), /and its largest weight, \d\.\d{3}, is past ±0\.90625 \(464·2⁻⁹, beyond which the e4m3 cast gives NaN\); --fp8-head off runs it unquantised$/);
  tf.tidy(() => head.assign(head.mul(NaN)));
  assert.match(T.fp8HeadDiagnosis(m), /its weights hold NaN \(a non-finite update came before\)/);
  T.disposeModel(m);
});

// --- The flag ---------------------------------------------------------------------------------------------------
test('--fp8-head: on under --recipe 2025-11, off under 2025-08, explicit values win; a tied head turns it off, or is an error when asked for', () => {
  const resolve = (argv: string[], preset: 'speedrun' | 'tiny' = 'speedrun') => T.resolveConfig(preset, T.parseFlags(argv).overrides);
  assert.equal(resolve([]).cfg.fp8Head, true);
  assert.equal(resolve([], 'tiny').cfg.fp8Head, true);
  assert.equal(resolve(['--recipe', '2025-08']).cfg.fp8Head, false);
  assert.equal(resolve(['--recipe', '2025-08', '--fp8-head']).cfg.fp8Head, true);
  assert.equal(resolve(['--fp8-head', 'off']).cfg.fp8Head, false);
  const tied = resolve(['--tie-embed']);
  assert.equal(tied.cfg.fp8Head, false);
  assert.deepEqual(tied.notes, ['--tie-embed: the head runs unquantised (--fp8-head off: the embedding\'s entries exceed the FP8 weight range)']);
  assert.throws(() => resolve(['--tie-embed', '--fp8-head', 'on']),
    (e: unknown) => e instanceof T.ConfigError && /^--fp8-head needs an untied head \(--tie-embed off\)/.test(e.message));
  assert.match(T.helpText(200), /\n {2}--fp8-head \[on\|off\] \(default: on\)\n {6}the head's matmul in FP8 in training/);
});

test('--describe shows --fp8-head per recipe', () => {
  for (const [args, want] of [[[], 'on'], [['--recipe', '2025-08'], 'off']] as const) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'train_gpt.ts', '--describe', '--steps', '0', ...args], { cwd: REPO, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`\\n {2}--fp8-head ${want}\\n`), r.stdout);
  }
});
