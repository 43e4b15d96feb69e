// Tests for bench/ablation.ts: the plan (seeds, variants file, which runs are done), the errors, and real runs of
// train_gpt.ts (a micro model of the tiny preset on wasm, 2 variants × 2 seeds, a few seconds each): the logs land
// one folder per variant, a second call skips the complete ones and runs again the one whose log was cut, keeping
// that log, and the stats at the end compare the variant with the baseline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { loadVariants, main, readLogFile } from '../bench/ablation.ts';
import { parseLog, parseSeeds } from '../stats.ts';
import { SEPARATOR, stoppedLine, valLine } from '../log_format.ts';

let root: string;
before(() => { root = mkdtempSync(join(tmpdir(), 'ablation-test-')); });
after(() => rmSync(root, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
  return { code, stdout: stripVTControlCharacters(stdout), stderr };
}

function writeVariants(name: string, variants: unknown): string {
  const file = join(root, name);
  writeFileSync(file, JSON.stringify(variants));
  return file;
}

// A micro model of the tiny preset: two steps, one validation at the end, on the built-in bytes corpus.
const MICRO = ['--preset', 'tiny', '--backend', 'wasm', '--num-iterations', '2', '--val-every', '0', '--warmup-steps', '0', '--val-tokens', '512',
  '--model-dim', '32', '--num-heads', '2', '--head-dim', '16', '--kv-heads', '2', '--seq-len', '64', '--stream-len', '256', '--val-stream-len', '256', '--batch-tokens', '256'];
// The trainer as `npx tsx train_gpt.ts` runs it, without npx's second of start-up.
const TRAINER = `${process.execPath} --import tsx train_gpt.ts`;

test('seeds: ranges and lists, each once; anything else is an error naming the value', () => {
  assert.deepEqual(parseSeeds('0-4'), [0, 1, 2, 3, 4]);
  assert.deepEqual(parseSeeds('3,1,2'), [3, 1, 2]);
  assert.deepEqual(parseSeeds('0-2,7,1'), [0, 1, 2, 7]);
  for (const bad of ['', 'a', '4-2', '-1', '1,,2', '1.5']) assert.throws(() => parseSeeds(bad), new RegExp(`--seeds ${JSON.stringify(bad).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: expected`));
});

test('the shipped variants file: every variant of issue 18, flags as train_gpt.ts spells them, a baseline without flags', async () => {
  const variants = await loadVariants('bench/ablation_variants.json');
  const byName = Object.fromEntries(variants.map((v) => [v.name, v.flags.join(' ')]));
  assert.deepEqual(byName, {
    baseline: '', 'canon-a': '--canon A', 'canon-b': '--canon B', 'canon-ac': '--canon AC', 'canon-abcd': '--canon ABCD',
    'canon-a-no-rotary': '--canon A --rotary none', parallel: '--parallel', softpick: '--attn-score softpick', softmax1: '--attn-score softmax1',
    sas: '--block sas', 'sas-p': '--block sas-p', 'skip-unet': '--skip unet', 'skip-none': '--skip none', 'lambda-init-1.0': '--lambda-init 1.0',
    swiglu: '--mlp swiglu',
  });
  // Every one resolves under --preset short (a misspelt flag would fail here, not after hours of runs).
  const dry = await run('--out', join(root, 'shipped'), '--dry-run', '--seeds', '0');
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /15 variants × 1 seeds = 15 runs .* 0 complete, 15 to run \(dry run\)/);
  assert.match(dry.stdout, /^npx tsx train_gpt\.ts --preset short --canon A --rotary none --seed 0 --log-dir \S+\/shipped\/canon-a-no-rotary$/m);
  assert.deepEqual(readdirSync(root).filter((f) => f === 'shipped'), [], 'a dry run writes nothing');
});

test('a log is complete when it finished or diverged; cut, interrupted, crashed and resumed logs are not', () => {
  const dir = join(root, 'states');
  mkdirSync(dir);
  const header = (seed: number) => `// source\n${SEPARATOR}\nversions\nconfig: ${JSON.stringify({ preset: 'tiny', seed })}\n${SEPARATOR}\n`;
  const cases: [string, string, boolean, RegExp | null][] = [
    ['finished', `${header(3)}${valLine(0, 2, 5.5, 0)}\n${valLine(2, 2, 4.25, 900)}\npeak memory allocated: 1 MiB reserved: 2 MiB\n`, true, null],
    ['diverged', `${header(3)}${valLine(0, 2, 5.5, 0)}\n${stoppedLine('train loss is NaN at step 1')}\n`, true, null],
    ['cut', `${header(3)}${valLine(0, 2, 5.5, 0)}\nstep:1/2 train_time:400ms step_avg:400.00ms\n`, false, /^unfinished/],
    ['interrupted', `${header(3)}${valLine(0, 2, 5.5, 0)}\ninterrupted at step 1/2 (train_time 400ms)\n`, false, /^unfinished/],
    ['crashed', `${header(3)}${valLine(0, 2, 5.5, 0)}\n${stoppedLine('error: out of memory')}\n`, false, /^stopped: error: out of memory/],
    ['resumed', `${header(3)}resumed: step:1 prior_train_time:400ms checkpoint:x.ckpt\n${valLine(2, 2, 4.25, 900)}\n`, false, /^resumed/],
  ];
  for (const [name, text, complete, reason] of cases) {
    writeFileSync(join(dir, `${name}.txt`), text);
    const log = readLogFile(join(dir, `${name}.txt`));
    assert.equal(log.seed, 3, name);
    assert.equal(log.state.complete, complete, name);
    if (!log.state.complete) assert.match(log.state.reason, reason!, name);
  }
  const finished = readLogFile(join(dir, 'finished.txt'));
  assert.ok(finished.state.complete && !finished.state.diverged && finished.state.valLoss === 4.25 && finished.state.trainTimeS === 0.9);
  writeFileSync(join(dir, 'no-config.txt'), `// source\n${SEPARATOR}\nversions\n${SEPARATOR}\n${valLine(2, 2, 4.25, 900)}\n`);
  assert.equal(readLogFile(join(dir, 'no-config.txt')).seed, null, 'a log without a config line belongs to no seed');
});

test('errors name the flag, file, variant or value, and exit with 2 before any run', async () => {
  const out = join(root, 'errors');
  const good = writeVariants('good.json', { baseline: [], lambda: ['--lambda-init', '1.0'] });
  const cases: [string[], RegExp][] = [
    [['--variants', good], /--out DIR is required/],
    [['--out', out, '--variants', join(root, 'missing.json')], /--variants: no such file: .*missing\.json/],
    [['--out', out, '--variants', writeVariants('list.json', [['--canon', 'A']])], /expected an object mapping each variant's name to its flags/],
    [['--out', out, '--variants', writeVariants('nobase.json', { a: [], b: ['--canon', 'A'] })], /no variant named baseline/],
    [['--out', out, '--variants', writeVariants('slash.json', { baseline: [], 'a/b': [] })], /variant name "a\/b" is not a folder name/],
    [['--out', out, '--variants', writeVariants('number.json', { baseline: [], a: [1] })], /the flags of a must be a list of strings or one string/],
    [['--out', out, '--variants', writeVariants('typo.json', { baseline: [], canon: '--canon X' })], /variant canon \(--preset short --canon X\): --canon "X": expected none or a subset of ABCD/],
    [['--out', out, '--variants', writeVariants('unknown.json', { baseline: [], p: '--paralel' })], /variant p .*Unknown option '--paralel'/],
    [['--out', out, '--variants', writeVariants('seed.json', { baseline: [], s: '--seed 3' })], /variant s gives --seed: bench\/ablation\.ts sets it/],
    [['--out', out, '--variants', good, '--', '--backend', 'wasm'], /variant baseline .*name a --preset in the base flags/],
    [['--out', out, '--variants', good, '--', '--preset', 'tiny', '--log-dir', 'x'], /the base flags give --log-dir/],
    [['--out', out, '--variants', good, '--seeds', '2-1'], /--seeds "2-1": expected/],
    [['--out', out, '--variants', good, '--frobnicate'], /Unknown option '--frobnicate'.*the base flags go after --/],
  ];
  for (const [argv, message] of cases) {
    const r = await run(...argv);
    assert.equal(r.code, 2, `exit status for ${argv.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /^ablation: error: /);
    assert.match(r.stderr, message);
  }
  assert.deepEqual(readdirSync(root).filter((f) => f === 'errors'), [], 'nothing written');
  const help = await run('--help');
  assert.equal(help.code, 0);
  for (const flag of ['--out', '--variants', '--seeds', '--dry-run', '--trainer']) assert.match(help.stdout, new RegExp(`^ {2}${flag} `, 'm'));
});

test('a trainer that fails: each run is reported not complete, the next one starts, and the exit status says so', async () => {
  const out = join(root, 'failing');
  const variants = writeVariants('failing.json', { baseline: [], lambda: '--lambda-init 1.0' });
  const r = await run('--out', out, '--variants', variants, '--seeds', '0', '--trainer', `${process.execPath} -e process.exit(3) --`, '--', ...MICRO);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /^\[1\/2\] baseline seed 0: not complete \(exit 3: no log written\); it runs again on the next call$/m);
  assert.match(r.stdout, /^\[2\/2\] lambda seed 0: not complete \(exit 3: no log written\)/m);
  assert.match(r.stdout, /ablation: 0 of 2 runs done .*; not complete: baseline seed 0 \(exit 3: no log written\), lambda seed 0/);
  assert.match(r.stdout, /ablation: no logs at all for baseline, lambda/);
});

test('--jobs: runs at once, a failing one shows the end of its output; --stop-after: no run starts after the limit, exit 3', async () => {
  const variants = writeVariants('jobs.json', { baseline: [], lambda: '--lambda-init 1.0', skip: '--skip none' });
  const failing = `${process.execPath} -e console.log("the-trainer-said-this");process.exit(3) --`;
  const both = await run('--out', join(root, 'jobs'), '--variants', variants, '--seeds', '0', '--jobs', '3', '--trainer', failing, '--', ...MICRO);
  assert.equal(both.code, 1);
  assert.match(both.stdout, /ablation: 0 of 3 runs done in \d+ s, 3 at once; not complete: /);
  assert.equal((both.stderr.match(/^\[\d\/3\] \w+ seed 0: the end of its output:\nthe-trainer-said-this$/gm) ?? []).length, 3, both.stderr);

  // Each run takes 1.5 s; none starts after 0.01 min (0.6 s): the first two (--jobs 2) run, the third does not.
  const slow = `${process.execPath} -e setTimeout(()=>process.exit(3),1500) --`;
  const limited = await run('--out', join(root, 'limited'), '--variants', variants, '--seeds', '0', '--jobs', '2', '--stop-after', '0.01', '--trainer', slow, '--', ...MICRO);
  assert.equal(limited.code, 3, limited.stdout);
  assert.match(limited.stdout, /0 of 3 runs done .*; --stop-after 0\.01 min reached with 1 run not started: the next call does it$/m);
  assert.doesNotMatch(limited.stdout, /^\[3\/3\]/m);

  for (const [flag, value] of [['--jobs', '0'], ['--jobs', '1.5'], ['--stop-after', '0'], ['--stop-after', 'soon']]) {
    const bad = await run('--out', join(root, 'bad'), '--variants', variants, flag, value, '--', ...MICRO);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, new RegExp(`^ablation: error: ${flag} "${value}": expected a positive (integer|number)$`, 'm'));
  }
});

test('real runs: 2 variants × 2 seeds into a folder each, the stats at the end; a second call skips the complete runs and redoes a cut one, keeping its log', async () => {
  const out = join(root, 'real');
  const variants = writeVariants('real.json', { baseline: [], lambda: '--lambda-init 1.0' });
  const argv = ['--out', out, '--variants', variants, '--seeds', '0,1', '--trainer', TRAINER, '--', ...MICRO];

  const dry = await run(...argv, '--dry-run');
  assert.equal(dry.code, 2, 'flags after -- are base flags: --dry-run there is a trainer flag'); // the runner's flags go before --
  assert.match(dry.stderr, /Unknown option '--dry-run'/);
  const plan = await run(...argv.slice(0, 8), '--dry-run', ...argv.slice(8));
  assert.equal(plan.code, 0, plan.stderr);
  const commands = plan.stdout.split('\n').filter((l) => l.startsWith(process.execPath));
  // Seeds outermost; each run's flags: base, variant, then the seed and the variant's folder.
  assert.deepEqual(commands.map((c) => / --seed (\d) --log-dir \S+\/(\w+)$/.exec(c)?.slice(1).join(' ')), ['0 baseline', '0 lambda', '1 baseline', '1 lambda']);
  assert.ok(commands[1].includes(` ${MICRO.join(' ')} --lambda-init 1.0 --seed 0 `), commands[1]);
  assert.ok(commands.every((c) => c.includes(` train_gpt.ts ${MICRO.join(' ')} `)));

  const first = await run(...argv.slice(0, 8), '--jobs', '2', ...argv.slice(8)); // two at once: each run's log is its own
  assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`);
  assert.match(first.stdout, /2 variants × 2 seeds = 4 runs .*0 complete, 4 to run/);
  for (const [k, label] of ['baseline seed 0', 'lambda seed 0', 'baseline seed 1', 'lambda seed 1'].entries()) {
    assert.match(first.stdout, new RegExp(`^\\[${k + 1}/4\\] ${label}`, 'm'));
    assert.match(first.stdout, new RegExp(`^\\[${k + 1}/4\\] ${label}: val loss \\d+\\.\\d{4}, train time \\d+\\.\\d s$`, 'm'));
  }
  assert.match(first.stdout, /ablation: 4 of 4 runs done/);
  // The stats: the variant against the baseline, 2 runs each.
  assert.match(first.stdout, /\$ npx tsx stats\.ts --baseline \S+\/real\/baseline --compare \S+\/real\/lambda/);
  assert.match(first.stdout, /stats\.ts: 1 variant against the baseline, alpha 0\.01/);
  assert.match(first.stdout, /^ {2}lambda +2 +\d\.\d{5} /m);
  assert.match(first.stdout, /^ {2}lambda: lambdaInit 1\.1 → 1$/m);
  const logs = (name: string): string[] => readdirSync(join(out, name)).filter((f) => f.endsWith('.txt')).sort();
  for (const name of ['baseline', 'lambda']) {
    assert.equal(logs(name).length, 2, name);
    assert.deepEqual(logs(name).map((f) => readLogFile(join(out, name, f)).seed).sort(), [0, 1]);
    for (const f of logs(name)) assert.ok(parseLog(readFileSync(join(out, name, f), 'utf8'), f).ok, `${name}/${f} is a finished run`);
  }
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'ablation.json'), 'utf8')), { base: MICRO, variants: { baseline: [], lambda: ['--lambda-init', '1.0'] } });

  // Cut lambda's seed-1 log before its final validation, as a crash would.
  const [cut] = logs('lambda').filter((f) => readLogFile(join(out, 'lambda', f)).seed === 1);
  const full = readFileSync(join(out, 'lambda', cut), 'utf8');
  const cutText = full.slice(0, full.indexOf('step:2/2 val_loss:'));
  writeFileSync(join(out, 'lambda', cut), cutText);

  const second = await run(...argv);
  assert.equal(second.code, 0, `${second.stdout}\n${second.stderr}`);
  assert.match(second.stdout, /4 runs .*3 complete, 1 to run/);
  assert.match(second.stdout, new RegExp(`^ {2}kept lambda seed 1: incomplete log \\S+${cut} \\(unfinished: no validation line`, 'm'));
  assert.equal((second.stdout.match(/^ {2}skip /gm) ?? []).length, 3);
  assert.match(second.stdout, /^\[1\/1\] lambda seed 1: val loss \d+\.\d{4}/m);
  assert.equal(readFileSync(join(out, 'lambda', cut), 'utf8'), cutText, 'the cut log is kept as it was');
  assert.equal(logs('lambda').length, 3);
  assert.match(second.stdout, /Found 5 log files: 2 baseline runs, 2 runs of 1 variant, 1 skipped\./);

  // Everything is complete now; other flags for the same folders are refused.
  const third = await run(...argv.slice(0, 8), '--dry-run', ...argv.slice(8));
  assert.match(third.stdout, /4 complete, 0 to run/);
  const other = await run(...argv.slice(0, -1), '512');
  assert.equal(other.code, 2);
  assert.match(other.stderr, /ablation\.json records the base flags .* --batch-tokens 256; these are .* --batch-tokens 512: use another --out/);
  const renamed = await run('--out', out, '--variants', writeVariants('renamed.json', { baseline: [], lambda: '--lambda-init 0.9' }), '--trainer', TRAINER, '--', ...MICRO);
  assert.equal(renamed.code, 2);
  assert.match(renamed.stderr, /records variant lambda as --lambda-init 1\.0; the variants file gives --lambda-init 0\.9/);
});
