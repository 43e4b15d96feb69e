// The command line of train_gpt.ts: flag parsing and config checks in-process, then whole runs as a user
// starts them (`node --import tsx train_gpt.ts ...`, a few seconds each on the built-in bytes corpus):
// exit codes, the log format, checkpoints and resuming, and one-line errors without stack traces.
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, DEFAULTS, PRESETS, RunLog, defaultGpus, helpText, parseFlags, resolveConfig, type Config } from '../train_gpt.ts';
import { SEPARATOR, parseStepLine } from '../log_format.ts';
import { parseLog as statsParseLog } from '../stats.ts';
import { randomInt } from './seed.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'train-cli-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Asserts fn throws a ConfigError whose message matches every pattern. */
function assertConfigError(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'); // a path inside a RegExp
const kebab = (k: string) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
/** A value as the command line spells it. */
const fmt = (v: unknown) => Array.isArray(v) ? (v.length ? v.join(',') : 'none') : typeof v === 'boolean' ? (v ? 'on' : 'off') : v === '' ? 'none' : String(v);

test('parseFlags: values by type, a bare boolean flag means on; unknown flags and bad values are ConfigErrors naming the flag', () => {
  const { overrides, help } = parseFlags(['--model-dim', '64', '--adam-lr=0.02', '--parallel', '--tie-embed', 'off', '--no-attn-layers', '1,3',
    '--no-mlp-layers', 'none', '--mlp', 'swiglu', '--canon', 'AC', '--smear']);
  assert.equal(help, false);
  assert.deepEqual(overrides, { modelDim: 64, adamLr: 0.02, parallel: true, tieEmbed: false, noAttnLayers: [1, 3], noMlpLayers: [], mlp: 'swiglu', canon: 'AC', smear: true });
  assert.deepEqual(parseFlags(['--backout', 'no', '--qk-norm', 'yes', '--attn-gate', '0']).overrides, { backout: false, qkNorm: true, attnGate: false });
  assert.deepEqual(parseFlags([]), { overrides: {}, help: false });
  assert.equal(parseFlags(['--help']).help, true);

  assertConfigError(() => parseFlags(['--model-dimm', '64']), /'--model-dimm'/, /see --help/);
  assertConfigError(() => parseFlags(['--model-dim', 'abc']), /^--model-dim "abc": expected a number/);
  assertConfigError(() => parseFlags(['--model-dim', '']), /^--model-dim "": expected a number/);
  assertConfigError(() => parseFlags(['--num-layers', '2.5']), /^--num-layers "2.5": expected an integer/);
  assertConfigError(() => parseFlags(['--adam-lr', 'NaN']), /^--adam-lr "NaN": expected a number/);
  assertConfigError(() => parseFlags(['--parallel', 'maybe']), /^--parallel "maybe": expected on or off/);
  assertConfigError(() => parseFlags(['--mlp', 'gelu']), /^--mlp "gelu": expected one of relu2, swiglu/);
  assertConfigError(() => parseFlags(['--backend', 'gpu']), /^--backend "gpu": expected one of auto, cuda, tensorflow, wasm$/);
  // tfjs's JavaScript cpu backend cannot finish a step of the tiny model in minutes: refused, naming the CPU backend that works.
  assertConfigError(() => parseFlags(['--backend', 'cpu']), /^--backend cpu is not offered: .*--backend wasm runs on the CPU$/);
  assert.doesNotMatch(helpText(), /--backend \S*\bcpu\b/);
  assertConfigError(() => parseFlags(['--no-attn-layers', '1,x']), /^--no-attn-layers "1,x": expected a comma-separated list/);
  assertConfigError(() => parseFlags(['--window-schedule', '3,-1']), /^--window-schedule "3,-1": expected a comma-separated list of non-negative integers/);
  assertConfigError(() => parseFlags(['--model-dim']), /--model-dim/); // value missing
  assertConfigError(() => parseFlags(['stray']), /stray/);
  assertConfigError(() => parseFlags(['--resume', '']), /^--resume "": expected a non-empty value$/); // it would train from scratch
  assertConfigError(() => parseFlags(['--resume=']), /^--resume "": expected a non-empty value$/);
});

test('parseFlags: each flag\'s range, with negative numbers in both spellings (--x -1 and --x=-1)', () => {
  // A negative number is a value, not a flag: taken where the range allows it...
  assert.deepEqual(parseFlags(['--seed', '-3', '--lambda-init=-0.5', '--backout-init', '-1e-2']).overrides, { seed: -3, lambdaInit: -0.5, backoutInit: -0.01 });
  // ...and refused, naming the flag, the value and the range, where it does not.
  const refused: [string, RegExp][] = [
    ['--adam-lr', /expected a number ≥ 0$/], ['--muon-lr', /expected a number ≥ 0$/], ['--embed-lr-mul', /expected a number ≥ 0$/],
    ['--gpus', /expected an integer ≥ 0$/], ['--val-every', /expected an integer ≥ 0$/], ['--checkpoint-every', /expected an integer ≥ 0$/],
    ['--warmup-steps', /expected an integer ≥ 0$/], ['--bos-token', /expected an integer ≥ 0$/], ['--model-dim', /expected an integer ≥ 1$/],
    ['--adam-eps', /expected a number > 0$/],
  ];
  for (const [flag, why] of refused) {
    assertConfigError(() => parseFlags([flag, '-1']), new RegExp(`^${flag} "-1": ${why.source}`));
    assertConfigError(() => parseFlags([`${flag}=-1`]), new RegExp(`^${flag} "-1": ${why.source}`));
  }
  assertConfigError(() => parseFlags(['--model-dim', '0']), /^--model-dim "0": expected an integer ≥ 1$/);
  assertConfigError(() => parseFlags(['--num-layers', '2.5']), /^--num-layers "2.5": expected an integer ≥ 1$/);
  assertConfigError(() => parseFlags(['--cooldown-frac', '1.5']), /^--cooldown-frac "1.5": expected a number in \[0, 1\]$/);
  // Betas and momenta are in [0, 1): 1 would never forget.
  for (const flag of ['--adam-beta1', '--adam-beta2', '--muon-momentum', '--muon-momentum-start']) {
    for (const bad of ['1', '-0.1', '1.5']) assertConfigError(() => parseFlags([flag, bad]), new RegExp(`^${flag} "${esc(bad)}": expected a number in \\[0, 1\\)$`));
    assert.deepEqual(Object.values(parseFlags([flag, '0', flag, '0.999']).overrides), [0.999]);
  }
});

test('every default and tiny value is valid for its own flag', () => {
  for (const values of [DEFAULTS, PRESETS.tiny] as Partial<Config>[]) {
    for (const [k, v] of Object.entries(values)) {
      if (v === '') continue; // --resume: no checkpoint, which no flag value spells
      assert.deepEqual(parseFlags([kebab(k), fmt(v)]).overrides, { [k]: v }, kebab(k));
    }
  }
});

test('--help lists every flag once, by section, with its default (and the tiny preset value where it differs), wrapped to the width', () => {
  for (const width of [100, 60]) {
    const text = helpText(width);
    const lines = text.split('\n');
    for (const l of lines) assert.ok(l.length <= width || !l.trim().includes(' '), `within ${width} columns: ${l}`);
    assert.doesNotMatch(text, /\(default: \)/, 'no empty default');
    const sections = lines.filter((l) => /^\S.*:$/.test(l));
    assert.deepEqual(sections, ['Data:', 'Model:', 'Attention:', 'Optimisers:', 'Batch and schedule:', 'Run control:', 'Backend and GPUs:']);
    for (const [k, v] of Object.entries(DEFAULTS)) {
      const at = lines.flatMap((l, i) => l.startsWith(`  ${kebab(k)} `) ? [i] : []);
      assert.equal(at.length, 1, `--help lists ${kebab(k)} once`);
      // The flag's entry: its line and the lines under it, indented further.
      let end = at[0] + 1;
      while (end < lines.length && lines[end].startsWith('      ')) end++;
      const entry = lines.slice(at[0], end).map((l) => l.trim()).join(' ');
      assert.ok(end > at[0] + 1, `${kebab(k)}: its help is under it`);
      assert.ok(entry.includes(`(default: ${fmt(v)})`), `${kebab(k)} shows its default ${fmt(v)}: ${entry}`);
      const tiny = (PRESETS.tiny as Record<string, unknown>)[k];
      if (tiny !== undefined) assert.ok(entry.includes(`[tiny: ${fmt(tiny)}]`), `${kebab(k)} shows its tiny value: ${entry}`);
      else assert.ok(!entry.includes('[tiny:'), `${kebab(k)}: no tiny value`);
    }
    assert.ok(lines.includes('  --help'));
    assert.match(text.replace(/\n/g, ' '), /bare --flag means on/);
  }
  assert.match(helpText(), /--resume FILE \(default: none\)/);
  assert.match(helpText(), /--adam-beta1 X in \[0, 1\) \(default: 0\.65\)/);
  assert.match(helpText(), /--num-layers N ≥ 1 \(default: 12\) \[tiny: 4\]/);
  assert.match(helpText(), /--mlp relu2\|swiglu \(default: relu2\)/);
});

test('resolveConfig: presets under flags; invalid combinations are ConfigErrors naming the flags; --block sas turns its exclusions off and says so', () => {
  const resolve = (argv: string[], preset: 'speedrun' | 'tiny' = 'speedrun') => resolveConfig(preset, parseFlags(argv).overrides);
  // Defaults, preset, flags in that order.
  assert.deepEqual(resolve([]).cfg, { ...DEFAULTS, preset: 'speedrun' });
  const tiny = resolve(['--model-dim', '64', '--skip', 'none'], 'tiny').cfg;
  assert.equal(tiny.modelDim, 64);
  assert.equal(tiny.skip, 'none');
  assert.equal(tiny.numLayers, PRESETS.tiny.numLayers);
  assert.equal(tiny.corpus, 'builtin-bytes');

  const bad: [string[], RegExp[]][] = [
    [['--block', 'sas', '--value-embeds', '3'], [/--block sas excludes --value-embeds 3/]],
    [['--block', 'sas-p', '--attn-gate', 'on'], [/--block sas-p excludes --attn-gate on /]],
    [['--block', 'sas', '--parallel'], [/--block sas excludes --parallel on /]],
    [['--block', 'sas', '--block-lambdas', 'yes'], [/--block sas excludes --block-lambdas on /]],
    [['--block', 'sas', '--attn-score', 'softpick'], [/--block sas excludes --attn-score softpick/]],
    [['--block', 'sas', '--canon', 'B'], [/--block sas excludes Canon B/]],
    [['--block', 'sas', '--kv-heads', '2'], [/--block sas excludes grouped-query attention/, /--kv-heads 2/, /--num-heads 6/]],
    [['--block', 'sas', '--head-dim', '64'], [/--num-heads × --head-dim = --model-dim/]],
    [['--skip', '9-3'], [/^--skip "9-3": expected A-B with A < B < 12/]],
    [['--skip', '3-12'], [/^--skip "3-12"/]],
    [['--skip', 'sideways'], [/^--skip "sideways"/]],
    [['--canon', 'AX'], [/^--canon "AX": expected none or a subset of ABCD/]],
    [['--canon', 'AA'], [/^--canon "AA"/]],
    [['--num-heads', '6', '--kv-heads', '4'], [/--num-heads 6 must be a multiple of --kv-heads 4/]],
    [['--batch-tokens', '40000'], [/^--batch-tokens 40000 must be a multiple of --stream-len 32768$/]],
    [['--data-layout', 'rows', '--batch-tokens', '3000'], [/^--batch-tokens 3000 must be a multiple of --seq-len 2048$/]],
    [['--window-pattern', 'SSSL'], [/^--window-pattern "SSSL": expected 12 letters S or L/]],
    [['--window-pattern', 'SSSSLSSSSSSX'], [/^--window-pattern "SSSSLSSSSSSX"/]],
    [['--window-schedule', 'none'], [/--window-schedule/]],
    [['--head-dim', '30'], [/--head-dim 30 must be a multiple of 4/]],
    [['--bos-token', '60000'], [/--bos-token 60000 must be below --vocab-size 50304/]],
    [['--no-attn-layers', '0,12'], [/--no-attn-layers: layer 12 does not exist/]],
    [['--backout-layer', '11'], [/--backout-layer 11 must be below the last layer/]],
    [['--value-embeds', '7'], [/--value-embeds 7: at most 6 tables/]],
    [['--model-dim', '8', '--head-dim', '4', '--smear', 'off'], [/--attn-gate needs --model-dim ≥ 12/]],
  ];
  for (const [argv, patterns] of bad) assertConfigError(() => resolve(argv), ...patterns);

  const sas = resolve(['--block', 'sas']);
  const excluded: Partial<Config> = { valueEmbeds: 0, attnGate: false, skip: 'none', backout: false, blockLambdas: false, parallel: false, attnScore: 'softmax' };
  for (const [k, v] of Object.entries(excluded)) assert.deepEqual(sas.cfg[k as keyof Config], v, `--block sas: ${k}`);
  assert.equal(sas.notes.length, 1);
  assert.match(sas.notes[0], /--block sas: value embeddings, attention gate, U-net skip, backout, block lambdas and --parallel are off/);
  assert.equal(resolve(['--block', 'sas', '--value-embeds', '0']).cfg.valueEmbeds, 0, 'asking for what sas implies is fine');
  assert.deepEqual(resolve([]).notes, []);
});

test('a run log is a new file: one with the same name is never overwritten', (t) => {
  const dir = tempDir(t);
  const log = new RunLog(dir, 'run-a', 'versions here');
  log.write('step:1/1 train_time:1ms step_avg:1.00ms');
  const before = readFileSync(log.file, 'utf8');
  assert.throws(() => new RunLog(dir, 'run-a', 'other'), /EEXIST/);
  assert.equal(readFileSync(log.file, 'utf8'), before);
  assert.ok(before.startsWith(scriptSource() + '\n' + SEPARATOR + '\nversions here\n'));
});

// --- Whole runs -------------------------------------------------------------------------------------------

interface Result { code: number | null; stdout: string; stderr: string }

/** Runs train_gpt.ts (or another script, sample.ts) as a user does, from the repository root. */
function trainGpt(args: string[], script = 'train_gpt.ts'): Promise<Result> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    for (const k of ['TSGPT_DEBUG', 'WORLD_SIZE', 'RANK', 'LOCAL_RANK']) delete env[k];
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const show = (r: Result) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

/** A failed run's report: exactly one line on stderr, matching `pattern`, and no stack trace anywhere. */
function assertOneLineError(r: Result, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, show(r));
  const lines = r.stderr.split('\n').filter((l) => l.trim());
  assert.equal(lines.length, 1, `one line on stderr:\n${show(r)}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stdout + r.stderr, /^\s+at .+[:(]/m, 'no stack trace');
}

test('--preset short: the record\'s model and schedules at one to two epochs of the built-in GPT-2 corpus, one GPU; it resolves and describes itself on wasm', async () => {
  const { cfg } = resolveConfig('short', parseFlags(['--backend', 'wasm']).overrides);
  assert.equal(cfg.preset, 'short');
  assert.equal(cfg.corpus, 'builtin-gpt2');
  // The record's structure: any difference would make each variant flag mean something else than in the record.
  for (const k of ['numLayers', 'modelDim', 'numHeads', 'headDim', 'kvHeads', 'noAttnLayers', 'noMlpLayers', 'skip', 'valueEmbeds', 'backoutLayer',
    'windowPattern', 'windowSchedule', 'windowBlock', 'seqLen', 'vocabSize', 'mlp', 'block', 'canon', 'attnScore', 'muonLr', 'adamLr', 'cooldownFrac', 'extensionFrac'] as const) {
    assert.deepEqual(cfg[k], DEFAULTS[k], `--preset short keeps the record's ${k}`);
  }
  // 2,258,977 train tokens in the built-in GPT-2 corpus: one to two epochs.
  const epochs = (cfg.numIterations * cfg.batchTokens) / 2_258_977;
  assert.ok(epochs >= 1 && epochs <= 2, `${epochs.toFixed(2)} epochs`);
  assert.equal(cfg.batchTokens, cfg.dataLayout === 'packed' ? cfg.streamLen : cfg.deviceBatch * cfg.seqLen, 'one micro-step on one GPU');
  // Step-counted schedules scale with the steps (the record: 300 and 50 of 2225).
  assert.equal(cfg.muonWarmupSteps, Math.round((300 * cfg.numIterations) / 2225));
  assert.equal(cfg.muonCooldownSteps, Math.round((50 * cfg.numIterations) / 2225));
  assert.equal(defaultGpus({ preset: 'short', backend: 'cuda' }, { ...DEFAULTS, preset: 'short', backend: 'cuda' }), 1, 'one GPU, however many are visible');
  assert.deepEqual(resolveConfig('short', parseFlags(['--num-iterations', '300']).overrides).cfg.numIterations, 300, 'flags win over the preset');

  const r = await trainGpt(['--preset', 'short', '--backend', 'wasm', '--describe', '--json']);
  assert.equal(r.code, 0, show(r));
  const d = JSON.parse(r.stdout) as { config: Config; steps: { step: number; muonMomentum: number }[]; finalValidation: { step: number } };
  assert.deepEqual(d.config, { ...cfg, describe: true, json: true });
  assert.equal(d.finalValidation.step, cfg.numIterations);
  assert.deepEqual([d.steps[0].step, d.steps.at(-1)!.step], [0, cfg.numIterations - 1]);
  assert.ok(d.steps.some((s) => s.step === cfg.muonWarmupSteps && s.muonMomentum === 0.95), 'the momentum warm-up ends at its scaled step');
  assert.match(helpText(), /--preset auto\|speedrun\|short\|tiny \(default: auto\)/);
});

/** A tiny model on the built-in bytes corpus: a few seconds a run. */
const small = (dir: string, iterations = 12) => ['--preset', 'tiny', '--backend', 'wasm', '--num-iterations', String(iterations), '--val-every', '6',
  '--model-dim', '32', '--num-heads', '2', '--head-dim', '16', '--kv-heads', '2', '--batch-tokens', '512', '--device-batch', '4',
  '--val-tokens', '2048', '--log-dir', join(dir, 'logs'), '--checkpoint-dir', join(dir, 'ckpt')];

interface ParsedLog { header: string; lines: string[] }

const scriptSource = () => readFileSync(join(REPO, 'train_gpt.ts'), 'utf8');

/** Splits a log into the speedrun's parts: the script source, a rule, versions and GPU listing, a rule, then one line per event. */
function parseLog(file: string, source: string): ParsedLog {
  const text = readFileSync(file, 'utf8');
  assert.ok(text.startsWith(source + '\n' + SEPARATOR + '\n'), 'the log opens with the source of train_gpt.ts and a line of 100 =');
  const rest = text.slice(source.length + SEPARATOR.length + 2);
  const end = rest.indexOf('\n' + SEPARATOR + '\n');
  assert.ok(end > 0, 'a second line of 100 = closes the header');
  const header = rest.slice(0, end);
  assert.match(header, /^node v\d+\.\d+\.\d+, tfjs-core \d+\.\d+\.\d+, backend wasm, /);
  assert.match(header, /NVIDIA-SMI|nvidia-smi: not available/, 'the header holds the GPU listing');
  assert.ok(text.endsWith('\n'));
  return { header, lines: rest.slice(end + SEPARATOR.length + 2).trimEnd().split('\n') };
}

// Step and validation lines are read with log_format.ts's reader (test/log_format.test.ts pins their exact text).
const PEAK = /^peak memory allocated: \d+ MiB reserved: \d+ MiB$/;

/** Checks the per-step lines of a run from step `from` to N with validations every 6 steps; returns val losses by step. */
function checkSteps(lines: string[], from: number, N: number): Map<number, number> {
  const want: string[] = [];
  for (let s = from; s <= N; s++) {
    if (s > from) want.push(`step ${s}`);
    if (s % 6 === 0 || s === N) want.push(`val ${s}`);
  }
  want.push('peak');
  const steps = lines.map(parseStepLine);
  const got = lines.map((l, i) => {
    const s = steps[i];
    if (PEAK.test(l)) return 'peak';
    if (!s) return `unexpected line: ${l}`;
    assert.equal(s.total, N);
    assert.ok(Number.isInteger(s.trainTimeMs), `train_time of ${l}`);
    if (s.valLoss !== undefined) return `val ${s.step}`;
    // step_avg is train_time / step (train_time is rounded to the millisecond).
    assert.ok(Math.abs(s.stepAvgMs! * s.step - s.trainTimeMs!) <= 0.5 + 0.005 * s.step, `step_avg of ${l}`);
    return `step ${s.step}`;
  });
  assert.deepEqual(got, want);
  const times = steps.flatMap((s) => (s ? [s.trainTimeMs!] : []));
  for (let i = 1; i < times.length; i++) assert.ok(times[i] >= times[i - 1], 'train_time never decreases');
  return new Map(steps.flatMap((s) => (s?.valLoss !== undefined ? [[s.step, s.valLoss] as [number, number]] : [])));
}

// Two chains of subprocesses side by side (2 cores): the run/resume chain, and the failing runs one after another.
test('whole runs of train_gpt.ts', { concurrency: 2 }, async (t) => {
  const dir = tempDir(t);
  const runs: Promise<void>[] = [];
  const chain = (f: () => Promise<void>) => { errors = errors.then(f); };
  let errors = Promise.resolve();

  runs.push(t.test('a short run trains, logs in the speedrun format, checkpoints atomically; a resumed run continues at the saved step', async () => {
    const sourceA = scriptSource(); // as the run reads it (this checkout may be edited meanwhile)
    const a = await trainGpt([...small(dir), '--checkpoint-every', '6', '--save-checkpoint']);
    assert.equal(a.code, 0, show(a));
    assert.doesNotMatch(a.stderr, /error/i, show(a));
    assert.doesNotMatch(a.stdout + a.stderr, /running TensorFlow\.js in Node\.js/, 'no tfjs banner');
    const logs = readdirSync(join(dir, 'logs'));
    assert.equal(logs.length, 1);
    const logA = join(dir, 'logs', logs[0]);
    const runId = basename(logA, '.txt');
    assert.match(runId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'logs/<uuid>.txt');
    const parsedA = parseLog(logA, sourceA);
    assert.match(parsedA.header, /config: \{.*"numIterations":12/);
    // The flags line repeats the run: with its --preset, it resolves to the logged config.
    const flags = /^flags: (.*)$/m.exec(parsedA.header)![1];
    assert.match(flags, /^--preset tiny --backend wasm .*--num-iterations 12 --val-every 6 /);
    assert.deepEqual(resolveConfig('tiny', parseFlags(flags.split(' ')).overrides).cfg, JSON.parse(/^config: (.*)$/m.exec(parsedA.header)![1]));
    const valA = checkSteps(parsedA.lines, 0, 12);
    assert.deepEqual([...valA.keys()], [0, 6, 12]);
    // Step 0: an untrained model predicts (nearly) every one of the 320 tokens alike (exactly so with a zero head).
    assert.ok(Math.abs(valA.get(0)! - Math.log(320)) < 0.05, `val loss at step 0 is about ln 320, got ${valA.get(0)}`);
    assert.ok(valA.get(12)! < valA.get(0)! - 1, `val loss falls: ${valA.get(0)} → ${valA.get(12)}`);
    assert.match(a.stdout, new RegExp(`final val_loss ${valA.get(12)!.toFixed(4)} `));
    const fromStats = statsParseLog(readFileSync(logA, 'utf8'), logA);
    assert.ok(fromStats.ok, `stats.ts reads the log: ${fromStats.ok ? '' : fromStats.reason}`);
    assert.equal(fromStats.run.steps, 12);
    assert.equal(fromStats.run.finalValLoss, valA.get(12));

    // Checkpoints: one at step 6 and one at the end, named by the run, written whole (no temp file left).
    const ckpt = (s: number) => join(dir, 'ckpt', `${runId}_step${s}.ckpt`);
    assert.deepEqual(readdirSync(join(dir, 'ckpt')).sort(), [`${runId}_step12.ckpt`, `${runId}_step6.ckpt`]);
    assert.ok(a.stdout.includes(`checkpoint: ${ckpt(6)}`) && a.stdout.includes(`checkpoint: ${ckpt(12)}`), a.stdout);
    // The main job on the built-in corpus ends with a sample.
    assert.match(a.stdout, /^sample \(100 tokens at most, temperature 0\.8; more with npx tsx sample\.ts\): ".*"$/m);

    // sample.ts continues a prompt from the checkpoint, the same for the same seed; a file of another format or a
    // checkpoint of another model size is a clear error.
    const sampleArgs = ['--checkpoint', ckpt(12), '--prompt', 'Call me', '--tokens', '12', '--seed', '3'];
    const [s1, s2] = [await trainGpt(sampleArgs, 'sample.ts'), await trainGpt(sampleArgs, 'sample.ts')];
    assert.equal(s1.code, 0, show(s1));
    assert.match(s1.stdout, /^Call me/);
    assert.equal(s1.stdout, s2.stdout, 'the same seed gives the same text');
    assertOneLineError(await trainGpt(['--checkpoint', logA], 'sample.ts'), 2, new RegExp(`^error: --checkpoint ${esc(logA)}: not a checkpoint of this trainer$`));
    // format 2: magic, the SHA-256 of what follows, the header's length, the header, the tensors
    const bytes = readFileSync(ckpt(12));
    const magic = 'TSGPT-CKPT-2\n'.length, bodyAt = magic + 32, headerEnd = bodyAt + 4 + bytes.readUInt32LE(bodyAt);
    const header = JSON.parse(bytes.toString('utf8', bodyAt + 4, headerEnd));
    header.config.modelDim = 64; // the tensors stay those of d 32
    const text = Buffer.from(JSON.stringify(header)), length = Buffer.alloc(4);
    length.writeUInt32LE(text.length);
    const body = Buffer.concat([length, text, bytes.subarray(headerEnd)]);
    const other = join(dir, 'other-size.ckpt');
    writeFileSync(other, Buffer.concat([bytes.subarray(0, magic), createHash('sha256').update(body).digest(), body]));
    assertOneLineError(await trainGpt(['--checkpoint', other], 'sample.ts'), 2, new RegExp(`^error: --checkpoint ${esc(other)}: .* does not fit this model`));

    // Resume from step 6: the new run logs steps 7..12 in a new file and reaches what the first run reached.
    const logBefore = readFileSync(logA, 'utf8');
    const sourceB = scriptSource();
    const b = await trainGpt([...small(dir), '--resume', ckpt(6)]);
    assert.equal(b.code, 0, show(b));
    assert.ok(b.stdout.includes(`resumed from ${ckpt(6)} at step 6`), b.stdout);
    assert.doesNotMatch(b.stdout, /warm-up/, 'a resumed run does not warm up (it would not restore the state)');
    const logsAfter = readdirSync(join(dir, 'logs'));
    assert.equal(logsAfter.length, 2, 'the second run wrote a second log');
    assert.equal(readFileSync(logA, 'utf8'), logBefore, 'the first log is untouched');
    const [resumedB, ...linesB] = parseLog(join(dir, 'logs', logsAfter.find((f) => f !== logs[0])!), sourceB).lines;
    assert.match(resumedB, new RegExp(`^resumed: step:6 prior_train_time:\\d+ms checkpoint:${esc(ckpt(6))}$`), 'the resumed run says so first');
    const valB = checkSteps(linesB, 6, 12);
    assert.deepEqual(valB, new Map([[6, valA.get(6)!], [12, valA.get(12)!]]), 'the resumed run validates as the uninterrupted one');
    assert.deepEqual(readdirSync(join(dir, 'ckpt')).filter((f) => !f.endsWith('.ckpt')), [], 'no temp file in the checkpoint folder');

    // A truncated checkpoint (a copy cut short) and a checkpoint of another model shape are clear errors.
    const full = readFileSync(ckpt(6));
    const cut = join(dir, 'cut.ckpt');
    writeFileSync(cut, full.subarray(0, Math.floor(full.length / 2)));
    assertOneLineError(await trainGpt([...small(dir), '--resume', cut]), 2, new RegExp(`^error: --resume ${esc(cut)}: truncated or corrupt checkpoint`));
    assertOneLineError(await trainGpt([...small(dir), '--model-dim', '64', '--head-dim', '32', '--resume', ckpt(6)]), 2,
      new RegExp(`^error: --resume ${esc(ckpt(6))}: the checkpoint was trained with other settings: --model-dim 64 \\(checkpoint: 32\\), --head-dim 32 \\(checkpoint: 16\\)`));
  }));

  chain(() => t.test('--resume of a missing file or of a file that is no checkpoint: exit code 2, one line naming the file', async () => {
    const missing = join(dir, 'no-such.ckpt');
    assertOneLineError(await trainGpt([...small(dir), '--resume', missing]), 2, new RegExp(`^error: --resume ${esc(missing)}: no such file$`));
    const garbage = join(dir, 'garbage.ckpt');
    writeFileSync(garbage, Uint8Array.from({ length: 4096 }, () => randomInt(0, 255)));
    assertOneLineError(await trainGpt([...small(dir), '--resume', garbage]), 2, new RegExp(`^error: --resume ${esc(garbage)}: not a checkpoint of this trainer$`));
  }));

  chain(() => t.test('a diverging run stops with the step and the NaN loss, naming the FP8 head: exit code 1, no stack trace', async () => {
    const sub = join(dir, 'diverge');
    const r = await trainGpt([...small(sub), '--adam-lr', '1e38', '--muon-lr', '1e38']);
    // The tiny preset's head runs in FP8 (--recipe 2025-11): the message says so and what its weights are.
    assertOneLineError(r, 1, /^stopped: train loss is (NaN|-?Infinity) at step \d+; the head runs in FP8 \(--fp8-head on\) and .*; --fp8-head off runs it unquantised: the run diverged/);
    const [, why] = /^stopped: (.*): the run diverged/.exec(r.stderr)!;
    const [log] = readdirSync(join(sub, 'logs'));
    assert.ok(readFileSync(join(sub, 'logs', log), 'utf8').endsWith(`\nstopped: ${why}\n`), 'the log says why it stops');
    const plain = await trainGpt([...small(join(dir, 'diverge-plain')), '--adam-lr', '1e38', '--muon-lr', '1e38', '--fp8-head', 'off']);
    assertOneLineError(plain, 1, /^stopped: train loss is (NaN|-?Infinity) at step \d+: the run diverged/);
  }));

  chain(() => t.test('--backend cuda without a GPU build, --backend tensorflow without tfjs-node, an unknown flag, a value out of range: one clear line each', async (st) => {
    if (existsSync(join(REPO, 'build', 'cuda', 'Release', 'tsgpt_cuda.node'))) st.diagnostic('skipped --backend cuda: the cuda addon is built here');
    else assertOneLineError(await trainGpt(['--backend', 'cuda', '--preset', 'tiny']), 1, /^error: the cuda backend (is unavailable|could not be loaded)/);
    if (['tfjs-node-gpu', 'tfjs-node'].some((p) => existsSync(join(REPO, 'node_modules', '@tensorflow', p)))) st.diagnostic('skipped --backend tensorflow: tfjs-node is installed here');
    else assertOneLineError(await trainGpt(['--backend', 'tensorflow', '--preset', 'tiny']), 1, /^error: the tensorflow backend needs @tensorflow\/tfjs-node-gpu .* not installed/);
    const unknown = await trainGpt(['--preset', 'tiny', '--model-dimm', '32']);
    assertOneLineError(unknown, 2, /^error: .*'--model-dimm'/);
    assert.equal(unknown.stdout, '', 'nothing ran');
    const badValue = await trainGpt(['--num-layers', 'four']);
    assertOneLineError(badValue, 2, /^error: --num-layers "four": expected a number$/);
    assertOneLineError(await trainGpt(['--adam-lr', '-1']), 2, /^error: --adam-lr "-1": expected a number ≥ 0$/);
  }));
  await Promise.all([...runs, errors]);
});
