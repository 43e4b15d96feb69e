// Fault handling of train_gpt.ts and stats.ts (issue 17): bad data, bad checkpoints, resumed runs,
// signals sent for real, diverging runs, and workers of a killed launcher. The whole runs use a micro model
// on the built-in bytes corpus (a few seconds each) and are bounded in time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ctrlCHandler, ConfigError, TrainLoader, TrainingError, checkCheckpointDir, createModel, errorHint, saveCheckpoint, valBatches, createOptimizerState, disposeModel, disposeOptimizerState, loadCheckpoint, parseFlags, resolveConfig, train,
  type Config,
} from '../train_gpt.ts';
import { ShardFormatError, checkTokenIds, writeShard } from '../data/shard.ts';
import { SEPARATOR, parseResumedLine, parseStepLine, resumedLine, stoppedLine } from '../log_format.ts';
import { analyze, loadRuns, parseLog as statsParseLog } from '../stats.ts';
import { RECORD_SOURCE, makeLog } from './stats_fixtures.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'); // a path inside a RegExp

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'reliability-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// --- Data -------------------------------------------------------------------------------------------------

test('a shard holding a token id at or above the vocabulary is refused when it is loaded, naming the file', async (t) => {
  const dir = tempDir(t);
  const BOS = 256, T = 8;
  // Documents of bytes; one target (not an input: the last token of a sequence) is 400, past --vocab-size 320.
  const tokens = Array.from({ length: 64 }, (_, i) => (i % 16 === 0 ? BOS : 97 + (i % 7)));
  tokens[T] = 400;
  const bad = join(dir, 'train_bad.bin');
  writeShard(bad, tokens);
  await assert.rejects(new TrainLoader([bad], T, 2, 1, 0, BOS, undefined, 320).next(), (e: Error) => {
    assert.ok(e instanceof ShardFormatError, String(e));
    assert.match(e.message, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: token id 400 at position ${T} is outside the vocabulary \\(--vocab-size 320\\)`));
    return true;
  });
  assert.ok(await new TrainLoader([bad], T, 2, 1, 0, BOS, undefined, 401).next(), 'ids below the vocabulary are fine');
  assert.throws(() => checkTokenIds(Uint16Array.from([1, 2, 320]), 320, 'val.bin'), /val\.bin: token id 320 at position 2/);
  checkTokenIds(Uint16Array.from([1, 2, 319]), 320, 'val.bin');
});

test('a validation shard shorter than one validation batch is an error naming the file', () => {
  assert.throws(() => valBatches(new Uint16Array(100), 1000, 32, 4, 1, 0, 'data/x/val_000.bin'),
    /^Error: data\/x\/val_000\.bin: the validation shard \(100 tokens\) is smaller than one validation batch \(129 tokens\)$/);
});

test('out of memory, as the wasm backend reports it too, gets the --device-batch hint', () => {
  for (const message of ['table index is out of bounds', 'Aborted(). Build with -sASSERTIONS for more info.', 'CUDA out of memory', 'Out of device memory']) {
    assert.match(errorHint(message), /out of memory\? lower --device-batch/, message);
  }
  assert.equal(errorHint('no such file'), '');
});

test('a checkpoint folder without room for a checkpoint is refused at the start; a failed checkpoint write names the file', (t) => {
  const dir = tempDir(t);
  assert.throws(() => checkCheckpointDir(dir, 2 ** 60), (e: Error) => e instanceof ConfigError && /^--checkpoint-dir .*: \d+ MiB free, a checkpoint of this model needs 1099511627776 MiB$/.test(e.message));
  checkCheckpointDir(dir, 1);
  const cfg = microConfig(micro(dir));
  const m = createModel(cfg), st = createOptimizerState(m);
  writeFileSync(join(dir, 'a-file'), '');
  const file = join(dir, 'a-file', 'run_step1.ckpt'); // its folder cannot exist, as a full disk cannot be written
  assert.throws(() => saveCheckpoint(file, m, st, { step: 1, loader: { file: 0, pos: 0 }, config: cfg, trainMs: 1 }),
    (e: Error) => e instanceof TrainingError && e.message.startsWith(`cannot write checkpoint ${file}: `));
  disposeOptimizerState(st);
  disposeModel(m);
});

// --- Whole runs -------------------------------------------------------------------------------------------

interface Result { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }
const show = (r: Result) => `exit ${r.code ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

/**
 * Runs train_gpt.ts from the repository root (`node --import tsx`, or `tsx` as `npx tsx` does) and kills it
 * after `timeoutMs`. `onOutput` sees stdout and stderr so far and may signal the process.
 */
function trainGpt(args: string[], opts: { viaTsx?: boolean; timeoutMs?: number; onOutput?: (out: string, pid: number) => void; detached?: boolean; env?: Record<string, string> } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const k of ['TSGPT_DEBUG', 'TSGPT_FAIL_AT', 'WORLD_SIZE', 'RANK', 'LOCAL_RANK']) delete env[k];
    Object.assign(env, opts.env);
    const argv = opts.viaTsx ? [join(REPO, 'node_modules', 'tsx', 'dist', 'cli.mjs'), 'train_gpt.ts', ...args] : ['--import', 'tsx', 'train_gpt.ts', ...args];
    // detached: a process group of its own, as a terminal gives a command (a Ctrl-C signals the whole group).
    const child = spawn(process.execPath, argv, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'], detached: opts.detached });
    let stdout = '', stderr = '';
    // A net for a hung run, not a speed bound: a 12-step micro run took over 90 s on 2 busy cores (two test suites at once).
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 240_000);
    const take = () => opts.onOutput?.(stdout + stderr, child.pid!);
    child.stdout.on('data', (d) => { stdout += d; take(); });
    child.stderr.on('data', (d) => { stderr += d; take(); });
    child.on('error', reject);
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

/** A micro model on the built-in bytes corpus: a few seconds a run. */
const micro = (dir: string, iterations = 12) => ['--preset', 'tiny', '--backend', 'wasm', '--num-iterations', String(iterations), '--val-every', '6',
  '--model-dim', '32', '--num-heads', '2', '--head-dim', '16', '--kv-heads', '2', '--batch-tokens', '512', '--device-batch', '4',
  '--val-tokens', '2048', '--warmup-steps', '0', '--log-dir', join(dir, 'logs'), '--checkpoint-dir', join(dir, 'ckpt')];
const microConfig = (argv: string[]): Config => resolveConfig('tiny', parseFlags(argv).overrides).cfg;

const logsIn = (dir: string) => readdirSync(join(dir, 'logs')).map((f) => join(dir, 'logs', f));
/** The event lines of a log: those after its second line of 100 '='. */
function events(file: string): string[] {
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  return lines.slice(lines.indexOf(SEPARATOR, lines.indexOf(SEPARATOR) + 1) + 1);
}

test('checkpoints and resuming', async (t) => {
  const dir = tempDir(t);
  const ckptDir = join(dir, 'ckpt');
  mkdirSync(ckptDir, { recursive: true });
  // Temp files of checkpoint writes: one of a process that is gone (pid 2^22 + 1 is above Linux's pid_max), one of this live process.
  const stale = join(ckptDir, 'old-run_step4.ckpt.4194305-0badc0de.part');
  const live = join(ckptDir, `other-run_step4.ckpt.${process.pid}-0badc0de.part`);
  writeFileSync(stale, 'half a checkpoint');
  writeFileSync(live, 'being written');

  const a = await trainGpt([...micro(dir), '--checkpoint-every', '3', '--save-checkpoint', '--keep-checkpoints', '3']);
  assert.equal(a.code, 0, show(a));
  const [logA] = logsIn(dir);
  const runId = basename(logA, '.txt');
  const ckpt = (s: number) => join(ckptDir, `${runId}_step${s}.ckpt`);

  await t.test('stale temp files of dead writers are removed at the start; the newest --keep-checkpoints are kept', () => {
    assert.ok(!existsSync(stale), 'the dead writer\'s temp file is gone');
    assert.ok(existsSync(live), 'a live writer\'s temp file is left alone');
    assert.match(a.stdout, /removed 1 temp file\(s\) of interrupted checkpoint writes/);
    assert.deepEqual(readdirSync(ckptDir).filter((f) => f.endsWith('.ckpt')).sort(), [12, 6, 9].map((s) => `${runId}_step${s}.ckpt`));
  });

  const cfg = microConfig(micro(dir));
  const withModel = <R>(c: Config, f: (m: ReturnType<typeof createModel>, st: ReturnType<typeof createOptimizerState>) => R): R => {
    const m = createModel(c), st = createOptimizerState(m);
    try { return f(m, st); } finally { disposeOptimizerState(st); disposeModel(m); }
  };
  const rejectsConfig = (c: Config, ...patterns: RegExp[]) => assert.rejects(train(c, { backend: 'cpu', say: () => {} }), (e: Error) => {
    assert.ok(e instanceof ConfigError, String(e));
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });

  await t.test('a checkpoint stores the train time so far; a flipped byte fails its checksum; a folder is no checkpoint', () => {
    const meta = withModel(cfg, (m, st) => loadCheckpoint(ckpt(6), m, st));
    assert.equal(meta.step, 6);
    const atSix = events(logA).map(parseStepLine).find((s) => s?.step === 6 && s.valLoss === undefined)!;
    assert.equal(Math.round(meta.trainMs), atSix.trainTimeMs, 'the train time of step 6, as logged');
    const bytes = readFileSync(ckpt(6));
    bytes[bytes.length - 100] ^= 0x10;
    const flipped = join(dir, 'flipped.ckpt');
    writeFileSync(flipped, bytes);
    withModel(cfg, (m, st) => assert.throws(() => loadCheckpoint(flipped, m, st), new RegExp(`--resume ${esc(flipped)}: truncated or corrupt checkpoint \\(checksum mismatch\\)$`)));
    withModel(cfg, (m, st) => assert.throws(() => loadCheckpoint(ckptDir, m, st),
      new RegExp(`--resume ${esc(ckptDir)}: a folder, not a checkpoint file \\(its newest checkpoint is ${esc(ckptDir)}/`)));
  });

  await t.test('resuming at or past --num-iterations, or with settings that change the maths, is refused naming them', async () => {
    await rejectsConfig({ ...cfg, resume: ckpt(12) }, new RegExp(`^--resume ${esc(ckpt(12))}: the checkpoint is at step 12, at --num-iterations 12: nothing left to train$`));
    await rejectsConfig({ ...cfg, resume: ckpt(12), numIterations: 10 }, /the checkpoint was trained with other settings: --num-iterations 10 \(checkpoint: 12\); .*--resume-allow-config-change/);
    await rejectsConfig({ ...cfg, resume: ckpt(12), numIterations: 10, resumeAllowConfigChange: true }, /the checkpoint is at step 12, past --num-iterations 10: nothing left to train$/);
    await rejectsConfig({ ...cfg, resume: ckpt(6), attnScore: 'softpick', logitCap: 'tanh', rotary: 'full', batchTokens: 1024, seqLen: 64 },
      /other settings: --attn-score softpick \(checkpoint: softmax\), --logit-cap tanh \(checkpoint: sigmoid\), --rotary full \(checkpoint: half\), --seq-len 64 \(checkpoint: 128\), --batch-tokens 1024 \(checkpoint: 512\)/);
    // Where files go, how often to print, how the batch is split: free to change.
    await assert.rejects(train({ ...cfg, resume: ckpt(12), deviceBatch: 2, printEvery: 3, logDir: join(dir, 'other-logs') }, { backend: 'cpu', say: () => {} }), /at --num-iterations 12: nothing left/);
  });

  await t.test('an unwritable --checkpoint-dir is refused at the start, before the log', async () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    await rejectsConfig({ ...cfg, saveCheckpoint: true, checkpointDir: join(file, 'ckpt'), logDir: join(dir, 'never') }, /^--checkpoint-dir .*a-file\/ckpt: not writable \(/);
    assert.ok(!existsSync(join(dir, 'never')), 'no log was started');
  });

  await t.test('a resumed run marks its log with the step, checkpoint and train time before; stats.ts never counts it', async () => {
    const b = await trainGpt([...micro(dir), '--resume', ckpt(6)]);
    assert.equal(b.code, 0, show(b));
    const logB = logsIn(dir).find((f) => f !== logA)!;
    const lines = events(logB);
    const resumed = parseResumedLine(lines[0]);
    const prior = Math.round(withModel(cfg, (m, st) => loadCheckpoint(ckpt(6), m, st)).trainMs);
    assert.deepEqual(resumed, { step: 6, priorTrainMs: prior, checkpoint: ckpt(6) }, lines[0]);
    const final = parseStepLine(lines.at(-2)!)!;
    assert.equal(final.step, 12);
    assert.ok(final.trainTimeMs! > prior, 'train_time includes the run before');
    const parsed = statsParseLog(readFileSync(logB, 'utf8'), logB);
    assert.ok(!parsed.ok && /^resumed: continues another run from step 6 of checkpoint /.test(parsed.reason), JSON.stringify(parsed));
    assert.ok(statsParseLog(readFileSync(logA, 'utf8'), logA).ok, 'the uninterrupted run is counted');
  });
});

test('stats.ts: a resumed run\'s log is skipped with its reason, never counted as a run', () => {
  const full = makeLog({ source: RECORD_SOURCE, finalLoss: 3.2781, trainTimeMs: 130412 });
  const at = full.indexOf(`${SEPARATOR}\n`, full.indexOf(SEPARATOR) + 1) + SEPARATOR.length + 1;
  const resumed = full.slice(0, at) + resumedLine(200, 130412, '/ckpt/run_step200.ckpt') + '\n' + full.slice(at); // the same steps and final loss, as a resume from the last checkpoint writes
  assert.deepEqual(parseResumedLine(resumedLine(200, 130412.4, '/a b/c.ckpt')), { step: 200, priorTrainMs: 130412, checkpoint: '/a b/c.ckpt' });
  const dir = mkdtempSync(join(tmpdir(), 'reliability-stats-'));
  try {
    writeFileSync(join(dir, 'a.txt'), full);
    writeFileSync(join(dir, 'b.txt'), resumed);
    const { runs, skipped } = loadRuns({ record: [join(dir, 'a.txt'), join(dir, 'b.txt')], baseline: [], notes: [] });
    assert.equal(runs.length, 1);
    assert.equal(skipped.length, 1);
    assert.match(skipped[0].reason, /^resumed: continues another run from step 200 of checkpoint \/ckpt\/run_step200\.ckpt \(130412 ms of train time before\); a resumed run is never counted$/);
    assert.equal(analyze(runs, skipped, [], { target: 3.28, alpha: 0.01, allowMixed: false, allowHardwareMismatch: false }).record!.loss.n, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// --- Signals ----------------------------------------------------------------------------------------------

/** A model small enough for the pure-JS cpu backend: 2 layers, 64 tokens a step. */
const nano = (dir: string, backend: string) => ['--preset', 'tiny', '--backend', backend, '--num-layers', '2', '--window-pattern', 'SL', '--skip', 'none',
  '--backout', 'off', '--model-dim', '32', '--num-heads', '2', '--head-dim', '16', '--kv-heads', '2', '--seq-len', '32', '--window-block', '8',
  '--batch-tokens', '64', '--stream-len', '64', '--val-tokens', '256', '--val-stream-len', '256', '--warmup-steps', '0', '--val-every', '0', '--num-iterations', '1000',
  '--print-every', '1', '--save-checkpoint', '--log-dir', join(dir, 'logs'), '--checkpoint-dir', join(dir, 'ckpt')];

/** Sends SIGINT once step 2 is printed, to the process or to its whole group (a terminal's Ctrl-C); checks that the run stopped after a step, saved and closed its log. */
async function assertStopsOnSigint(dir: string, backend: string, how: { viaTsx: boolean; group: boolean }): Promise<void> {
  let sent = false;
  const r = await trainGpt(nano(dir, backend), {
    viaTsx: how.viaTsx, detached: how.group, timeoutMs: 120_000,
    onOutput: (out, pid) => { if (!sent && /step 2\/1000 train_loss/.test(out)) { sent = true; process.kill(how.group ? -pid : pid, 'SIGINT'); } },
  });
  assert.ok(sent, show(r));
  assert.equal(r.code, 130, show(r));
  // Under tsx the run is a worker of the launcher. tsx kills the launcher when it answers the signal late (60 ms, seen
  // on 2 busy cores), or ends first itself: the worker then sees its launcher gone, which stops it after the step the same way.
  assert.match(r.stderr, how.viaTsx ? /(interrupt:|the launcher is gone;) stopping after this step/ : /interrupt: stopping after this step/);
  const m = /interrupted at step (\d+)\/1000 \(train_time \d+ms\); checkpoint: (\S+\.ckpt); log: (\S+\.txt)/.exec(r.stdout);
  assert.ok(m, show(r));
  const [, step, ckpt, log] = m;
  assert.ok(Number(step) >= 2 && Number(step) < 1000, show(r));
  assert.ok(existsSync(ckpt), `the checkpoint ${ckpt} exists`);
  assert.equal(basename(ckpt), `${basename(log, '.txt')}_step${step}.ckpt`);
  assert.match(events(log).at(-1)!, new RegExp(`^interrupted at step ${step}/1000 \\(train_time \\d+ms\\)$`), 'the log\'s closing line');
}

test('Ctrl-C: signals within a second are one press (tsx repeats it to a slow child); one a second later stops at once', async () => {
  const calls: string[] = [];
  const handler = ctrlCHandler(() => calls.push('first'), () => calls.push('again'));
  handler(); handler(); handler();
  assert.deepEqual(calls, ['first']);
  await sleep(1050);
  handler();
  assert.deepEqual(calls, ['first', 'again']);
});

test('Ctrl-C stops after the current step, saves the checkpoint and closes the log: under npx tsx and plain node', { timeout: 300_000 }, async (t) => {
  const dir = tempDir(t);
  await t.test('npx tsx, wasm, Ctrl-C to the process group', () => assertStopsOnSigint(join(dir, 'tsx-group'), 'wasm', { viaTsx: true, group: true }));
  await t.test('npx tsx, wasm, SIGINT to tsx alone', () => assertStopsOnSigint(join(dir, 'tsx-parent'), 'wasm', { viaTsx: true, group: false }));
  await t.test('node, wasm', () => assertStopsOnSigint(join(dir, 'node-wasm'), 'wasm', { viaTsx: false, group: false }));
});

// --- Divergence and errors --------------------------------------------------------------------------------

test('a run whose loss stays at or above ln(vocab) stops naming the step; a run dying from an error closes its log saying why; stats.ts labels both', { timeout: 240_000 }, async (t) => {
  const dir = tempDir(t);
  const stopsDiverged = async (name: string, extra: string[], loss: RegExp) => {
    const sub = join(dir, name);
    // The 2025-08 recipe (plain Muon, Adam every step) keeps such a loss finite; the 2025-11 one reaches NaN, which stops it anyway.
    const r = await trainGpt([...micro(sub, 30), '--recipe', '2025-08', '--val-every', '0', '--adam-lr', '1e6', '--muon-lr', '1e6', ...extra]);
    assert.equal(r.code, 1, show(r));
    const why = new RegExp(`^stopped: train loss is ${loss.source} at step 10, not below 5\\.7683 = ln\\(--vocab-size 320\\), a uniform prediction's`);
    assert.match(r.stderr, new RegExp(`${why.source}: the run diverged .*; log: `));
    const [log] = logsIn(sub);
    assert.match(events(log).at(-1)!, new RegExp(`${why.source}$`), 'the log\'s closing line');
    const parsed = statsParseLog(readFileSync(log, 'utf8'), log);
    assert.ok(!parsed.ok && /^diverged: train loss is /.test(parsed.reason), JSON.stringify(parsed));
  };
  await t.test('--adam-lr 1e6 --muon-lr 1e6: a finite loss far above ln(vocab)', () => stopsDiverged('huge-lr', [], /\d+\.\d{4}/));
  await t.test('the same with --logit-cap none: the loss pinned at ln(vocab)', () => stopsDiverged('no-cap', ['--logit-cap', 'none'], /5\.768\d/));
  await t.test('an error mid-run', async () => {
    const sub = join(dir, 'error');
    const r = await trainGpt(micro(sub, 12), { env: { TSGPT_FAIL_AT: '0:3' } });
    assert.equal(r.code, 1, show(r));
    const [log] = logsIn(sub);
    assert.equal(events(log).at(-1), 'stopped: error: fault injected at rank 0, step 3 (TSGPT_FAIL_AT)');
    const parsed = statsParseLog(readFileSync(log, 'utf8'), log);
    assert.ok(!parsed.ok && parsed.reason === 'stopped: error: fault injected at rank 0, step 3 (TSGPT_FAIL_AT)', JSON.stringify(parsed));
  });
});

test('stats.ts: a log that stopped on a NaN loss is "diverged", not "unfinished"', () => {
  const text = makeLog({ source: RECORD_SOURCE, finalLoss: 3.28, trainTimeMs: 1000, stopAtStep: 60 }) + stoppedLine('train loss is NaN at step 60') + '\n';
  assert.deepEqual(statsParseLog(text, 'nan.txt'), { ok: false, reason: 'diverged: train loss is NaN at step 60' });
  const interrupted = makeLog({ source: RECORD_SOURCE, finalLoss: 3.28, trainTimeMs: 1000, stopAtStep: 60 }) + 'interrupted at step 60/200 (train_time 300ms)\n';
  assert.deepEqual(statsParseLog(interrupted, 'int.txt'), { ok: false, reason: 'unfinished: last validation at step 50 of 200' });
});

// --- The launcher and its workers -------------------------------------------------------------------------

/** The workers of a launcher, by rank: its child processes with RANK in their environment (Linux /proc). */
function workersOf(launcher: number): Map<number, number> {
  const ranks = new Map<number, number>();
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== launcher) continue;
      const rank = /(?:^|\0)RANK=(\d+)\0/.exec(readFileSync(`/proc/${entry}/environ`, 'utf8'));
      if (rank) ranks.set(Number(rank[1]), Number(entry));
    } catch { /* gone meanwhile */ }
  }
  return ranks;
}
const isAlive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
async function waitGone(pids: number[], ms: number): Promise<number[]> {
  for (const end = Date.now() + ms; Date.now() < end && pids.some(isAlive);) await sleep(200);
  return pids.filter(isAlive);
}

/** 2 ranks × a packed stream of 64 tokens a step, on 2 layers. */
const ranks2 = (dir: string) => ['--preset', 'tiny', '--backend', 'wasm', '--num-layers', '2', '--window-pattern', 'SL', '--skip', 'none', '--backout', 'off',
  '--model-dim', '32', '--num-heads', '2', '--head-dim', '16', '--kv-heads', '2', '--seq-len', '32', '--window-block', '8', '--batch-tokens', '128',
  '--stream-len', '64', '--val-tokens', '256', '--val-stream-len', '128', '--warmup-steps', '0', '--val-every', '0', '--num-iterations', '1000', '--print-every', '1',
  '--gpus', '2', '--log-dir', join(dir, 'logs')];

test('--gpus N is checked against the flags before any worker starts', { timeout: 60_000 }, async () => {
  const r = await trainGpt(['--preset', 'tiny', '--backend', 'wasm', '--gpus', '3']);
  assert.equal(r.code, 2, show(r));
  assert.match(r.stderr, /^error: --batch-tokens 2048 must be a multiple of --stream-len × GPUs = 1536$/m);
  assert.doesNotMatch(r.stdout, /launcher: starting/, 'no worker was started');
  // Under npx tsx one worker runs under the launcher: without a GPU, the backend still says why it cannot load.
  if (!existsSync(join(REPO, 'build', 'cuda', 'Release', 'tsgpt_cuda.node'))) {
    const cuda = await trainGpt(['--preset', 'tiny', '--backend', 'cuda'], { viaTsx: true, env: { CUDA_VISIBLE_DEVICES: '' } });
    assert.equal(cuda.code, 1, show(cuda));
    assert.match(cuda.stderr, /^error: the cuda backend (is unavailable|could not be loaded)/m);
  }
});

test('workers die with their launcher (SIGKILL, SIGTERM); a stopped worker ends the run after --collective-timeout, named', { timeout: 300_000 }, async (t) => {
  const dir = tempDir(t);
  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    await t.test(`kill -${signal.slice(3)} of the launcher: the workers stop after a step and close the log`, async () => {
      let workers = new Map<number, number>();
      const sub = join(dir, signal);
      const r = await trainGpt(ranks2(sub), {
        onOutput: (out, pid) => { if (!workers.size && /step 2\/1000 train_loss/.test(out)) { workers = workersOf(pid); process.kill(pid, signal); } },
      });
      assert.equal(workers.size, 2, show(r));
      assert.deepEqual(await waitGone([...workers.values()], 30_000), [], `workers outlived the launcher:\n${show(r)}`);
      const [log] = logsIn(sub);
      assert.match(events(log).at(-1)!, /^interrupted at step \d+\/1000/, 'rank 0 closed the log');
    });
  }
  await t.test('SIGSTOP of rank 1: rank 0 gives up after --collective-timeout naming rank 1, and the launcher ends every worker', async () => {
    let workers = new Map<number, number>();
    const sub = join(dir, 'sigstop');
    const r = await trainGpt([...ranks2(sub), '--collective-timeout', '5'], {
      timeoutMs: 120_000,
      onOutput: (out, pid) => { if (!workers.size && /step 2\/1000 train_loss/.test(out)) { workers = workersOf(pid); process.kill(workers.get(1)!, 'SIGSTOP'); } },
    });
    assert.equal(workers.size, 2, show(r));
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stdout + r.stderr, /rank 1 sent nothing for 5s \(--collective-timeout\): it stopped or hangs/);
    assert.deepEqual(await waitGone([...workers.values()], 5_000), [], 'no worker left behind');
    const [log] = logsIn(sub);
    assert.match(events(log).at(-1)!, /^stopped: error: rank 1 sent nothing for 5s/, 'rank 0 closed the log');
  });
});
