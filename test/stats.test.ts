// Tests for stats.ts: log parsing, finding logs, statistics against scipy, the reports, the plot and the CLI.
//
// Reference values were computed once, by hand, with scipy 1.17 / numpy (never from these tests):
//   stats.ttest_1samp(x, 3.28, alternative='less')             -> t, df, p
//   stats.t.interval(0.95, n - 1, loc=mean, scale=sem)          -> 95 % CI of the mean
//   stats.ttest_ind(a, b, equal_var=False, alternative='less')  -> t, df, one-sided p
//   stats.ttest_ind(a, b, equal_var=False)                      -> two-sided p, .confidence_interval(0.95)
//   Cohen's d = diff / pooled sd (n - 1 weights), Hedges' g = d * (1 - 3 / (4 (na + nb) - 9))
//   runs needed: smallest n with (3.28 - mean) / sd * sqrt(n) > stats.t.ppf(0.99, n - 1); power from
//   stats.nct.sf(stats.t.ppf(0.99, n - 1), n - 1, d * sqrt(n)) >= 0.8 (the exact noncentral t).
//   --compare: stats.ttest_ind(a, b, equal_var=False, alternative='greater') for the one-sided p the other way; runs
//   needed for two groups: smallest n with stats.ttest_ind_from_stats(mean_a, sd_a, n, mean_b, sd_b, n,
//   equal_var=False, alternative=<the observed direction>).pvalue < alpha.
// Holm's correction and the Welch test at df = 2 (where the t distribution has a closed form) are checked by hand.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stripVTControlCharacters } from 'node:util';
import { Resvg } from '@resvg/resvg-js';
import {
  OPTIONS, USAGE, collectLogs, expandGlob, holm, main, oneSampleTTest, parseCli, parseLog, plotSpec, runsNeeded, summarize, tPValue, welchRunsNeeded,
  welchTTest, type CompareReport, type Report,
} from '../stats.ts';
import { SEPARATOR } from '../log_format.ts';
import * as F from './stats_fixtures.ts';

function assertClose(actual: number, expected: number, what: string, relative = 1e-9): void {
  const error = Math.abs(actual - expected) / Math.abs(expected);
  assert.ok(error <= relative, `${what}: got ${actual}, expected ${expected} (relative error ${error.toExponential(2)})`);
}

/** Agreement to 4 significant digits, the rule's requirement, checked much tighter above. */
function assertSameToFourDigits(actual: number, expected: number, what: string): void {
  assert.equal(actual.toPrecision(4), expected.toPrecision(4), what);
}

// ---------------------------------------------------------------------------------------------------------
// Reference values (scipy)
// ---------------------------------------------------------------------------------------------------------

const SCIPY = {
  record: { t: -6.245144858321559, df: 7, p: 0.00021307562869107583, mean: 3.2783125, sd: 0.0007642690251849339,
    se: 0.0002702099051795495, ci: [3.277673555105192, 3.2789514448948083] },
  baseline: { t: -2.8030595529074835, df: 5, p: 0.01892836733842595, mean: 3.279083333333333, sd: 0.0008010409893799087,
    ci: [3.27824269237006, 3.2799239742966058] },
  pooledWithVariant: { t: -7.213538087791963, df: 9, p: 2.504678198107452e-5 },
  variant: { t: -11.39999999999627, df: 1, p: 0.02785063197243022 },
  recordTimeS: { mean: 130.518625, sd: 0.44566897949679224, ci: [130.1460364090193, 130.89121359098067] },
  welchLoss: { t: -1.8170844174062184, df: 10.621499362040367, pLess: 0.04874665218300457, pTwo: 0.09749330436600914,
    diff: -0.0007708333333327211, ci: [-0.0017085984050231283, 0.00016693173835768602], d: -0.988499506276669, g: -0.9254037931100731 },
  welchTime: { t: -21.19519729665847, df: 11.970407524909158, pLess: 3.684888691119803e-11, pTwo: 7.369777382239606e-11,
    diff: -4.467541666666676, ci: [-4.9269196338313375, -4.008163699502015], d: -11.002844088709056, g: -10.300534891557414 },
};

// The January 2025 record's evidence in the PyTorch speedrun (its README: p=0.0061).
const KJ_LOSSES = [3.2807, 3.279, 3.2801, 3.2784, 3.279, 3.2783, 3.2785, 3.2796, 3.2793, 3.2795];
const KJ = { t: -3.1247539347137847, df: 9, p: 0.006112300205544643 };

// Far-tail cases: the p-values must still match.
const TINY_1 = [3.27, 3.2712, 3.2695, 3.2708, 3.2703, 3.2699, 3.2711, 3.2704, 3.2697, 3.2706];
const TINY_1_REF = { t: -52.63636363635522, df: 9, p: 8.100388246344193e-13 };
const TINY_2 = [3.265, 3.2661, 3.2655, 3.2648, 3.2659, 3.2652, 3.2657, 3.265, 3.2662, 3.2653, 3.2656, 3.2649];
const TINY_2_REF = { t: -106.13004820205548, df: 11, p: 3.2481973550375914e-18 };
const TINY_WELCH_B = [3.2801, 3.2795, 3.281, 3.2799, 3.2806];
const TINY_WELCH_REF = { t: -49.778466139430414, df: 6.29756803354669, pLess: 1.0239741901482589e-9, pTwo: 2.0479483802965177e-9,
  ci: [-0.01550527587614986, -0.014068057457182703] };
const DEEP_A = [3.265, 3.2661, 3.2655, 3.2648, 3.2659, 3.2652, 3.2657, 3.265, 3.2662, 3.2653, 3.2656, 3.2649, 3.2654, 3.2658, 3.2651, 3.266];
const DEEP_B = [3.2801, 3.2795, 3.281, 3.2799, 3.2806, 3.2797, 3.2803, 3.28, 3.2808, 3.2794, 3.2802, 3.2798];
const DEEP_REF = { t: -80.02012807192766, df: 22.364934989212852, pLess: 2.7014943274873944e-29, pTwo: 5.402988654974789e-29 };

// The worse variant of an ablation against the baseline (scipy, as above).
const WORSE_REF = {
  loss: { t: 11.801924369402535, df: 6.55958836362655, pLess: 0.9999941698616306, pGreater: 5.830138369389839e-6, pTwo: 1.1660276738779679e-5,
    diff: 0.00611666666666677, ci: [0.004874257101791306, 0.007359076231542234] },
  time: { t: 0.17991061807022654, df: 5.888376722582765, pLess: 0.5683730053194653, pGreater: 0.4316269946805346, pTwo: 0.8632539893610692 },
};
// Runs in each group for one-sided p < alpha, [alpha, record vs baseline, worse vs baseline] (scipy's ttest_ind_from_stats).
const WELCH_RUNS_REF: [number, number, number][] = [[0.01 / 3, 18, 3], [0.01, 13, 2]];

// Runs needed, [mean, sd] -> [n for p < 0.01 at the observed mean and sd, n for 80 % power (exact nct)].
const RUNS_NEEDED_REF: [number, number, number, number][] = [
  [3.2795, 0.0015, 52, 94],
  [3.279, 0.002, 25, 43],
  [3.2799, 0.001, 545, 1007],
  [3.275, 0.002, 4, 5],
  [3.2797, 0.0012, 90, 164],
];

// ---------------------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------------------

describe('statistics agree with scipy', () => {
  test('one-sample one-sided t-test and the descriptive statistics of the record group', () => {
    const r = oneSampleTTest(F.RECORD_LOSSES, 3.28, 'less');
    assertClose(r.t, SCIPY.record.t, 't');
    assert.equal(r.df, SCIPY.record.df);
    assertClose(r.p, SCIPY.record.p, 'p');
    const s = summarize(F.RECORD_LOSSES);
    assert.equal(s.n, 8);
    assertClose(s.mean, SCIPY.record.mean, 'mean', 1e-14);
    assertClose(s.sd, SCIPY.record.sd, 'sd', 1e-10);
    assertClose(s.se, SCIPY.record.se, 'se', 1e-10);
    assertClose(s.ci95[0], SCIPY.record.ci[0], 'ci low', 1e-12);
    assertClose(s.ci95[1], SCIPY.record.ci[1], 'ci high', 1e-12);
    assert.equal(s.min, 3.2772);
    assert.equal(s.max, 3.2795);
    const time = summarize(F.RECORD_TIMES_MS.map((ms) => ms / 1000));
    assertClose(time.mean, SCIPY.recordTimeS.mean, 'time mean', 1e-14);
    assertClose(time.sd, SCIPY.recordTimeS.sd, 'time sd', 1e-10);
    assertClose(time.ci95[0], SCIPY.recordTimeS.ci[0], 'time ci low', 1e-12);
    assertClose(time.ci95[1], SCIPY.recordTimeS.ci[1], 'time ci high', 1e-12);
  });

  test('the PyTorch record example and the other groups', () => {
    for (const [xs, ref] of [[KJ_LOSSES, KJ], [F.BASELINE_LOSSES, SCIPY.baseline], [[...F.RECORD_LOSSES, ...F.VARIANT_LOSSES], SCIPY.pooledWithVariant],
      [F.VARIANT_LOSSES, SCIPY.variant]] as const) {
      const r = oneSampleTTest([...xs], 3.28, 'less');
      assertClose(r.t, ref.t, 't', 1e-9);
      assert.equal(r.df, ref.df);
      assertClose(r.p, ref.p, 'p', 1e-9);
      assertSameToFourDigits(r.p, ref.p, 'p to 4 digits');
    }
  });

  test('p-values in the far tail (1e-12 and below)', () => {
    for (const [xs, ref] of [[TINY_1, TINY_1_REF], [TINY_2, TINY_2_REF]] as const) {
      const r = oneSampleTTest([...xs], 3.28, 'less');
      assertClose(r.t, ref.t, 't', 1e-9);
      assertClose(r.p, ref.p, 'tiny p', 1e-8);
    }
    const w = welchTTest(TINY_2, TINY_WELCH_B, 'less');
    assertClose(w.t, TINY_WELCH_REF.t, 'welch t');
    assertClose(w.df, TINY_WELCH_REF.df, 'welch df');
    assertClose(w.p, TINY_WELCH_REF.pLess, 'welch p less', 1e-8);
    assertClose(w.pTwoSided, TINY_WELCH_REF.pTwo, 'welch p two-sided', 1e-8);
    assertClose(w.ci95[0], TINY_WELCH_REF.ci[0], 'ci low', 1e-10);
    assertClose(w.ci95[1], TINY_WELCH_REF.ci[1], 'ci high', 1e-10);
    const deep = welchTTest(DEEP_A, DEEP_B, 'less');
    assertClose(deep.t, DEEP_REF.t, 'deep t');
    assertClose(deep.df, DEEP_REF.df, 'deep df');
    assertClose(deep.p, DEEP_REF.pLess, 'deep p', 1e-8);
    assertClose(deep.pTwoSided, DEEP_REF.pTwo, 'deep p two-sided', 1e-8);
  });

  test('Welch tests of loss and time against the baseline, with CIs and effect sizes', () => {
    const ms = (xs: number[]): number[] => xs.map((x) => x / 1000);
    for (const [a, b, ref] of [[F.RECORD_LOSSES, F.BASELINE_LOSSES, SCIPY.welchLoss],
      [ms(F.RECORD_TIMES_MS), ms(F.BASELINE_TIMES_MS), SCIPY.welchTime]] as const) {
      const w = welchTTest([...a], [...b], 'less');
      assertClose(w.t, ref.t, 't', 1e-9);
      assertClose(w.df, ref.df, 'df', 1e-10);
      assertClose(w.p, ref.pLess, 'p one-sided', 1e-8);
      assertClose(w.pTwoSided, ref.pTwo, 'p two-sided', 1e-8);
      assertClose(w.diff, ref.diff, 'diff', 1e-10);
      assertClose(w.ci95[0], ref.ci[0], 'ci low', 1e-9);
      assertClose(w.ci95[1], ref.ci[1], 'ci high', 1e-9);
      assertClose(w.cohenD, ref.d, "Cohen's d", 1e-9);
      assertClose(w.hedgesG, ref.g, "Hedges' g", 1e-9);
    }
  });

  test('p-value edge cases: zero spread, one run, t > 0', () => {
    assert.equal(oneSampleTTest([3.27, 3.27, 3.27], 3.28, 'less').p, 0);
    assert.equal(oneSampleTTest([3.29, 3.29], 3.28, 'less').p, 1);
    assert.ok(Number.isNaN(oneSampleTTest([3.28, 3.28], 3.28, 'less').p));
    assert.ok(Number.isNaN(oneSampleTTest([3.27], 3.28, 'less').p));
    // scipy: stats.t.cdf(-2.5, 7) and stats.t.cdf(2.5, 7).
    assertClose(tPValue(-2.5, 7, 'less'), 0.020496109292876444, 'lower tail', 1e-9);
    assertClose(tPValue(2.5, 7, 'less'), 0.9795038907071235, 't > 0', 1e-12);
    assertClose(tPValue(-2.5, 7, 'two-sided'), 2 * 0.020496109292876444, 'two-sided', 1e-9);
  });

  test('runs needed: exact for p < alpha, within one run of the exact noncentral-t power', () => {
    for (const [m, sd, forP, forPower] of RUNS_NEEDED_REF) {
      // Two values with the given mean and sample sd.
      const r = runsNeeded([m - sd / Math.SQRT2, m + sd / Math.SQRT2], 3.28, 0.01);
      assert.equal(r.forP, forP, `n for p at mean ${m}, sd ${sd}`);
      assert.ok(r.for80Power !== null && Math.abs(r.for80Power - forPower) <= 1, `power n ${r.for80Power} vs ${forPower}`);
    }
    assert.equal(runsNeeded(F.BASELINE_LOSSES, 3.28, 0.01).forP, 8);
    assert.equal(runsNeeded([3.281, 3.282], 3.28, 0.01).forP, null);
    assert.equal(runsNeeded([3.27], 3.28, 0.01).forP, null);
  });

  test('Welch with two runs a side of equal spread: df = 2, where the t distribution has a closed form', () => {
    // a = [3.25, 3.75], b = [4, 4.5]: both sample variances are 0.125, so se = √(0.125/2 + 0.125/2), t = -0.75 / √0.125
    // = -3/√2, and df = (2v)² / (v² + v²) = 2 exactly. With 2 degrees of freedom the cdf is 1/2 + t / (2√(2 + t²)), here
    // 1/2 - 3 / (2√13), and the quantile of p is (2p - 1) / √(2p(1 - p)).
    const cdf2 = (t: number): number => 0.5 + t / (2 * Math.sqrt(2 + t * t));
    const quantile2 = (p: number): number => (2 * p - 1) / Math.sqrt(2 * p * (1 - p));
    const w = welchTTest([3.25, 3.75], [4, 4.5], 'less');
    assertClose(w.t, -3 / Math.SQRT2, 't', 1e-14);
    assert.equal(w.df, 2);
    assertClose(w.p, 0.5 - 3 / (2 * Math.sqrt(13)), 'p lower', 1e-12);
    assertClose(w.p, cdf2(w.t), 'p lower as the cdf', 1e-12);
    assertClose(w.pTwoSided, 1 - 3 / Math.sqrt(13), 'p two-sided', 1e-12);
    assertClose(w.diff, -0.75, 'diff', 1e-15);
    const half = quantile2(0.975) * Math.sqrt(0.125);
    assertClose(w.ci95[0], -0.75 - half, 'ci low', 1e-12);
    assertClose(w.ci95[1], -0.75 + half, 'ci high', 1e-12);
    // The other way round, the other tail.
    const back = welchTTest([4, 4.5], [3.25, 3.75], 'less');
    assertClose(back.p, 0.5 + 3 / (2 * Math.sqrt(13)), 'p lower of b - a', 1e-12);
  });

  test("Holm: the textbook example, monotone, capped at 1, an untested comparison counted in m", () => {
    // The example of Holm's method on Wikipedia (and R's p.adjust): p = 0.01, 0.04, 0.03, 0.005. By hand: sorted,
    // 4 · 0.005 = 0.02, 3 · 0.01 = 0.03, 2 · 0.03 = 0.06, 1 · 0.04 = 0.04 raised to 0.06 (never below an earlier step);
    // at alpha 0.05 the first and the fourth hypotheses are rejected.
    const closeAll = (got: number[], want: number[], what: string): void =>
      want.forEach((w, i) => (Number.isNaN(w) ? assert.ok(Number.isNaN(got[i]), `${what} ${i}: NaN`) : assertClose(got[i], w, `${what} ${i}`, 1e-12)));
    closeAll(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], 'textbook');
    closeAll(holm([0.2, 0.5, 0.6]), [0.6, 1, 1], 'capped'); // 3 · 0.2, then 2 · 0.5 = 1, then 0.6 raised to 1
    closeAll(holm([0.001, 0.001]), [0.002, 0.002], 'ties');
    closeAll(holm([NaN, 0.01, 0.02]), [NaN, 0.03, 0.04], 'untested'); // m = 3 although only two were tested
    closeAll(holm([0.004]), [0.004], 'one test');
    assert.deepEqual(holm([]), []);
  });

  test('runs needed for a Welch test: each group at n, in the observed direction, as scipy finds them', () => {
    for (const [alpha, record, worse] of WELCH_RUNS_REF) {
      assert.equal(welchRunsNeeded(F.RECORD_LOSSES, F.BASELINE_LOSSES, alpha).forP, record, `record vs baseline at ${alpha}`);
      assert.equal(welchRunsNeeded(F.WORSE_LOSSES, F.BASELINE_LOSSES, alpha).forP, worse, `worse vs baseline at ${alpha}`);
    }
    const r = welchRunsNeeded(F.RECORD_LOSSES, F.BASELINE_LOSSES, 0.01);
    assert.equal(r.have, 6);
    assert.ok(r.for80Power !== null && r.forP !== null && r.for80Power > r.forP, 'an 80 % chance needs more runs than the observed p');
    assert.equal(welchRunsNeeded([3.28, 3.29], [3.29, 3.28], 0.01).forP, null, 'equal means');
    assert.match(welchRunsNeeded([3.28], F.BASELINE_LOSSES, 0.01).note, /at least 2 runs on each side/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Reading logs
// ---------------------------------------------------------------------------------------------------------

describe('parseLog', () => {
  test('a finished run of this project', () => {
    const parsed = parseLog(F.makeLog({ source: F.RECORD_SOURCE, finalLoss: 3.2781, trainTimeMs: 130412 }), 'a.txt');
    assert.ok(parsed.ok);
    const run = parsed.run;
    assert.equal(run.finalValLoss, 3.2781);
    assert.equal(run.trainTimeMs, 130412);
    assert.equal(run.steps, 200);
    assert.equal(run.stepAvgMs, 652.06);
    assert.equal(run.hardware, '2× NVIDIA H100 80GB HBM3');
    assert.deepEqual(run.valCurve.map((p) => p.step), [0, 50, 100, 150, 200]);
    assert.equal(run.valCurve[0].valLoss, 10.8258);
    assert.match(run.codeHash, /^[0-9a-f]{8}$/);
  });

  test('a PyTorch speedrun log (extra blocks and lines, nan step_avg, peak memory consumption)', () => {
    const parsed = parseLog(F.makePytorchLog(3.2772, 201373), 'torch.txt');
    assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
    assert.equal(parsed.run.finalValLoss, 3.2772);
    assert.equal(parsed.run.trainTimeMs, 201373);
    assert.equal(parsed.run.steps, 1370);
    assert.equal(parsed.run.stepAvgMs, 148.07);
    assert.equal(parsed.run.hardware, '1× NVIDIA H100 80GB HBM3');
    assert.deepEqual(parsed.run.valCurve.map((p) => p.step), [0, 125, 1370]);
  });

  test("a 2024 PyTorch log that opens with a '=' line before the source", () => {
    const plain = parseLog(F.makeLog({ source: F.RECORD_SOURCE, finalLoss: 3.2781, trainTimeMs: 130412 }), 'a.txt');
    const opened = parseLog(`${SEPARATOR}\n${F.makeLog({ source: F.RECORD_SOURCE, finalLoss: 3.2781, trainTimeMs: 130412 })}`, 'b.txt');
    assert.ok(plain.ok && opened.ok);
    assert.equal(opened.run.codeHash, plain.run.codeHash);
    assert.equal(opened.run.hardware, '2× NVIDIA H100 80GB HBM3');
    assert.equal(opened.run.finalValLoss, 3.2781);
    const other = parseLog(`${SEPARATOR}\n${F.makeLog({ source: F.BASELINE_SOURCE, finalLoss: 3.2781, trainTimeMs: 130412 })}`, 'c.txt');
    assert.ok(other.ok);
    assert.notEqual(other.run.codeHash, opened.run.codeHash);
  });

  test('the code hash follows the source only, and survives CRLF line endings', () => {
    const hash = (run: F.FixtureRun): string => {
      const parsed = parseLog(F.makeLog(run), 'x.txt');
      assert.ok(parsed.ok);
      return parsed.run.codeHash;
    };
    const a = hash({ source: F.RECORD_SOURCE, finalLoss: 3.2781, trainTimeMs: 130000 });
    assert.equal(hash({ source: F.RECORD_SOURCE, finalLoss: 3.279, trainTimeMs: 131000 }), a);
    assert.equal(hash({ source: F.RECORD_SOURCE, finalLoss: 3.279, trainTimeMs: 131000, crlf: true }), a);
    assert.notEqual(hash({ source: F.RECORD_VARIANT_SOURCE, finalLoss: 3.2781, trainTimeMs: 130000 }), a);
  });

  test('unfinished, malformed, empty and diverged logs come back with a reason, never a throw', () => {
    const reason = (text: string): string => {
      const parsed = parseLog(text, 'x.txt');
      assert.ok(!parsed.ok, 'should be rejected');
      return parsed.reason;
    };
    assert.match(reason(F.makeLog({ source: 'x', finalLoss: 3.27, trainTimeMs: 1000, stopAtStep: 120 })),
      /unfinished: last validation at step 100 of 200/);
    assert.match(reason(F.makeLog({ source: 'x', finalLoss: 3.27, trainTimeMs: 1000, stopAtStep: 0 })), /unfinished: last validation at step 0 of 200/);
    assert.match(reason(''), /empty/);
    assert.match(reason('just some text\nstep:1/10 val_loss:3.0 train_time:1ms step_avg:1.00ms\n'), /malformed: no line of 100 '='/);
    assert.match(reason(`src\n${SEPARATOR}\nno gpu\n${SEPARATOR}\n`), /unfinished: no step lines/);
    assert.match(reason(`src\n${SEPARATOR}\n${SEPARATOR}\nstep:0/10 val_loss:10.8 train_time:0ms step_avg:0.00ms\nstep:10/12 train_time:5ms step_avg:0.5ms\n`),
      /disagree on the number of steps \(10 and 12\)/);
    assert.match(reason(`src\n${SEPARATOR}\n${SEPARATOR}\nstep:10/10 val_loss:nan train_time:50ms step_avg:5.00ms\n`), /diverged/);
    assert.match(reason(`src\n${SEPARATOR}\n${SEPARATOR}\nstep:10/10 val_loss:3.2 step_avg:5.00ms\n`), /without train_time/);
    assert.match(reason('\u0000\u0001binary garbage'), /malformed/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// The command, on fixture logs written to a temporary folder
// ---------------------------------------------------------------------------------------------------------

/** The command in this process: its exit status and output (colours stripped). */
async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
  return { code, stdout: stripVTControlCharacters(stdout), stderr };
}
async function report(...argv: string[]): Promise<{ code: number; report: Report }> {
  const r = await run(...argv, '--json');
  assert.equal(r.stderr, '');
  return { code: r.code, report: JSON.parse(r.stdout) as Report };
}

describe('the stats.ts command', () => {
  let root: string;
  let recordDir: string; // records/track_1/2025-11-25_Test: 8 record runs, an unfinished and a malformed log, baseline/
  let variantDir: string; // 2 runs of edited source code
  let outOfTreeBaseline: string;

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'stats-test-'));
    recordDir = join(root, 'records', 'track_1', '2025-11-25_Test');
    F.writeRuns(recordDir, 'rec', F.RECORD_SOURCE, F.RECORD_LOSSES, F.RECORD_TIMES_MS);
    F.writeRuns(join(recordDir, 'baseline'), 'base', F.BASELINE_SOURCE, F.BASELINE_LOSSES, F.BASELINE_TIMES_MS);
    writeFileSync(join(recordDir, 'unfinished.txt'), F.makeLog({ source: F.RECORD_SOURCE, finalLoss: 3.2, trainTimeMs: 90000, stopAtStep: 130 }));
    writeFileSync(join(recordDir, 'malformed.txt'), 'Traceback (most recent call last):\n  RuntimeError: CUDA out of memory\n');
    writeFileSync(join(recordDir, 'README.md'), '# Test record\n');
    variantDir = join(root, 'variant');
    F.writeRuns(variantDir, 'var', F.RECORD_VARIANT_SOURCE, F.VARIANT_LOSSES, F.VARIANT_TIMES_MS);
    // A slower "record" to compare against: the baseline losses and times, as a folder of its own.
    outOfTreeBaseline = join(root, 'slow');
    F.writeRuns(outOfTreeBaseline, 'slow', F.BASELINE_SOURCE, F.RECORD_LOSSES, F.RECORD_TIMES_MS.map((t) => t - 5000));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  // The one real process: started here so that its start-up (≈ 1.5 s of tsx) overlaps the other tests.
  let direct: Promise<{ status: number; stdout: string; stderr: string }>;
  before(() => {
    direct = new Promise((done) => {
      const cwd = fileURLToPath(new URL('..', import.meta.url)); // the repository root
      execFile(process.execPath, ['--import', 'tsx', 'stats.ts', recordDir, '--json'], { cwd }, (error, stdout, stderr) =>
        done({ status: error ? Number(error.code) : 0, stdout, stderr }));
    });
  });

  test('a record folder: its logs, its baseline/ subfolder, every file counted, the verdict', async () => {
    const { code, report: rep } = await report(recordDir);
    assert.equal(code, 0);
    assert.equal(rep.runs.filter((r) => r.role === 'record').length, 8);
    assert.equal(rep.runs.filter((r) => r.role === 'baseline').length, 6);
    assert.deepEqual(rep.skipped.map((s) => [s.file.split('/').pop(), s.reason.split(':')[0]]),
      [['malformed.txt', 'malformed'], ['unfinished.txt', 'unfinished']]);
    assert.ok(rep.record && rep.baseline && rep.vsBaseline && rep.runsNeeded);
    assertClose(rep.record.targetTest.p, SCIPY.record.p, 'record p');
    assertClose(rep.record.targetTest.t, SCIPY.record.t, 'record t');
    assertClose(rep.record.loss.ci95[0], SCIPY.record.ci[0], 'record ci low', 1e-12);
    assertClose(rep.baseline.loss.sd, SCIPY.baseline.sd, 'baseline sd', 1e-10);
    assertClose(rep.vsBaseline.loss.p, SCIPY.welchLoss.pLess, 'welch loss p', 1e-8);
    assertClose(rep.vsBaseline.timeS.p, SCIPY.welchTime.pLess, 'welch time p', 1e-8);
    assertClose(rep.vsBaseline.timeS.ci95[1], SCIPY.welchTime.ci[1], 'welch time ci', 1e-9);
    assert.equal(rep.runsNeeded.forP, 5);
    assert.equal(rep.verdict.certified, true);
    assert.equal(rep.record.loss.n + rep.baseline.loss.n + rep.skipped.length, 16);
  });

  test('the terminal report', async () => {
    const { code, stdout } = await run(recordDir);
    assert.equal(code, 0);
    assert.match(stdout, /Found 16 log files: 8 record runs, 6 baseline runs, 2 skipped\./);
    assert.match(stdout, /t = -6\.2451, df = 7, p = 0\.0002131/);
    assert.match(stdout, /unfinished: last validation at step 100 of 200/);
    assert.match(stdout, /faster than the baseline: mean 130\.519 s vs 134\.986 s/);
    assert.match(stdout, /Verdict: CERTIFIED/);
  });

  test('the markdown block', async () => {
    const { code, stdout } = await run(recordDir, '--markdown');
    assert.equal(code, 0);
    assert.match(stdout, /^## Statistics\n/);
    assert.match(stdout, /\| record val loss \| [0-9a-f]{8} \| 8 \| 3\.27831 \| 0\.000764 \| 0\.000270 \| \[3\.27767, 3\.27895\] \| 3\.27720 \| 3\.27950 \|/);
    assert.match(stdout, /\*\*Against the target\*\* \(one-sample t-test, one-sided, H1: mean < 3\.28\): t = -6\.2451, df = 7, p = 0\.0002131\./);
    assert.match(stdout, /\| time \(s\) \| -4\.468 \| \[-4\.927, -4\.008\] \| -21\.1952 \| 11\.97 \| 3\.685e-11 \| 7\.370e-11 \| -11\.003 \| -10\.301 \|/);
    assert.match(stdout, /\*\*Verdict: certified\.\*\*/);
    assert.match(stdout, /\| record \| .*unfinished\.txt \| unfinished: last validation at step 100 of 200 \|/);
  });

  test('mixed code versions are reported separately and refused, unless --allow-mixed', async () => {
    const refused = await report(recordDir, variantDir);
    assert.equal(refused.code, 1);
    assert.equal(refused.report.record, null);
    assert.equal(refused.report.verdict.certified, false);
    assert.match(refused.report.verdict.checks[0].text, /different source code .* mixing them is refused.*--allow-mixed/);
    const versions = refused.report.versions.filter((v) => v.role === 'record');
    assert.deepEqual(versions.map((v) => v.loss.n), [8, 2]);
    assertClose(versions[1].targetTest.p, SCIPY.variant.p, 'variant p');
    const terminal = await run(recordDir, variantDir);
    assert.match(terminal.stdout, /Versions: code\/configuration \(reported separately\)/);
    // The differing lines, not only hashes.
    assert.match(terminal.stdout, /source differs .*\n\s+- const lr = 0\.05;\n\s+\+ const lr = 0\.06;/);
    assert.match(terminal.stdout, /Verdict: NOT CERTIFIED/);
    const markdown = await run(recordDir, variantDir, '--markdown');
    assert.equal(markdown.code, 1);
    assert.match(markdown.stdout, /^- record [0-9a-f]{8} against 3\.28: t = -11\.4000, df = 1, p = 0\.02785$/m);
    assert.match(markdown.stdout, /\*\*Verdict: not certified\.\*\*/);

    const allowed = await report(recordDir, variantDir, '--allow-mixed');
    assert.equal(allowed.code, 0);
    assert.ok(allowed.report.record);
    assert.equal(allowed.report.record.loss.n, 10);
    assertClose(allowed.report.record.targetTest.p, SCIPY.pooledWithVariant.p, 'pooled p');
  });

  test('--baseline takes the runs after it and replaces the folder baseline; slower records are refused', async () => {
    const { code, report: rep } = await report(join(recordDir, 'rec-*.txt'), '--baseline', join(outOfTreeBaseline, '*.txt'), '--alpha', '0.001');
    assert.equal(code, 1);
    assert.equal(rep.alpha, 0.001);
    assert.deepEqual(rep.runs.map((r) => r.role).filter((r) => r === 'baseline').length, 8);
    assert.equal(rep.skipped.length, 0);
    const speed = rep.verdict.checks.find((c) => c.text.includes('than the baseline'));
    assert.ok(speed && !speed.ok && /not faster/.test(speed.text));
    const folder = await report(recordDir, '--baseline', outOfTreeBaseline);
    assert.ok(folder.report.notes.some((n) => /baseline\/ not read: --baseline was given/.test(n)));
    assert.equal(folder.report.runs.filter((r) => r.role === 'baseline').length, 8);
  });

  test('a baseline of one run, timed on other hardware: the speed claim is refused unless --allow-hardware-mismatch', async () => {
    const dir = join(root, 'other-hardware');
    mkdirSync(dir);
    const file = join(dir, 'cpu.txt');
    writeFileSync(file, F.makeLog({ source: F.BASELINE_SOURCE, finalLoss: 3.279, trainTimeMs: 140000, gpuListing: 'nvidia-smi: not available (no NVIDIA GPU listed)' }));
    const { code, report: rep } = await report(join(recordDir, 'rec-0.txt'), join(recordDir, 'rec-1.txt'), join(recordDir, 'rec-2.txt'), '--baseline', file);
    assert.equal(rep.vsBaseline, null);
    assert.ok(rep.notes.some((n) => /no Welch tests against the baseline: they need at least 2 runs on each side/.test(n)));
    assert.ok(rep.verdict.checks.some((c) => !c.ok &&
      /^hardware differs \(record on 2× NVIDIA H100 80GB HBM3; baseline on no GPU listed\).*--allow-hardware-mismatch/.test(c.text)));
    assert.ok(!rep.verdict.checks.some((c) => /^faster than the baseline/.test(c.text)));
    const allowed = await report(join(recordDir, 'rec-0.txt'), join(recordDir, 'rec-1.txt'), '--baseline', file, '--allow-hardware-mismatch');
    assert.ok(allowed.report.notes.some((n) => /hardware differs .* compared because of --allow-hardware-mismatch/.test(n)));
    assert.ok(allowed.report.verdict.checks.some((c) => c.ok && /^faster than the baseline/.test(c.text)));
    // 3 runs are not enough: scipy gives p = 0.06115 for 3.2781, 3.2795, 3.2772.
    assert.equal(code, 1);
    assertClose(rep.record?.targetTest.p ?? NaN, 0.06114627426375613, 'p of 3 runs', 1e-9);
  });

  test('the target and alpha decide the verdict', async () => {
    const strict = await report(recordDir, '--target', '3.278');
    assert.equal(strict.code, 1);
    assert.match(strict.report.verdict.checks.find((c) => !c.ok)?.text ?? '', /is not shown below 3\.278/);
    assert.equal(strict.report.runsNeeded?.forP, null);
  });

  test('a run counted twice is skipped, a subfolder is named in a note, a glob finds files', async () => {
    const dir = join(root, 'dup');
    mkdirSync(join(dir, 'old_logs'), { recursive: true });
    const [first] = F.writeRuns(dir, 'a', F.RECORD_SOURCE, F.RECORD_LOSSES.slice(0, 3), F.RECORD_TIMES_MS);
    writeFileSync(join(dir, 'copy.txt'), readFileSync(first));
    const { report: rep } = await report(dir, first);
    assert.equal(rep.runs.length, 3);
    assert.deepEqual(rep.skipped.map((s) => s.reason), [`identical to ${rep.runs[0].file} (the same run counted twice?)`]);
    assert.ok(rep.notes.some((n) => /subfolder .*old_logs\/ not read/.test(n)));
    assert.deepEqual(expandGlob(join(root, 'records', '**', 'rec-[0-2].txt')).map((p) => p.split('/').pop()), ['rec-0.txt', 'rec-1.txt', 'rec-2.txt']);
    assert.deepEqual(expandGlob(join(root, 'nothing', '*.txt')), []);
    const inputs = collectLogs([join(root, 'variant', 'var-?.txt')], []);
    assert.equal(inputs.record.length, 2);
  });

  test('a PyTorch speedrun record folder works too', async () => {
    const dir = join(root, 'pytorch');
    mkdirSync(dir);
    KJ_LOSSES.forEach((loss, i) => writeFileSync(join(dir, `run${i}.txt`), F.makePytorchLog(loss, 202000 + 100 * i)));
    const { code, report: rep } = await report(dir);
    assert.equal(code, 0);
    assert.equal(rep.record?.loss.n, 10);
    assertClose(rep.record?.targetTest.p ?? NaN, KJ.p, 'p');
    assert.ok(rep.verdict.checks.some((c) => /no baseline given/.test(c.text)));
  });

  test('runs are grouped by configuration too: other flags are another version, a different seed or log folder is not', async () => {
    const dir = join(root, 'configs');
    const config = (numLayers: number, seed: number) => ({ preset: 'speedrun', corpus: 'fineweb', numLayers, seed, logDir: `logs${seed}` });
    F.writeRuns(join(dir, 'twelve'), 'r', F.RECORD_SOURCE, F.RECORD_LOSSES.slice(0, 4), F.RECORD_TIMES_MS, (i) => config(12, i));
    F.writeRuns(join(dir, 'eleven'), 'r', F.RECORD_SOURCE, F.RECORD_LOSSES.slice(4), F.RECORD_TIMES_MS, (i) => config(11, i));
    const mixed = await report(join(dir, 'twelve'), join(dir, 'eleven'));
    assert.equal(mixed.code, 1);
    assert.equal(mixed.report.record, null);
    assert.deepEqual(mixed.report.versions.map((v) => v.loss.n), [4, 4]);
    assert.match(mixed.report.verdict.checks[0].text, /come from different configurations \(flags\)/);
    assert.ok(mixed.report.differences.some((d) => /configuration differs: numLayers 12 → 11$/.test(d)), mixed.report.differences.join('\n'));
    const same = await report(join(dir, 'twelve'));
    assert.equal(same.report.versions.length, 1, 'seeds and log folders differ within the group');
    assert.equal(same.report.record?.loss.n, 4);
    assert.match(same.report.runs[0].file, /r-0\.txt$/);
    assert.equal((same.report.runs[0] as unknown as Record<string, unknown>).source, undefined, 'no source in the JSON report');
  });

  test('the target is refused for the tiny and short presets and the built-in corpus, however low the loss', async () => {
    const dir = join(root, 'tiny');
    F.writeRuns(dir, 'tiny', F.RECORD_SOURCE, [1.46, 1.47, 1.45, 1.46], F.RECORD_TIMES_MS, () => ({ preset: 'tiny', corpus: 'builtin-bytes' }));
    const { code, report: rep } = await report(dir);
    assert.equal(code, 1);
    assert.ok(rep.verdict.checks.some((c) => !c.ok && /4 record run\(s\) train with preset tiny: the target 3\.28 is about the speedrun on FineWeb/.test(c.text)));
    assert.equal(rep.verdict.certified, false);
    // The short preset (a tenth of the steps) is no speedrun either, even on FineWeb.
    const short = join(root, 'short');
    F.writeRuns(short, 'short', F.RECORD_SOURCE, F.RECORD_LOSSES, F.RECORD_TIMES_MS, () => ({ preset: 'short', corpus: 'fineweb' }));
    const shortReport = await report(short);
    assert.equal(shortReport.code, 1);
    assert.ok(shortReport.report.verdict.checks.some((c) => !c.ok && /8 record run\(s\) train with preset short:/.test(c.text)));
  });

  test('sources that differ only in comments, layout, type annotations or a run id are one version', async () => {
    const dir = join(root, 'cosmetic');
    const ts = [
      "// train_gpt.ts\nconst runId = 'a1';\nconst lr = 0.05;\nfunction f(x) { return x * lr }\n",
      "// train_gpt.ts, edited comment\nconst runId: string = 'b2'; /* why */\nconst lr: number = 0.05;\nfunction f(x: number): number {\n  return x * lr;\n}\n",
      "const runId = 'c3';\n\n\nconst lr = 0.05; // the same\nfunction f(x) {\n    return x * lr\n}\n",
    ];
    F.writeRuns(join(dir, 'ts'), 'r', (i) => ts[i], F.RECORD_LOSSES.slice(0, 3), F.RECORD_TIMES_MS);
    const python = (i: number) => `import os\nrun_id = "${i}-${'x'.repeat(i)}"  # fresh each run\n# ${'comment '.repeat(i)}\nlr = 0.05\n`;
    F.writeRuns(join(dir, 'py'), 'r', python, F.RECORD_LOSSES.slice(0, 3), F.RECORD_TIMES_MS);
    for (const sub of ['ts', 'py']) {
      const { report: rep } = await report(join(dir, sub));
      assert.equal(rep.versions.length, 1, `${sub}: one version, got ${rep.versions.map((v) => v.codeHashes[0]).join(', ')}`);
    }
  });

  test('symlinked logs and a symlinked baseline/ are read; a broken link is listed, a baseline/ linking back is refused', async () => {
    const dir = join(root, 'linked');
    const elsewhere = join(root, 'elsewhere');
    const logs = F.writeRuns(join(elsewhere, 'record'), 'rec', F.RECORD_SOURCE, F.RECORD_LOSSES, F.RECORD_TIMES_MS);
    F.writeRuns(join(elsewhere, 'baseline'), 'base', F.BASELINE_SOURCE, F.BASELINE_LOSSES, F.BASELINE_TIMES_MS);
    mkdirSync(dir);
    logs.forEach((log, i) => symlinkSync(log, join(dir, `linked-${i}.txt`)));
    symlinkSync(join(elsewhere, 'baseline'), join(dir, 'baseline'));
    symlinkSync(join(root, 'nowhere.txt'), join(dir, 'broken.txt'));
    const { report: rep } = await report(dir);
    assert.equal(rep.runs.filter((r) => r.role === 'record').length, 8);
    assert.equal(rep.runs.filter((r) => r.role === 'baseline').length, 6);
    assert.deepEqual(rep.skipped.map((s) => [s.file.split('/').pop(), s.reason.split(':')[0]]), [['broken.txt', 'unreadable']]);
    const loop = join(root, 'loop');
    F.writeRuns(loop, 'rec', F.RECORD_SOURCE, F.RECORD_LOSSES, F.RECORD_TIMES_MS);
    symlinkSync('.', join(loop, 'baseline'));
    const looped = await report(loop);
    assert.ok(looped.report.notes.some((n) => /baseline\/ not read: it links to .* which holds the record itself/.test(n)), looped.report.notes.join('\n'));
  });

  test('a log cut inside its source is unfinished, one cut after train_time keeps its step average', async () => {
    const cutSource = parseLog(F.RECORD_SOURCE.slice(0, 30), 'cut.txt');
    assert.deepEqual(cutSource, { ok: false, reason: "unfinished: the log ends inside the training script's source (no line of 100 '=' after it)" });
    const full = F.makeLog({ source: F.RECORD_SOURCE, finalLoss: 3.2781, trainTimeMs: 130412 }).replace(/\npeak memory.*\n$/, '');
    const cut = parseLog(full.replace(/ step_avg:[\d.]+ms$/, ''), 'cut.txt');
    assert.ok(cut.ok);
    assert.equal(cut.run.stepAvgMs, 130412 / 200);
  });

  test('CLI errors name the flag, file or value, and exit with 2', async () => {
    const cases: [string[], RegExp][] = [
      [[recordDir, '--frobnicate'], /Unknown option '--frobnicate'/],
      [[], /no runs given/],
      [[join(root, 'missing.txt')], /no such file or folder: .*missing\.txt/],
      [[join(root, 'nope', '*.txt')], /no files match ".*nope\/\*\.txt"/],
      [[recordDir, '--target', 'abc'], /--target must be a number, got "abc"/],
      [[recordDir, '--alpha', '1.5'], /--alpha must be a number between 0 and 1, got "1\.5"/],
      [[recordDir, '--plot', join(root, 'plot.jpg')], /--plot must name a \.svg or \.png file, got ".*plot\.jpg"/],
      [[recordDir, '--plot', join(root, 'no', 'such', 'p.svg')], /--plot: folder .* does not exist/],
      [[recordDir, '--plot-size', '12by4'], /--plot-size must be WIDTHxHEIGHT/],
      [[recordDir, '--markdown', '--json'], /choose one of --markdown and --json/],
      [[recordDir, '--baseline'], /--baseline/],
      [['--baseline', join(recordDir, 'rec-0.txt'), join(recordDir, 'rec-1.txt')], /no record runs given: all 2 paths after --baseline are baseline runs/],
      [[join(recordDir, 'malformed.txt'), join(recordDir, 'unfinished.txt')], /no usable record run .*malformed\.txt \(malformed.*unfinished\.txt \(unfinished/],
      [[join(recordDir, 'rec-0.txt'), '--baseline', join(recordDir, 'rec-0.txt')], /given both as a record run and as a baseline run/],
    ];
    for (const [argv, message] of cases) {
      const r = await run(...argv);
      assert.equal(r.code, 2, `exit status for ${argv.join(' ')}`);
      assert.match(r.stderr, /^stats\.ts: error: /);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '');
    }
  });

  test('--help lists every flag', async () => {
    const r = await run('--help');
    assert.equal(r.code, 0);
    for (const name of Object.keys(OPTIONS)) assert.match(r.stdout, new RegExp(`--${name}\\b`), `--${name} in help`);
    assert.equal(r.stdout, USAGE);
    assert.deepEqual(parseCli(['a', '--baseline', 'b', 'c', '--json', 'd']).baseline, ['b', 'c']);
    assert.deepEqual(parseCli(['a', '--baseline', 'b', 'c', '--json', 'd']).record, ['a', 'd']);
  });

  test('--plot draws an SVG of the stated size: the whole run and the finish, a shade per run, group means with n, final points', async () => {
    const file = join(root, 'curves.svg');
    const r = await run(recordDir, '--plot', file, '--plot-size', '640x400');
    assert.equal(r.code, 0);
    const svg = readFileSync(file, 'utf8');
    assert.match(svg, /^<svg [^>]*width="640" height="400"/);
    const parsed = new Resvg(svg); // throws on an invalid SVG
    assert.equal(parsed.width, 640);
    assert.equal(parsed.height, 400);
    assert.match(svg, /target 3\.28/);
    for (const view of [0, 1]) {
      // One line per usable run in both views, and a thick mean line per group.
      assert.equal((svg.match(new RegExp(`class="mark-line role-mark concat_${view}_layer_0_marks`, 'g')) ?? []).length, 14);
      assert.equal((svg.match(new RegExp(`class="mark-line role-mark concat_${view}_layer_1_marks`, 'g')) ?? []).length, 2);
      assert.match(svg, new RegExp(`class="mark-symbol role-mark concat_${view}_layer_2_marks`)); // the final points
    }
    assert.match(svg, /the finish/);
    assert.match(svg, /record mean \(n = 8\)/);
    assert.match(svg, /baseline mean \(n = 6\)/);
    const strokes = new Set(svg.match(/stroke="#[0-9a-f]{6}"/g));
    assert.ok(strokes.has('stroke="#d62728"') && strokes.has('stroke="#1f77b4"'), 'the role colours');
    assert.ok(strokes.size >= 14, `a shade per run: ${strokes.size} colours`);
    // The record is drawn after (above) the baseline.
    assert.ok(svg.indexOf('stroke="#d62728"') > svg.indexOf('stroke="#1f77b4"'));
    const alone = join(root, 'alone.svg');
    assert.equal((await run(join(recordDir, 'rec-*.txt'), '--plot', alone)).code, 0);
    assert.doesNotMatch(readFileSync(alone, 'utf8'), /baseline/, 'no baseline entry without a baseline');
    assert.deepEqual(readdirSync(root).filter((f) => f.endsWith('.part')), []); // the temp file was renamed
    mkdirSync(join(root, 'folder.svg'));
    const blocked = await run(recordDir, '--plot', join(root, 'folder.svg'));
    assert.equal(blocked.code, 2);
    assert.match(blocked.stderr, /--plot: cannot write .*folder\.svg/);
    assert.deepEqual(readdirSync(root).filter((f) => f.endsWith('.part')), []); // and no temp file is left behind
  });

  test('the clip note names the end of the loss axis', async () => {
    const { report: rep } = await report(recordDir);
    const spec = plotSpec(rep.runs, 3.28, { width: 900, height: 560 }) as unknown as {
      title: { subtitle: string }; vconcat: { layer: { encoding: { y: { scale: { domain: number[]; nice: boolean } } } }[] }[];
    };
    const scale = spec.vconcat[0].layer[0].encoding.y.scale;
    assert.equal(scale.nice, false, 'the axis ends at the domain, not at a rounded tick beyond it');
    assert.equal(spec.title.subtitle, `losses above ${scale.domain[1].toFixed(2)} clipped`);
    assert.equal(scale.domain[1], Number(scale.domain[1].toFixed(2)));
  });

  test('--plot draws a PNG of the stated size', async () => {
    const file = join(root, 'curves.png');
    const r = await run(recordDir, '--plot', file, '--plot-size', '500x300');
    assert.equal(r.code, 0);
    const png = readFileSync(file);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.equal(png.subarray(12, 16).toString('ascii'), 'IHDR');
    assert.equal(png.readUInt32BE(16), 500);
    assert.equal(png.readUInt32BE(20), 300);
  });

  test('executed directly, it runs the command (importing it, as these tests do, does not)', async () => {
    const { status, stdout, stderr } = await direct;
    assert.equal(status, 0, stderr);
    assert.equal((JSON.parse(stdout) as Report).verdict.certified, true);
  });
});

// ---------------------------------------------------------------------------------------------------------
// --compare: an ablation, one folder per variant, against one baseline
// ---------------------------------------------------------------------------------------------------------

describe('stats.ts --compare', () => {
  let root: string;
  let ablation: string; // baseline/ (6 runs), canon-a/ (8 and an unfinished log), parallel/ (4, worse), skip-none/ (1), ablation.json
  // The logged configuration of a run of the short preset with one flag changed; seed and log folder differ per run.
  const config = (change: Record<string, unknown>) => (seed: number) =>
    ({ preset: 'short', corpus: 'builtin-gpt2', canon: 'none', parallel: false, skip: '4-7', lambdaInit: 1.1, seed, logDir: `out/${seed}`, ...change });

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'stats-compare-'));
    ablation = join(root, 'ablation');
    F.writeRuns(join(ablation, 'baseline'), 'run', F.RECORD_SOURCE, F.BASELINE_LOSSES, F.BASELINE_TIMES_MS, config({}));
    F.writeRuns(join(ablation, 'canon-a'), 'run', F.RECORD_SOURCE, F.RECORD_LOSSES, F.RECORD_TIMES_MS, config({ canon: 'A' }));
    writeFileSync(join(ablation, 'canon-a', 'interrupted.txt'),
      F.makeLog({ source: F.RECORD_SOURCE, finalLoss: 3.27, trainTimeMs: 90000, stopAtStep: 130, config: config({ canon: 'A' })(9) }));
    F.writeRuns(join(ablation, 'parallel'), 'run', F.RECORD_SOURCE, F.WORSE_LOSSES, F.WORSE_TIMES_MS, config({ parallel: true }));
    F.writeRuns(join(ablation, 'skip-none'), 'run', F.RECORD_SOURCE, [3.279], [135000], config({ skip: 'none' }));
    writeFileSync(join(ablation, 'ablation.json'), '{}\n'); // a file among the folders: the glob passes over it
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  async function compare(...argv: string[]): Promise<CompareReport> {
    const r = await run(...argv, '--json');
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    return JSON.parse(r.stdout) as CompareReport;
  }

  test('every variant against the baseline: Welch tests as scipy, Holm across the variants, verdicts, runs needed', async () => {
    const rep = await compare('--baseline', join(ablation, 'baseline'), '--compare', join(ablation, '*'));
    assert.equal(rep.kind, 'compare');
    assert.deepEqual(rep.variants.map((v) => v.name), ['canon-a', 'parallel', 'skip-none']);
    assert.deepEqual(rep.variants.map((v) => v.loss?.n), [8, 4, 1]);
    assert.equal(rep.baseline.loss.n, 6);
    assertClose(rep.baseline.loss.sd, SCIPY.baseline.sd, 'baseline sd', 1e-10);
    assert.ok(rep.notes.some((n) => /ablation\/baseline\/ holds baseline runs: not compared with itself/.test(n)), rep.notes.join('\n'));
    assert.ok(rep.notes.some((n) => /variant skip-none: not tested/.test(n)));
    assert.deepEqual(rep.skipped.map((s) => [s.variant, s.file.split('/').pop(), s.reason.split(':')[0]]), [['canon-a', 'interrupted.txt', 'unfinished']]);
    assert.deepEqual(rep.variants.map((v) => v.changes), [['canon "none" → "A"'], ['parallel false → true'], ['skip "4-7" → "none"']]);

    const [canon, parallel, skipNone] = rep.variants;
    assert.ok(canon.vsBaseline?.timeS && parallel.vsBaseline?.timeS);
    const cl = canon.vsBaseline.loss;
    for (const [got, want, what] of [[cl.t, SCIPY.welchLoss.t, 't'], [cl.df, SCIPY.welchLoss.df, 'df'], [cl.diff, SCIPY.welchLoss.diff, 'diff'],
      [cl.ci95[0], SCIPY.welchLoss.ci[0], 'ci low'], [cl.ci95[1], SCIPY.welchLoss.ci[1], 'ci high']] as const) assertClose(got, want, `canon-a loss ${what}`, 1e-9);
    assertClose(cl.p, SCIPY.welchLoss.pLess, 'canon-a p lower', 1e-8);
    assertClose(cl.pTwoSided, SCIPY.welchLoss.pTwo, 'canon-a p two-sided', 1e-8);
    assertClose(cl.pHigher, 1 - SCIPY.welchLoss.pLess, 'canon-a p higher', 1e-9);
    const pl = parallel.vsBaseline.loss;
    assertClose(pl.t, WORSE_REF.loss.t, 'parallel t', 1e-9);
    assertClose(pl.df, WORSE_REF.loss.df, 'parallel df', 1e-9);
    assertClose(pl.p, WORSE_REF.loss.pLess, 'parallel p lower', 1e-9);
    assertClose(pl.pHigher, WORSE_REF.loss.pGreater, 'parallel p higher', 1e-8);
    assertClose(pl.pTwoSided, WORSE_REF.loss.pTwo, 'parallel p two-sided', 1e-8);
    assertClose(pl.ci95[0], WORSE_REF.loss.ci[0], 'parallel ci low', 1e-9);
    assertClose(pl.ci95[1], WORSE_REF.loss.ci[1], 'parallel ci high', 1e-9);
    assertClose(parallel.vsBaseline.timeS.p, WORSE_REF.time.pLess, 'parallel time p lower', 1e-9);
    assertClose(canon.vsBaseline.timeS.p, SCIPY.welchTime.pLess, 'canon-a time p lower', 1e-8);
    assert.equal(skipNone.vsBaseline, null);

    // Holm over m = 3 (the untested variant counts), by hand from the scipy p-values: lower losses are canon-a's
    // 0.0487 (smallest: ·3), parallel's 0.99999 (·2, capped at 1); higher losses are parallel's 5.83e-6 (·3), canon-a's 0.951
    // (·2, capped). Times: canon-a's 3.7e-11 (·3); parallel's 0.568 lower (·2 → 1) and 0.432 higher (smallest: ·3 → 1).
    assertClose(cl.holmLower, 3 * SCIPY.welchLoss.pLess, 'canon-a Holm lower', 1e-8);
    assert.equal(cl.holmHigher, 1);
    assertClose(pl.holmHigher, 3 * WORSE_REF.loss.pGreater, 'parallel Holm higher', 1e-8);
    assert.equal(pl.holmLower, 1);
    assertClose(canon.vsBaseline.timeS.holmLower, 3 * SCIPY.welchTime.pLess, 'canon-a time Holm lower', 1e-8);
    assertClose(cl.holmTwoSided, Math.max(2 * SCIPY.welchLoss.pTwo, 3 * WORSE_REF.loss.pTwo), 'canon-a Holm two-sided', 1e-8);
    assert.deepEqual([parallel.vsBaseline.timeS.holmLower, parallel.vsBaseline.timeS.holmHigher], [1, 1]);
    assert.deepEqual(rep.variants.map((v) => v.lossVerdict), ['inconclusive', 'worse', 'untested']);
    assert.deepEqual(rep.variants.map((v) => v.timeVerdict), ['faster', 'inconclusive', 'untested']);
    // Runs in each group for p < alpha / m, at the observed difference and spreads (scipy's).
    assert.deepEqual(rep.variants.map((v) => v.runsNeeded.forP), [WELCH_RUNS_REF[0][1], WELCH_RUNS_REF[0][2], null]);
    assert.match(rep.correction, /Holm's step-down correction over the m = 3 variants/);
  });

  test('the terminal table and the markdown block state the numbers, the correction and what each variant changes', async () => {
    const terminal = await run('--baseline', join(ablation, 'baseline'), '--compare', join(ablation, 'canon-a'), join(ablation, 'parallel'));
    assert.equal(terminal.code, 0, terminal.stderr);
    assert.match(terminal.stdout, /stats\.ts: 2 variants against the baseline, alpha 0\.01/);
    assert.match(terminal.stdout, /Found 19 log files: 6 baseline runs, 12 runs of 2 variants, 1 skipped\./);
    assert.match(terminal.stdout, /^ {2}canon-a +8 +3\.27831 +\[3\.27767, 3\.27895\] +-0\.00077 +\[-0\.00171, 0\.00017\] +0\.09749 +0\.04875 +0\.09749 +0\.9513 +inconclusive +16 \(have 6\)$/m);
    // With m = 2, by hand: canon-a's p lower 0.0487 · 2 = 0.09749; higher 0.9513 · 1 after parallel's; 16 runs each for p < 0.005 (scipy).
    assert.match(terminal.stdout, /^ {2}parallel +4 .* worse +3 \(reached\)$/m);
    assert.match(terminal.stdout, /^ {2}canon-a +8 +130\.519 .* -4\.468 +-3\.31 % .* faster$/m);
    assert.match(terminal.stdout, /Holm's step-down correction over the m = 2 variants/);
    assert.match(terminal.stdout, /^ {2}canon-a: canon "none" → "A"$/m);
    const markdown = await run('--baseline', join(ablation, 'baseline'), '--compare', join(ablation, '*'), '--markdown');
    assert.equal(markdown.code, 0);
    assert.match(markdown.stdout, /^## Ablation: 3 variants against the baseline\n/);
    assert.match(markdown.stdout, /^\| baseline \| 6 \| 3\.27908 \| \[3\.27824, 3\.27992\] \|/m);
    assert.match(markdown.stdout, /^\| parallel \| 4 \| 3\.28520 \| \[3\.28392, 3\.28648\] \| \+0\.00612 \| \[0\.00487, 0\.00736\] \| 1\.166e-5 \| 1\.000 \| 1\.000 \| 1\.749e-5 \| worse \| 3 \(reached\) \|$/m);
    assert.match(markdown.stdout, /^\| skip-none \| 1 \| 3\.27900 \| n\/a \| n\/a .* untested \| — \|$/m);
    assert.match(markdown.stdout, /\*\*Multiple comparisons\.\*\* Holm's step-down correction over the m = 3 variants/);
    assert.match(markdown.stdout, /^- parallel: parallel false → true$/m);
    assert.match(markdown.stdout, /^\| canon-a \| .*interrupted\.txt \| unfinished: last validation at step 100 of 200 \|$/m);
  });

  test('a folder mixing configurations is refused, naming them; --allow-mixed pools them and says so', async () => {
    const dir = join(root, 'mixed');
    F.writeRuns(join(dir, 'baseline'), 'run', F.RECORD_SOURCE, F.BASELINE_LOSSES, F.BASELINE_TIMES_MS, config({}));
    F.writeRuns(join(dir, 'lambda'), 'a', F.RECORD_SOURCE, F.RECORD_LOSSES.slice(0, 3), F.RECORD_TIMES_MS, config({ lambdaInit: 1 }));
    F.writeRuns(join(dir, 'lambda'), 'b', F.RECORD_SOURCE, F.RECORD_LOSSES.slice(3, 5), F.RECORD_TIMES_MS, config({ lambdaInit: 1, numIterations: 300 }));
    const refused = await run('--baseline', join(dir, 'baseline'), '--compare', join(dir, 'lambda'));
    assert.equal(refused.code, 2);
    assert.equal(refused.stdout, '');
    assert.match(refused.stderr, /^stats\.ts: error: variant lambda \(.*mixed\/lambda\/\) mixes runs of different configurations: 3 of [0-9a-f]{8}\/[0-9a-f]{8}, 2 of [0-9a-f]{8}\/[0-9a-f]{8} \(numIterations \(absent\) → 300\); one folder must hold the runs of one variant: .*--allow-mixed/);
    const pooled = await compare('--baseline', join(dir, 'baseline'), '--compare', join(dir, 'lambda'), '--allow-mixed');
    assert.equal(pooled.variants[0].loss?.n, 5);
    assert.ok(pooled.notes.some((n) => /variant lambda .* pooled because of --allow-mixed/.test(n)));
    // The baseline folder too.
    F.writeRuns(join(dir, 'baseline'), 'other', F.RECORD_SOURCE, F.BASELINE_LOSSES.slice(0, 2), F.BASELINE_TIMES_MS, config({ seqLen: 1024 }));
    const baseline = await run('--baseline', join(dir, 'baseline'), '--compare', join(dir, 'lambda'), '--allow-mixed');
    assert.equal(baseline.code, 0);
    assert.match((await run('--baseline', join(dir, 'baseline'), '--compare', join(ablation, 'canon-a'))).stderr, /error: the baseline \(.*\) mixes runs of different configurations/);
  });

  test('--seeds counts only the runs of the seeds listed (the others skipped, with the reason); seeds on one side only are said', async () => {
    const args = ['--baseline', join(ablation, 'baseline'), '--compare', join(ablation, 'canon-a'), join(ablation, 'parallel')];
    const all = await compare(...args);
    assert.ok(all.notes.some((n) => /^variant canon-a ran seeds 0,1,2,3,4,5,6,7, the baseline 0,1,2,3,4,5: a seed's initialisation is the same in every variant/.test(n)), all.notes.join('\n'));
    assert.ok(all.notes.some((n) => /^variant parallel ran seeds 0,1,2,3, the baseline 0,1,2,3,4,5:/.test(n)));
    const matched = await compare(...args, '--seeds', '0-3');
    assert.equal(matched.baseline.loss.n, 4);
    assert.deepEqual(matched.variants.map((v) => v.loss?.n), [4, 4]);
    assert.ok(!matched.notes.some((n) => / ran seeds /.test(n)), matched.notes.join('\n'));
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    assertClose(matched.variants[0].vsBaseline!.loss.diff, mean(F.RECORD_LOSSES.slice(0, 4)) - mean(F.BASELINE_LOSSES.slice(0, 4)), 'canon-a Δ on seeds 0-3', 1e-9);
    assert.deepEqual(matched.skipped.map((k) => `${k.variant ?? k.role} ${k.reason}`).sort().slice(0, 3),
      ['baseline seed 4 is not among --seeds 0,1,2,3', 'baseline seed 5 is not among --seeds 0,1,2,3', 'canon-a seed 4 is not among --seeds 0,1,2,3']);
    assert.equal(matched.skipped.filter((k) => / is not among --seeds /.test(k.reason)).length, 2 + 4);
    const bad = await run(...args, '--seeds', '1-x');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^stats\.ts: error: --seeds "1-x": expected a list such as 0-4/);
  });

  test('--paired: paired t-tests over the seeds both ran (as scipy.stats.ttest_rel), the unpaired runs said, Holm as before', async () => {
    const rep = await compare('--baseline', join(ablation, 'baseline'), '--compare', join(ablation, 'canon-a'), join(ablation, 'parallel'), '--paired');
    assert.equal(rep.paired, true);
    const [canon, parallel] = rep.variants;
    assert.deepEqual([canon.loss?.n, parallel.loss?.n], [6, 4], 'canon-a pairs seeds 0-5 with the baseline, parallel 0-3');
    // scipy.stats.ttest_rel(RECORD_LOSSES[:6], BASELINE_LOSSES, alternative='less'), its two-sided p and interval; d_z = mean/sd of the differences.
    const cl = canon.vsBaseline!.loss;
    for (const [got, want, what] of [[cl.t, -3.4921514788481467, 't'], [cl.p, 0.008715118236569945, 'p lower'], [cl.pTwoSided, 0.01743023647313989, 'p two-sided'],
      [cl.diff, -0.0006666666666667412, 'diff'], [cl.ci95[0], -0.00115740174334875, 'ci low'], [cl.ci95[1], -0.00017593158998473267, 'ci high'],
      [cl.cohenD, -1.4256648712806068, 'd_z']] as const) assertClose(got, want, `canon-a paired ${what}`, 1e-8);
    assert.equal(cl.df, 5);
    // scipy.stats.ttest_rel(WORSE_LOSSES, BASELINE_LOSSES[:4]): t 78.33, two-sided p 4.585e-6.
    assertClose(parallel.vsBaseline!.loss.t, 78.33333333323048, 'parallel paired t', 1e-6);
    assertClose(parallel.vsBaseline!.loss.pTwoSided, 4.585389007015924e-06, 'parallel paired p two-sided', 1e-6);
    // Holm over the 2 variants, as for Welch.
    assertClose(parallel.vsBaseline!.loss.holmHigher, Math.min(1, 2 * Math.min(parallel.vsBaseline!.loss.pHigher, cl.pHigher)), 'Holm of the smaller p higher', 1e-12);
    assert.equal(parallel.lossVerdict, 'worse');
    assert.ok(rep.notes.some((n) => /^variant canon-a: paired over seeds 0,1,2,3,4,5; 2 of its runs and 0 of the baseline's have no partner/.test(n)), rep.notes.join('\n'));
    assert.ok(rep.notes.some((n) => /^variant parallel: paired over seeds 0,1,2,3; 0 of its runs and 2 of the baseline's have no partner/.test(n)));
    assert.ok(!rep.notes.some((n) => / ran seeds /.test(n)), 'the unmatched-seeds warning is for Welch tests');
    assert.match(rep.correction, /paired t-test over the seeds both the variant and the baseline ran/);
    const text = await run('--baseline', join(ablation, 'baseline'), '--compare', join(ablation, 'canon-a'), '--paired', '--markdown');
    assert.match(text.stdout, /\*\*Final val loss \(paired t-tests over the seeds both ran, variant − baseline; lower is better\):\*\*/);
    const alone = await run(join(ablation, 'canon-a'), '--paired');
    assert.equal(alone.code, 2);
    assert.match(alone.stderr, /--paired goes with --compare/);
  });

  test('a variant timed on other hardware is not compared in time unless --allow-hardware-mismatch; other source code is said', async () => {
    const dir = join(root, 'elsewhere');
    mkdirSync(join(dir, 'cpu'), { recursive: true });
    F.RECORD_LOSSES.slice(0, 3).forEach((finalLoss, i) => writeFileSync(join(dir, 'cpu', `run-${i}.txt`), F.makeLog({ source: F.RECORD_SOURCE, finalLoss,
      trainTimeMs: F.RECORD_TIMES_MS[i], gpuListing: 'nvidia-smi: not available (no NVIDIA GPU listed)', config: config({ canon: 'AC' })(i) })));
    F.writeRuns(join(dir, 'edited'), 'run', F.RECORD_VARIANT_SOURCE, F.RECORD_LOSSES.slice(0, 3), F.RECORD_TIMES_MS, config({}));
    const args = ['--baseline', join(ablation, 'baseline'), '--compare', join(dir, 'cpu'), join(dir, 'edited')];
    const rep = await compare(...args);
    const [cpu, edited] = rep.variants;
    assert.ok(cpu.vsBaseline && cpu.vsBaseline.timeS === null, 'loss compared, time not');
    assert.equal(cpu.timeVerdict, 'untested');
    assert.notEqual(cpu.lossVerdict, 'untested');
    assert.ok(rep.notes.some((n) => /variant cpu ran on no GPU listed, the baseline on 2× NVIDIA H100 80GB HBM3: times not compared \(pass --allow-hardware-mismatch/.test(n)), rep.notes.join('\n'));
    assert.ok(rep.notes.some((n) => /variant edited runs other source code than the baseline/.test(n)));
    assert.ok(!rep.notes.some((n) => /variant edited logs the baseline's configuration/.test(n)), 'its configuration is the baseline\'s but its code is not');
    assert.ok(rep.differences.some((d) => /^edited: baseline .* source differs/.test(d)) && rep.differences.includes('    + const lr = 0.06;'), rep.differences.join('\n'));
    assert.deepEqual(edited.changes, []);
    const allowed = await compare(...args, '--allow-hardware-mismatch');
    assert.ok(allowed.variants[0].vsBaseline?.timeS);
    assert.ok(allowed.notes.some((n) => /times compared because of --allow-hardware-mismatch/.test(n)));
    // A variant with the baseline's code and configuration compares the baseline with itself: said too.
    F.writeRuns(join(dir, 'same'), 'run', F.RECORD_SOURCE, F.RECORD_LOSSES.slice(0, 2), F.RECORD_TIMES_MS, config({}));
    assert.ok((await compare('--baseline', join(ablation, 'baseline'), '--compare', join(dir, 'same'))).notes
      .some((n) => /variant same logs the baseline's configuration: it compares the baseline with itself/.test(n)));
  });

  test('--compare errors name the flag, folder or value, and exit with 2', async () => {
    mkdirSync(join(root, 'other', 'baseline'), { recursive: true });
    const base = join(ablation, 'baseline');
    const cases: [string[], RegExp][] = [
      [['--compare', join(ablation, 'canon-a')], /--compare needs --baseline RUNS/],
      [[join(ablation, 'parallel'), '--baseline', base, '--compare', join(ablation, 'canon-a')], /with --compare, every variant folder goes after --compare \(got .*parallel before it\)/],
      [['--baseline', base, '--compare', join(ablation, 'canon-a'), '--target', '3.3'], /--target does not apply with --compare/],
      [['--baseline', base, '--compare', join(ablation, 'ablation.json')], /--compare takes one folder per variant: .*ablation\.json is not a folder/],
      [['--baseline', base, '--compare', join(ablation, '*.json')], /--compare: no folders match ".*\*\.json"/],
      [['--baseline', base, '--compare', join(root, 'other', 'baseline')], /other\/baseline: a variant folder may not be named baseline/],
      [['--baseline', base, '--compare', base], /--compare: no variant folder besides the baseline/],
      [['--baseline', join(ablation, 'skip-none', 'nothing.txt'), '--compare', join(ablation, 'canon-a')], /no such file or folder: .*nothing\.txt/],
    ];
    for (const [argv, message] of cases) {
      const r = await run(...argv);
      assert.equal(r.code, 2, `exit status for ${argv.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^stats\.ts: error: /);
      assert.match(r.stderr, message);
    }
  });

  test('--plot draws each variant\'s mean and CI coloured by its verdict, its single runs, and the baseline across every row', async () => {
    const file = join(root, 'ablation.svg');
    const r = await run('--baseline', join(ablation, 'baseline'), '--compare', join(ablation, '*'), '--plot', file, '--plot-size', '800x500');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Plot written to .*ablation\.svg/);
    const svg = readFileSync(file, 'utf8');
    assert.match(svg, /^<svg [^>]*width="800" height="500"/);
    assert.equal(new Resvg(svg).width, 800);
    // One interval per group with at least 2 runs, in its verdict's colour.
    const interval = (label: string, verdict: string, colour: string): RegExp =>
      new RegExp(`aria-label="final val loss: [\\d.]+; label: ${label}; x2: [\\d.]+; verdict: ${verdict}" role="graphics-symbol" aria-roledescription="rule mark"[^>]*stroke="${colour}"`);
    assert.match(svg, interval('baseline \\(n = 6\\)', 'baseline', '#1f77b4'));
    assert.match(svg, interval('canon-a \\(n = 8\\)', 'inconclusive', '#7f7f7f'));
    assert.match(svg, interval('parallel \\(n = 4\\)', 'worse', '#d62728'));
    assert.equal((svg.match(/aria-roledescription="rule mark"[^>]*stroke-width="2\.5"/g) ?? []).length, 3, 'no interval for one run');
    assert.match(svg, /label: skip-none \(n = 1\); verdict: untested/);
    assert.equal((svg.match(/class="mark-rect role-mark/g) ?? []).length, 1, "the baseline's band");
    assert.match(svg, /stroke-dasharray="6,4"/);
    // Every single run: 6 + 8 + 4 + 1 small circles.
    const singles = svg.match(/aria-label="final val loss: [\d.]+; label: [^"]+" role="graphics-symbol" aria-roledescription="point"[^>]*stroke="#555555"/g) ?? [];
    assert.equal(singles.length, 19);
    assert.equal(singles.filter((p) => p.includes('label: canon-a (n = 8)')).length, 8);
  });
});
