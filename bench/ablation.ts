// bench/ablation.ts: an ablation. Runs train_gpt.ts for every variant × seed, one after another on one machine,
// writing each variant's logs into a folder of its own, then compares every variant with the baseline (stats.ts
// --compare: Welch tests, Holm's correction across the variants).
//
//   npx tsx bench/ablation.ts --out DIR [--variants FILE] [--seeds 0-4] [--jobs N] [--stop-after MIN] [--dry-run] [--trainer CMD] [-- BASE FLAGS...]
//
// Each run is `npx tsx train_gpt.ts BASE_FLAGS VARIANT_FLAGS --seed S --log-dir DIR/<variant>`. The variants file
// (JSON, or a TS module whose default export is the same object) maps a variant's name, its folder's name, to its
// extra flags: a list (["--canon", "A"]) or one string ("--canon A"); it names a `baseline`, the one every other is
// compared with (usually no extra flags). The base flags default to `--preset short`.
//
// Resumable: a run whose log in its folder is complete is skipped. A log is complete when it ends the run: a final
// validation at the last step (a finished run), or a closing line saying the loss diverged (that is the seed's result:
// running it again until it converges would bias the comparison); a log that continues another run (`resumed:`) never
// is. An incomplete log (interrupted, crashed, cut) is kept, never overwritten or deleted, and its run is done again
// into a new file (train_gpt.ts never reuses a log's name); stats.ts lists it among the skipped logs. The seeds run
// outermost (every variant at seed 0, then at seed 1, ...), so that a drift of the machine's speed over the hours
// touches every variant alike, and an ablation stopped early has about as many runs of each.
// --jobs N runs N at once: a short run leaves the GPU idle in its start-up, validations and the host's queueing, which
// the others fill (one H200, --preset short, three at once: 17.6 s of wall time a run, each training 2-4× slower than
// its 13.2 s alone). The losses are those of runs alone; the times are not, so compare times only between runs made
// with the same --jobs. --stop-after starts no run after that many minutes, so that a call fits a machine lent by the
// hour; the next call goes on.
// DIR/ablation.json records the base flags and the variants' flags: a later call with other flags for the same folders
// is refused (its runs would be another configuration, which stats.ts would refuse to pool at the very end).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { extname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { writeFileAtomic } from '../data/shard.ts';
import { SEPARATOR } from '../log_format.ts';
import { UsageError, main as statsMain, parseLog, parseSeeds, shellQuote, type Io } from '../stats.ts';
import { ConfigError, parseFlags, resolveConfig } from '../train_gpt.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const BASELINE = 'baseline';
const MANIFEST = 'ablation.json';
const DEFAULT_BASE = ['--preset', 'short'];
const DEFAULT_TRAINER = 'npx tsx train_gpt.ts';
/** Flags this runner sets for each run. */
const OWN_FLAGS = ['--seed', '--log-dir'];

export const USAGE = `Run an ablation: train_gpt.ts for every variant × seed, then stats.ts --compare.

Usage: npx tsx bench/ablation.ts --out DIR [--variants FILE] [--seeds 0-4] [--jobs N] [--stop-after MIN] [--dry-run] [--trainer CMD] [-- BASE FLAGS...]

  --out DIR        the ablation's folder: DIR/<variant>/ holds each variant's logs (required)
  --variants FILE  JSON or TS: variant name -> its extra flags; must name a baseline (default bench/ablation_variants.json)
  --seeds LIST     seeds, as 0-4, 0,1,2 or 0-2,7 (default 0-4)
  --jobs N         runs at once, sharing the machine (default 1); their times include the sharing: compare times
                   only between runs made with the same N
  --stop-after MIN start no run after MIN minutes (runs under way finish); the next call does the rest
  --dry-run        print the runs it would do (and those it skips) without running them
  --trainer CMD    the command that trains, split at spaces (default: ${DEFAULT_TRAINER})
  -h, --help       this text

BASE FLAGS (after --) go to every run before the variant's flags; default ${DEFAULT_BASE.join(' ')}. Runs with a
complete log are skipped; an incomplete log is kept and its run done again. Exit status: 0 every run complete and
compared, 1 a run failed or stayed incomplete, 2 bad usage, 3 stopped by --stop-after with runs to do, 130 interrupted.
`;

// -----------------------------------------------------------------------------
// The plan: variants, seeds, and which runs are done

export interface Variant { name: string; flags: string[] }

/** A --jobs or --stop-after value: a positive number (an integer where `integer`). */
function parsePositive(flag: string, text: string, integer: boolean): number {
  const value = Number(text);
  if (!(value > 0) || (integer && !Number.isInteger(value))) {
    throw new UsageError(`${flag} ${JSON.stringify(text)}: expected a positive ${integer ? 'integer' : 'number'}`);
  }
  return value;
}

/** Reads the variants file; checks names (folder names) and flags, and that a baseline is among them. */
export async function loadVariants(file: string): Promise<Variant[]> {
  if (!existsSync(file)) throw new UsageError(`--variants: no such file: ${file}`);
  let data: unknown;
  try {
    data = ['.ts', '.mts', '.js', '.mjs'].includes(extname(file))
      ? ((await import(pathToFileURL(resolve(file)).href)) as { default: unknown }).default
      : JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`--variants ${file}: ${(error as Error).message.split('\n')[0]}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new UsageError(`--variants ${file}: expected an object mapping each variant's name to its flags`);
  }
  const variants = Object.entries(data).map(([name, flags]): Variant => {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || name === MANIFEST) {
      throw new UsageError(`--variants ${file}: variant name ${JSON.stringify(name)} is not a folder name (letters, digits, . _ -)`);
    }
    if (typeof flags === 'string') return { name, flags: flags.split(/\s+/).filter(Boolean) };
    if (Array.isArray(flags) && flags.every((f) => typeof f === 'string')) return { name, flags };
    throw new UsageError(`--variants ${file}: the flags of ${name} must be a list of strings or one string`);
  });
  if (!variants.some((v) => v.name === BASELINE)) {
    throw new UsageError(`--variants ${file}: no variant named ${BASELINE} (the runs every other variant is compared with; usually [])`);
  }
  if (variants.length < 2) throw new UsageError(`--variants ${file}: nothing to compare with the baseline`);
  return variants;
}

/**
 * Checks each variant's flags as train_gpt.ts will read them, so that a typo fails now rather than after hours of
 * runs. The preset must be named: auto picks one per machine, and one ablation's runs must share theirs.
 */
export function checkFlags(base: string[], variants: Variant[]): void {
  for (const own of OWN_FLAGS) {
    if (base.includes(own)) throw new UsageError(`the base flags give ${own}: bench/ablation.ts sets it for each run`);
    const v = variants.find((x) => x.flags.includes(own));
    if (v) throw new UsageError(`variant ${v.name} gives ${own}: bench/ablation.ts sets it for each run`);
  }
  for (const v of variants) {
    try {
      const { overrides } = parseFlags([...base, ...v.flags]);
      if (!overrides.preset || overrides.preset === 'auto') {
        throw new ConfigError('name a --preset in the base flags (auto picks one per machine; the runs of an ablation must share it)');
      }
      resolveConfig(overrides.preset, overrides);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      throw new UsageError(`variant ${v.name} (${[...base, ...v.flags].join(' ')}): ${error.message}`);
    }
  }
}

export type LogState = { complete: true; diverged: boolean; valLoss: number; trainTimeS: number } | { complete: false; reason: string };
export interface LogFile { file: string; seed: number | null; state: LogState }

/**
 * A log's seed (from its `config:` header line; null without one) and whether it is complete: a finished run, or
 * one whose loss diverged. Unfinished, interrupted, crashed and resumed logs are not (stats.ts's reasons say why).
 */
export function readLogFile(file: string): LogFile {
  const text = readFileSync(file, 'utf8');
  const afterSource = text.indexOf(`\n${SEPARATOR}\n`);
  const configLine = afterSource < 0 ? null : /^config: (\{.*\})$/m.exec(text.slice(afterSource));
  let seed: number | null = null;
  try {
    const config = configLine ? (JSON.parse(configLine[1]) as { seed?: unknown }) : null;
    if (typeof config?.seed === 'number') seed = config.seed;
  } catch { /* a malformed config line: no seed, so the log counts for no run */ }
  const parsed = parseLog(text, file);
  if (parsed.ok) return { file, seed, state: { complete: true, diverged: false, valLoss: parsed.run.finalValLoss, trainTimeS: parsed.run.trainTimeMs / 1000 } };
  if (/^diverged:/.test(parsed.reason)) return { file, seed, state: { complete: true, diverged: true, valLoss: NaN, trainTimeS: NaN } };
  return { file, seed, state: { complete: false, reason: parsed.reason } };
}

/** The logs in a variant's folder (none if it does not exist yet). */
function logsIn(dir: string): LogFile[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.endsWith('.txt')).sort().map((f) => readLogFile(join(dir, f)));
}

export interface PlannedRun {
  variant: Variant;
  seed: number;
  dir: string; // the variant's log folder, absolute
  done: { file: string; diverged: boolean } | null; // a complete log of this seed: the run is skipped
  incomplete: { file: string; reason: string }[]; // incomplete logs of this seed, kept
  extra: string[]; // further complete logs of this seed (stats.ts counts each as a run)
}

/** Every variant × seed, seeds outermost, with what its folder already holds. */
export function planRuns(out: string, variants: Variant[], seeds: number[]): PlannedRun[] {
  const logs = new Map(variants.map((v) => [v.name, logsIn(join(out, v.name))]));
  return seeds.flatMap((seed) => variants.map((variant): PlannedRun => {
    const complete: { file: string; diverged: boolean }[] = [];
    const incomplete: { file: string; reason: string }[] = [];
    for (const { file, seed: s, state } of logs.get(variant.name)!) {
      if (s !== seed) continue;
      if (state.complete) complete.push({ file, diverged: state.diverged });
      else incomplete.push({ file, reason: state.reason });
    }
    return { variant, seed, dir: join(out, variant.name), done: complete[0] ?? null, incomplete, extra: complete.slice(1).map((l) => l.file) };
  }));
}

/**
 * Records the flags of this ablation in DIR/ablation.json, or checks them against those recorded: other base flags,
 * or other flags for a variant already there, would put runs of two configurations in one folder. New variants join.
 */
function checkManifest(out: string, base: string[], variants: Variant[], write: boolean): void {
  const file = join(out, MANIFEST);
  let recorded: { base: string[]; variants: Record<string, string[]> } | null = null;
  if (existsSync(file)) {
    try {
      recorded = JSON.parse(readFileSync(file, 'utf8'));
    } catch (error) {
      throw new UsageError(`${file}: ${(error as Error).message.split('\n')[0]}`);
    }
    const same = (a: string[], b: string[]): boolean => a.join('\0') === b.join('\0');
    if (!same(recorded!.base, base)) {
      throw new UsageError(`${file} records the base flags ${recorded!.base.join(' ')}; these are ${base.join(' ')}: use another --out, or the same flags`);
    }
    for (const v of variants) {
      const flags = recorded!.variants[v.name];
      if (flags && !same(flags, v.flags)) {
        throw new UsageError(`${file} records variant ${v.name} as ${flags.join(' ') || '(no flags)'}; the variants file gives ${v.flags.join(' ') || '(no flags)'}: rename the variant, or use another --out`);
      }
    }
  }
  if (write) {
    const merged = { base, variants: { ...recorded?.variants, ...Object.fromEntries(variants.map((v) => [v.name, v.flags])) } };
    mkdirSync(out, { recursive: true });
    writeFileAtomic(file, Buffer.from(JSON.stringify(merged, null, 2) + '\n'));
  }
}

// -----------------------------------------------------------------------------
// Running

/** The trainer's argv for one run. train_gpt.ts resolves --log-dir against the repository: give it that way. */
function runArgv(trainer: string[], base: string[], run: PlannedRun): string[] {
  const fromRepo = relative(REPO, run.dir);
  const logDir = fromRepo.startsWith('..') || isAbsolute(fromRepo) ? run.dir : fromRepo;
  return [...trainer, ...base, ...run.variant.flags, '--seed', String(run.seed), '--log-dir', logDir];
}

/** The last characters of a run's output kept when runs share the terminal (--jobs > 1): shown if the run fails. */
const OUTPUT_TAIL = 4000;

/**
 * Runs one command from the repository root; resolves to its exit status (or the signal's name). Alone, its output
 * is passed on as it comes; run beside others (`passOutput` false), only its tail, and only if it fails.
 */
function runTrainer(argv: string[], io: Io, passOutput: boolean): Promise<{ status: number | string; tail: string }> {
  return new Promise((done) => {
    let tail = '';
    const keep = (d: Buffer): void => { tail = (tail + d.toString()).slice(-OUTPUT_TAIL); };
    const child = spawn(argv[0], argv.slice(1), { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', passOutput ? (d: Buffer) => io.stdout(d.toString()) : keep);
    child.stderr.on('data', passOutput ? (d: Buffer) => io.stderr(d.toString()) : keep);
    child.on('error', (error) => { io.stderr(`ablation: cannot start ${argv[0]}: ${error.message}\n`); done({ status: 127, tail }); });
    child.on('close', (code, signal) => done({ status: code ?? signal ?? 1, tail }));
  });
}

const minutes = (ms: number): string => (ms < 60_000 ? `${Math.round(ms / 1000)} s` : `${(ms / 60_000).toFixed(1)} min`);

/** Runs the command; returns the exit status (see USAGE). */
export async function main(argv: string[], io: Io): Promise<number> {
  const say = (line: string): void => io.stdout(`${line}\n`);
  let interrupted = false;
  const onSigint = (): void => {
    // The trainer gets the same Ctrl-C and stops after its step; no further run starts.
    interrupted = true;
    io.stderr('\nablation: interrupted: no further run starts\n');
  };
  try {
    const dash = argv.indexOf('--');
    const own = dash < 0 ? argv : argv.slice(0, dash);
    const base = dash < 0 ? DEFAULT_BASE : argv.slice(dash + 1);
    let values;
    try {
      ({ values } = parseArgs({
        args: own, strict: true, allowPositionals: false,
        options: { out: { type: 'string' }, variants: { type: 'string' }, seeds: { type: 'string' }, jobs: { type: 'string' },
          'stop-after': { type: 'string' }, 'dry-run': { type: 'boolean' }, trainer: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      }));
    } catch (error) {
      throw new UsageError(`${(error as Error).message.split('. To specify')[0]} (see --help; the base flags go after --)`);
    }
    if (values.help) {
      io.stdout(USAGE);
      return 0;
    }
    if (!values.out) throw new UsageError('--out DIR is required: the folder of the ablation\'s logs');
    const out = resolve(values.out);
    const variants = await loadVariants(values.variants ?? join(REPO, 'bench', 'ablation_variants.json'));
    const seeds = parseSeeds(values.seeds ?? '0-4');
    const jobs = parsePositive('--jobs', values.jobs ?? '1', true);
    const stopAfterMs = values['stop-after'] === undefined ? Infinity : parsePositive('--stop-after', values['stop-after'], false) * 60_000;
    const trainer = (values.trainer ?? DEFAULT_TRAINER).split(/\s+/).filter(Boolean);
    if (trainer.length === 0) throw new UsageError('--trainer: empty command');
    checkFlags(base, variants);
    const dryRun = values['dry-run'] ?? false;
    checkManifest(out, base, variants, !dryRun);

    const plan = planRuns(out, variants, seeds);
    const todo = plan.filter((r) => !r.done);
    say(`ablation: ${variants.length} variants × ${seeds.length} seeds = ${plan.length} runs in ${relative(process.cwd(), out) || '.'}; ` +
      `${plan.length - todo.length} complete, ${todo.length} to run${dryRun ? ' (dry run)' : ''}`);
    for (const r of plan) {
      const label = `${r.variant.name} seed ${r.seed}`;
      if (r.done) say(`  skip ${label}: complete log ${relative(process.cwd(), r.done.file)}${r.done.diverged ? ' (diverged)' : ''}`);
      for (const file of r.extra) say(`  note ${label}: another complete log ${relative(process.cwd(), file)}; stats.ts counts each`);
      for (const l of r.incomplete) say(`  kept ${label}: incomplete log ${relative(process.cwd(), l.file)} (${l.reason})`);
    }
    if (dryRun) {
      for (const r of todo) say(runArgv(trainer, base, r).map(shellQuote).join(' '));
      return 0;
    }

    process.on('SIGINT', onSigint);
    const failed: string[] = [];
    const started = performance.now();
    let next = 0; // the next run of `todo` to start
    let finished = 0;
    let timeUp = false;
    const runNext = async (): Promise<void> => {
      for (;;) {
        if (interrupted || next >= todo.length) return;
        const elapsed = performance.now() - started;
        if (elapsed >= stopAfterMs) {
          timeUp = true;
          return;
        }
        const k = next++;
        const r = todo[k];
        const label = `[${k + 1}/${todo.length}] ${r.variant.name} seed ${r.seed}`;
        const eta = finished > 0 ? `, ≈ ${minutes((elapsed / finished) * (todo.length - finished))} left` : '';
        const command = runArgv(trainer, base, r);
        say(`\n${label}${eta}\n$ ${command.map(shellQuote).join(' ')}`);
        // Runs at once write into different folders (one variant each, or one seed each of the same variant).
        const before = new Set(logsIn(r.dir).map((l) => l.file));
        const { status, tail } = await runTrainer(command, io, jobs === 1);
        finished++;
        const log = logsIn(r.dir).filter((l) => !before.has(l.file)).find((l) => l.seed === r.seed);
        if (log?.state.complete) {
          say(log.state.diverged ? `${label}: diverged (log ${relative(process.cwd(), log.file)})`
            : `${label}: val loss ${log.state.valLoss.toFixed(4)}, train time ${log.state.trainTimeS.toFixed(1)} s`);
        } else {
          const why = log && !log.state.complete ? log.state.reason : 'no log written';
          failed.push(`${r.variant.name} seed ${r.seed} (exit ${status}: ${why})`);
          if (jobs > 1 && tail) io.stderr(`${label}: the end of its output:\n${tail.trimEnd()}\n`);
          say(`${label}: not complete (exit ${status}: ${why}); it runs again on the next call`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(jobs, todo.length) }, runNext));
    process.off('SIGINT', onSigint);
    const left = todo.length - next;
    say(`\nablation: ${finished - failed.length} of ${todo.length} runs done in ${minutes(performance.now() - started)}` +
      `${jobs > 1 ? `, ${jobs} at once` : ''}${failed.length ? `; not complete: ${failed.join(', ')}` : ''}${interrupted ? '; interrupted' : ''}` +
      `${timeUp && !interrupted ? `; --stop-after ${values['stop-after']} min reached with ${left} run${left === 1 ? '' : 's'} not started: the next call does ${left === 1 ? 'it' : 'them'}` : ''}`);
    if (interrupted) return 130;
    if (timeUp) return 3;

    // A variant whose every run failed before writing a log has no folder: stats.ts compares the others.
    const missing = variants.filter((v) => !existsSync(join(out, v.name))).map((v) => v.name);
    if (missing.length > 0) say(`ablation: no logs at all for ${missing.join(', ')}`);
    if (missing.includes(BASELINE) || missing.length === variants.length - 1) return 1;
    const compared = variants.filter((v) => v.name !== BASELINE && !missing.includes(v.name)).map((v) => join(out, v.name));
    const statsArgv = ['--baseline', join(out, BASELINE), '--compare', ...compared];
    say(`\n$ npx tsx stats.ts ${statsArgv.map(shellQuote).join(' ')}  (add --markdown and --plot FILE.svg for a README)`);
    const statsStatus = await statsMain(statsArgv, io);
    return statsStatus !== 0 ? statsStatus : failed.length ? 1 : 0;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr(`ablation: error: ${error.message}\n`);
    return 2;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

// Run the command only when this file is executed, not when tests import it.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2), {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
  });
}
