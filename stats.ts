// stats.ts: certify (or refuse) a speedrun record from its run logs.
//
//   npx tsx stats.ts [RUNS...] [--baseline RUNS...] [--target 3.28] [--alpha 0.01]
//                    [--markdown | --json] [--plot FILE.svg|FILE.png] [--allow-mixed] [--allow-hardware-mismatch]
//   npx tsx stats.ts --baseline RUNS... --compare DIR... [--alpha 0.01] [--markdown | --json] [--plot FILE]
//
// The rule (shared/reference/speedrun.md): a record must show with p < alpha (0.01) that its mean final val
// loss is below the target (3.28), by a one-sample one-sided t-test over repeated runs, and must be faster
// than the previous record re-timed on the same hardware (the baseline). This file reads the logs, counts
// every run it finds, runs the tests, says how many runs would likely be needed, and prints a verdict.
// With --compare it reports an ablation instead: several variants, a folder each, against one baseline, with
// Welch tests (--paired: paired by seed) and Holm's correction across the variants (bench/ablation.ts runs one and calls this).
//
// Read top to bottom: 1. reading a log, 2. finding the logs, 3. statistics, 4. the analysis, 4b. variants
// against a baseline, 5. the reports (terminal, markdown, JSON), 6. the plots, 7. the command line.

import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { transformSync } from 'esbuild';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, stripVTControlCharacters } from 'node:util';
import chalk from 'chalk';
import { max, mean, min, sampleStandardDeviation } from 'simple-statistics';
import tCdf from '@stdlib/stats-base-dists-t-cdf';
import tQuantile from '@stdlib/stats-base-dists-t-quantile';
import type { TopLevelSpec } from 'vega-lite';
import { writeFileAtomic } from './data/shard.ts';
import { SEPARATOR, parseGpuName, parseResumedLine, parseStepLine, parseStoppedLine } from './log_format.ts';

/** A user-facing error (bad flag, missing file, nothing to analyse): printed as one line, never a stack. */
export class UsageError extends Error {}

// ------------------------------------------------------------------------------------------------------
// 1. Reading a log
// ------------------------------------------------------------------------------------------------------
// A log is: the training script's source, a line of exactly 100 '=', runtime versions and the GPU listing,
// another such line, then step lines (log_format.ts writes and reads them). The PyTorch speedrun writes the
// same lines (older logs add a third '=' block, print attention scales, write `step_avg:nanms` early on, or
// `peak memory consumption`), so we pick out only the `step:n/N ...` lines and ignore everything else.

export interface ValPoint {
  step: number;
  trainTimeMs: number;
  valLoss: number;
}

export interface Run {
  file: string; // as shown to the user (relative to the working directory)
  codeHash: string; // short hash of the logged source, normalised (normalizeSource): runs of different code are different groups
  /** The logged hyperparameters (train_gpt.ts's `config:` header line) that change the maths; null in logs without one. */
  config: Record<string, unknown> | null;
  configHash: string; // short hash of config; '' without one
  seed: number | null; // the logged seed (--seeds keeps runs by it); null in logs without a config line
  source: string; // the normalised source, to show how versions differ (left out of the JSON report)
  contentHash: string; // hash of the whole log, to catch one run counted twice
  hardware: string; // e.g. "8× NVIDIA H100 80GB HBM3", from the nvidia-smi listing
  steps: number;
  finalValLoss: number;
  trainTimeMs: number;
  stepAvgMs: number;
  valCurve: ValPoint[];
}

export type ParsedLog = { ok: true; run: Run } | { ok: false; reason: string };

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/** "8× NVIDIA H100 80GB HBM3" from the nvidia-smi listing in the log's header. */
function describeHardware(header: string[]): string {
  const gpus = header.map(parseGpuName).filter((name): name is string => !!name);
  if (gpus.length === 0) return 'no GPU listed';
  const names = [...new Set(gpus)];
  return names.length === 1 ? `${gpus.length}× ${names[0]}` : gpus.join(' + ');
}

// Sources that differ only in comments, layout, type annotations or a run id are one version: the upstream
// records write a fresh run_id into the script of each run. TypeScript goes through esbuild (which drops
// types and comments and prints one layout); other sources (the PyTorch speedrun's Python) lose `#` comments,
// trailing blanks and empty lines. Then an assignment to run_id/runId keeps only its name.
const RUN_ID_ASSIGNMENT = /^(\s*(?:(?:const|let|var)\s+)?(?:\w+\.)?(?:run_id|runId|RUN_ID)\s*(?::[^=]*)?=\s*).*$/gm;
const normalized = new Map<string, string>(); // sha256 of the raw source -> normalised source

export function normalizeSource(source: string): string {
  const key = sha256(source);
  const cached = normalized.get(key);
  if (cached !== undefined) return cached;
  let text: string;
  try {
    text = transformSync(source, { loader: 'ts', logLevel: 'silent' }).code;
  } catch {
    text = source.split('\n').map((line) => line.replace(/(^|\s)#.*$/, '').trimEnd()).filter((line) => line !== '').join('\n');
  }
  text = text.replace(RUN_ID_ASSIGNMENT, '$1<run id>');
  normalized.set(key, text);
  return text;
}

// The logged settings that do not change the maths: the seed (runs of a record differ in it), where logs and
// checkpoints go, how often the console prints, how many processes share the (global) batch and how they
// all-reduce and share the optimiser (the hardware is compared on its own). Every other key of the `config:` line splits a group.
const CONFIG_KEYS_IGNORED = new Set([
  'seed', 'logDir', 'checkpointDir', 'saveCheckpoint', 'checkpointEvery', 'keepCheckpoints', 'resume', 'resumeAllowConfigChange',
  'printEvery', 'gpus', 'collective', 'collectiveTimeout', 'shardOptimizer',
]);

/** The header's `config:` line: the settings that change the maths, and the seed. */
function loggedConfig(header: string[]): { config: Record<string, unknown> | null; seed: number | null } | 'malformed' {
  const line = header.find((l) => l.startsWith('config: {'));
  if (line === undefined) return { config: null, seed: null };
  let parsed: unknown;
  try {
    parsed = JSON.parse(line.slice('config: '.length));
  } catch {
    return 'malformed';
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return 'malformed';
  const seed = (parsed as { seed?: unknown }).seed;
  return {
    config: Object.fromEntries(Object.entries(parsed).filter(([k]) => !CONFIG_KEYS_IGNORED.has(k)).sort(([a], [b]) => a.localeCompare(b))),
    seed: typeof seed === 'number' ? seed : null,
  };
}

/** Parses one log. Never throws: a log that is not a finished run comes back with the reason. */
export function parseLog(text: string, file: string): ParsedLog {
  // Normalise line endings so a log that went through Windows keeps its code hash.
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  if (text.trim() === '') return { ok: false, reason: 'empty file' };
  let sourceStart = 0;
  let firstSeparator = lines.indexOf(SEPARATOR);
  if (firstSeparator < 0) {
    // train_gpt.ts writes the source first: a log cut there stopped before training (or was truncated).
    const looksLikeSource = /^(\/\/|\/\*|#|import |from |"{3}|'use )/.test(text.trimStart());
    return { ok: false, reason: looksLikeSource
      ? `unfinished: the log ends inside the training script's source (no line of 100 '=' after it)`
      : `malformed: no line of 100 '=' (not a speedrun log)` };
  }
  if (lines.slice(0, firstSeparator).every((line) => line.trim() === '')) {
    // The PyTorch speedrun's 2024 logs open with a '=' line before the source: skip it.
    sourceStart = firstSeparator + 1;
    firstSeparator = lines.indexOf(SEPARATOR, sourceStart);
    if (firstSeparator < 0) return { ok: false, reason: `malformed: no line of 100 '=' after the source` };
  }
  const source = lines.slice(sourceStart, firstSeparator).join('\n').trimEnd();
  const secondSeparator = lines.indexOf(SEPARATOR, firstSeparator + 1);
  const header = lines.slice(firstSeparator + 1, secondSeparator < 0 ? firstSeparator + 1 : secondSeparator);
  const logged = loggedConfig(header);
  if (logged === 'malformed') return { ok: false, reason: 'malformed: the config: line of the header is not a JSON object' };

  let total: number | undefined;
  let lastStep = 0;
  const valCurve: ValPoint[] = [];
  let finalStepAvgMs = NaN; // from the last validation line
  let stopped: ReturnType<typeof parseStoppedLine> = null; // train_gpt.ts's closing line of a run that stopped early
  for (const line of lines.slice(firstSeparator + 1)) {
    stopped = parseStoppedLine(line) ?? stopped;
    const resumed = parseResumedLine(line);
    if (resumed) {
      // Its times include a run no log shows whole, and its final loss repeats that run's: never a run of its own.
      return { ok: false, reason: `resumed: continues another run from step ${resumed.step} of checkpoint ${resumed.checkpoint} (${resumed.priorTrainMs} ms of train time before); a resumed run is never counted` };
    }
    const step = parseStepLine(line);
    if (!step) continue;
    lastStep = step.step;
    if (total !== undefined && step.total !== total) {
      return { ok: false, reason: `malformed: step lines disagree on the number of steps (${total} and ${step.total})` };
    }
    total = step.total;
    if (step.valLoss === undefined) continue;
    if (step.trainTimeMs === undefined) return { ok: false, reason: `malformed: validation line without train_time: "${line.trim()}"` };
    valCurve.push({ step: lastStep, trainTimeMs: step.trainTimeMs, valLoss: step.valLoss });
    finalStepAvgMs = step.stepAvgMs ?? NaN;
  }

  const final = valCurve.at(-1);
  if (stopped && (!final || final.step !== total)) return { ok: false, reason: `${stopped.diverged ? 'diverged' : 'stopped'}: ${stopped.reason}` };
  if (total === undefined) return { ok: false, reason: 'unfinished: no step lines (crashed before training?)' };
  if (!final) return { ok: false, reason: `unfinished: no validation line (last step ${lastStep} of ${total})` };
  if (final.step !== total) return { ok: false, reason: `unfinished: last validation at step ${final.step} of ${total}` };
  if (!Number.isFinite(final.valLoss)) return { ok: false, reason: `diverged: final val_loss is ${final.valLoss}` };
  const normalizedSource = normalizeSource(source);
  return {
    ok: true,
    run: {
      file,
      codeHash: sha256(normalizedSource).slice(0, 8),
      config: logged.config,
      configHash: logged.config ? sha256(JSON.stringify(logged.config)).slice(0, 8) : '',
      seed: logged.seed,
      source: normalizedSource,
      contentHash: sha256(text),
      hardware: describeHardware(header),
      steps: total,
      finalValLoss: final.valLoss,
      trainTimeMs: final.trainTimeMs,
      // A log cut right after train_time has no step_avg: it is the same time per step.
      stepAvgMs: Number.isFinite(finalStepAvgMs) ? finalStepAvgMs : final.trainTimeMs / Math.max(final.step, 1),
      valCurve,
    },
  };
}

// ------------------------------------------------------------------------------------------------------
// 2. Finding the logs
// ------------------------------------------------------------------------------------------------------
// RUNS are files, folders or globs. A folder means the .txt/.log files directly inside it; a record folder
// (records/<track>/<date>_<name>/) is such a folder, and its baseline/ subfolder is the baseline unless
// --baseline is given. Other subfolders are named in a note, never read silently.

const LOG_EXTENSIONS = new Set(['.txt', '.log']);

/** Shows paths relative to the working directory, as the user typed them. */
function displayPath(path: string): string {
  return relative(process.cwd(), path) || '.';
}

// Node 20 has no stable glob (fs.glob arrives in Node 22); shells expand unquoted globs already, so this
// covers quoted patterns: `*`, `?`, `[...]` within one path segment and `**` for any depth of folders.
function hasGlobMagic(text: string): boolean {
  return /[*?[]/.test(text);
}

function segmentToRegExp(segment: string): RegExp {
  let source = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i];
    if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '[' && segment.indexOf(']', i + 2) > 0) {
      const end = segment.indexOf(']', i + 2);
      source += '[' + segment.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\') + ']';
      i = end;
    } else source += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

export function expandGlob(pattern: string): string[] {
  const absolute = resolve(pattern);
  const root = absolute.startsWith(sep) ? sep : absolute.slice(0, absolute.indexOf(sep) + 1);
  const segments = absolute.slice(root.length).split(sep).filter(Boolean);
  const found: string[] = [];
  const walk = (dir: string, index: number): void => {
    if (index === segments.length) {
      found.push(dir);
      return;
    }
    const segment = segments[index];
    if (!hasGlobMagic(segment)) {
      const next = join(dir, segment);
      if (existsSync(next)) walk(next, index + 1);
      return;
    }
    let entries: { name: string; isDirectory(): boolean }[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // not a folder, or unreadable: nothing matches below it
    }
    if (segment === '**') {
      walk(dir, index + 1); // zero folders
      for (const entry of entries) if (entry.isDirectory() && !entry.name.startsWith('.')) walk(join(dir, entry.name), index);
      return;
    }
    const matcher = segmentToRegExp(segment);
    for (const entry of entries) {
      // Like a shell: hidden names match only a pattern that starts with a dot.
      if (entry.name.startsWith('.') && !segment.startsWith('.')) continue;
      if (matcher.test(entry.name)) walk(join(dir, entry.name), index + 1);
    }
  };
  walk(root, 0);
  return [...new Set(found)].sort();
}

export interface LogInputs {
  record: string[]; // absolute paths of candidate log files
  baseline: string[];
  notes: string[];
  variants?: VariantInput[]; // --compare: each variant's candidate log files
  seeds?: number[]; // --seeds: only runs of these logged seeds count
}

export interface VariantInput {
  name: string; // the folder's name
  files: string[];
}

/** realpath, or the path itself for a broken link (which loadRuns then reports as unreadable). */
function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

// Symbolic links are followed (a record folder often links its logs or its baseline/ from elsewhere); a broken
// link to a log is kept, so that loadRuns lists it as unreadable rather than dropping it.
function logFilesIn(dir: string): { files: string[]; subfolders: string[] } {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
  } catch (error) {
    throw new UsageError(`cannot read folder ${displayPath(dir)}: ${(error as Error).message}`);
  }
  const files: string[] = [];
  const subfolders: string[] = [];
  for (const entry of entries) {
    let isDirectory = entry.isDirectory();
    if (entry.isSymbolicLink()) {
      try {
        isDirectory = statSync(join(dir, entry.name)).isDirectory();
      } catch {
        isDirectory = false; // broken: a file to report if it is named like a log
      }
    }
    if (isDirectory) subfolders.push(entry.name);
    else if (LOG_EXTENSIONS.has(extname(entry.name).toLowerCase())) files.push(join(dir, entry.name));
  }
  return { files, subfolders };
}

/** A RUNS argument as absolute paths: itself if it exists, else what its glob matches. */
function expand(arg: string): string[] {
  if (existsSync(arg)) return [resolve(arg)];
  if (!hasGlobMagic(arg)) throw new UsageError(`no such file or folder: ${arg}`);
  const matches = expandGlob(arg);
  if (matches.length === 0) throw new UsageError(`no files match ${JSON.stringify(arg)}`);
  return matches;
}

/** Turns the RUNS arguments into log files. Throws UsageError for a path or pattern that finds nothing. */
export function collectLogs(recordArgs: string[], baselineArgs: string[]): LogInputs {
  const notes: string[] = [];
  const record: string[] = [];
  const baseline: string[] = [];
  const impliedBaseline: string[] = [];

  const add = (arg: string, into: string[], isBaseline: boolean): void => {
    for (const path of expand(arg)) {
      if (!statSync(path).isDirectory()) {
        into.push(path);
        continue;
      }
      const { files, subfolders } = logFilesIn(path);
      into.push(...files);
      if (files.length === 0) notes.push(`${displayPath(path)}/ holds no .txt or .log files`);
      for (const sub of subfolders) {
        if (sub === 'baseline' && !isBaseline) {
          const real = realPath(join(path, sub));
          if (baselineArgs.length > 0) notes.push(`${displayPath(join(path, sub))}/ not read: --baseline was given`);
          else if (realPath(path) === real || realPath(path).startsWith(real + sep)) {
            // A link back up the tree would read the record's own logs as its baseline.
            notes.push(`${displayPath(join(path, sub))}/ not read: it links to ${displayPath(real)}, which holds the record itself`);
          } else {
            const { files: baselineFiles } = logFilesIn(join(path, sub));
            if (baselineFiles.length === 0) notes.push(`${displayPath(join(path, sub))}/ holds no .txt or .log files`);
            impliedBaseline.push(...baselineFiles);
          }
        } else {
          notes.push(`subfolder ${displayPath(join(path, sub))}/ not read (name it to include it)`);
        }
      }
    }
  };
  for (const arg of recordArgs) add(arg, record, false);
  for (const arg of baselineArgs) add(arg, baseline, true);
  baseline.push(...impliedBaseline);

  // A file named twice (a folder and a glob, say) is one file; a file on both sides is a mistake.
  const unique = (paths: string[]): string[] => [...new Map(paths.map((p) => [realPath(p), p])).values()];
  const recordFiles = unique(record);
  const baselineFiles = unique(baseline);
  const recordReal = new Set(recordFiles.map(realPath));
  const both = baselineFiles.filter((p) => recordReal.has(realPath(p)));
  if (both.length > 0) throw new UsageError(`${displayPath(both[0])} is given both as a record run and as a baseline run`);
  return { record: recordFiles, baseline: baselineFiles, notes };
}

/**
 * --compare: each argument (a folder, or a glob matching folders) is one variant, named after its folder, and
 * holds that variant's logs directly. A folder that is the baseline's is passed over with a note, so that
 * `--compare 'OUT/*'` works when OUT/baseline is the baseline (a glob's files are passed over too). Throws
 * UsageError for a named file, a glob without folders, a name used twice or a log given on both sides.
 */
export function collectVariants(args: string[], inputs: LogInputs): VariantInput[] {
  const baselineFolders = new Set(inputs.baseline.map((file) => realPath(dirname(file))));
  const baselineFiles = new Set(inputs.baseline.map(realPath));
  const variants: VariantInput[] = [];
  const seen = new Map<string, string>(); // name -> folder
  const isFolder = (path: string): boolean => statSync(path).isDirectory();
  const folders = args.flatMap((arg) => {
    const paths = expand(arg);
    if (existsSync(arg) && !isFolder(paths[0])) throw new UsageError(`--compare takes one folder per variant: ${arg} is not a folder`);
    // A glob's files (OUT/* also matches the plot next to the variant folders) are not variants.
    const dirs = paths.filter(isFolder);
    if (dirs.length === 0) throw new UsageError(`--compare: no folders match ${JSON.stringify(arg)}`);
    return dirs;
  });
  // A folder named twice (a path and a glob, or through a link) is one variant.
  for (const dir of new Map(folders.map((d) => [realPath(d), d])).values()) {
    if (baselineFolders.has(realPath(dir))) {
      inputs.notes.push(`${displayPath(dir)}/ holds baseline runs: not compared with itself`);
      continue;
    }
    const name = basename(dir);
    if (name === 'baseline') throw new UsageError(`${displayPath(dir)}: a variant folder may not be named baseline (that name is the baseline's row); rename it`);
    const twin = seen.get(name);
    if (twin !== undefined) {
      throw new UsageError(`two variant folders are named ${name}: ${displayPath(twin)} and ${displayPath(dir)} (a variant is named after its folder)`);
    }
    seen.set(name, dir);
    const { files, subfolders } = logFilesIn(dir);
    const shared = files.find((file) => baselineFiles.has(realPath(file)));
    if (shared !== undefined) throw new UsageError(`${displayPath(shared)} is given both as a baseline run and as a run of variant ${name}`);
    if (files.length === 0) inputs.notes.push(`${displayPath(dir)}/ holds no .txt or .log files`);
    for (const sub of subfolders) inputs.notes.push(`subfolder ${displayPath(join(dir, sub))}/ not read (a variant's logs lie directly in its folder)`);
    variants.push({ name, files });
  }
  if (variants.length === 0) throw new UsageError('--compare: no variant folder besides the baseline');
  return variants;
}

// ------------------------------------------------------------------------------------------------------
// 3. Statistics
// ------------------------------------------------------------------------------------------------------
// Descriptive statistics come from simple-statistics, the t distribution from @stdlib. p-values use the
// lower tail at -|t| directly: 1 - cdf(|t|) would round to 0 below about 1e-16, while the lower tail is
// accurate far beyond the 1e-12 we must match scipy to.

export type Alternative = 'less' | 'two-sided'; // H1: mean (difference) < 0, or ≠ 0

export interface Summary {
  n: number;
  mean: number;
  sd: number; // sample standard deviation (n - 1); NaN for n < 2
  se: number; // standard error of the mean
  ci95: [number, number]; // 95 % t confidence interval of the mean
  min: number;
  max: number;
}

export interface TTest {
  t: number;
  df: number;
  p: number;
  alternative: Alternative;
}

export interface Comparison extends TTest {
  diff: number; // mean(a) - mean(b)
  ci95: [number, number]; // 95 % Welch interval of the difference
  pTwoSided: number;
  cohenD: number; // difference over the pooled standard deviation
  hedgesG: number; // Cohen's d with the small-sample bias correction
}

export function summarize(xs: number[]): Summary {
  const n = xs.length;
  const m = mean(xs);
  const sd = n >= 2 ? sampleStandardDeviation(xs) : NaN;
  const se = sd / Math.sqrt(n);
  const half = n >= 2 ? tQuantile(0.975, n - 1) * se : NaN;
  return { n, mean: m, sd, se, ci95: [m - half, m + half], min: min(xs), max: max(xs) };
}

/** p-value of a t statistic under the chosen alternative. */
export function tPValue(t: number, df: number, alternative: Alternative): number {
  if (Number.isNaN(t)) return NaN;
  if (!Number.isFinite(t)) {
    // Zero spread: the sample says exactly which side it is on.
    return alternative === 'two-sided' || t < 0 ? 0 : 1;
  }
  const tail = tCdf(-Math.abs(t), df); // P(T < -|t|), accurate in the far tail
  if (alternative === 'two-sided') return Math.min(1, 2 * tail);
  return t < 0 ? tail : 1 - tail; // 'less'; for t > 0 the p-value is large, so 1 - tail loses nothing
}

function tStatistic(diff: number, se: number): number {
  return se === 0 ? (diff === 0 ? NaN : diff > 0 ? Infinity : -Infinity) : diff / se;
}

/** One-sample t-test of mean(xs) against mu (scipy.stats.ttest_1samp). */
export function oneSampleTTest(xs: number[], mu: number, alternative: Alternative): TTest {
  const s = summarize(xs);
  const df = s.n - 1;
  const t = s.n >= 2 ? tStatistic(s.mean - mu, s.se) : NaN;
  return { t, df, p: tPValue(t, df, alternative), alternative };
}

/** Welch's two-sample t-test of mean(a) - mean(b) (scipy.stats.ttest_ind(a, b, equal_var=False)). */
export function welchTTest(a: number[], b: number[], alternative: Alternative): Comparison {
  const sa = summarize(a);
  const sb = summarize(b);
  const va = sa.sd ** 2 / sa.n;
  const vb = sb.sd ** 2 / sb.n;
  const se = Math.sqrt(va + vb);
  // Welch-Satterthwaite degrees of freedom.
  const df = (va + vb) ** 2 / (va ** 2 / (sa.n - 1) + vb ** 2 / (sb.n - 1));
  const diff = sa.mean - sb.mean;
  const t = tStatistic(diff, se);
  const half = tQuantile(0.975, df) * se;
  const pooledSd = Math.sqrt(((sa.n - 1) * sa.sd ** 2 + (sb.n - 1) * sb.sd ** 2) / (sa.n + sb.n - 2));
  const cohenD = diff / pooledSd;
  return {
    t,
    df,
    p: tPValue(t, df, alternative),
    alternative,
    diff,
    ci95: [diff - half, diff + half],
    pTwoSided: tPValue(t, df, 'two-sided'),
    cohenD,
    hedgesG: cohenD * (1 - 3 / (4 * (sa.n + sb.n) - 9)),
  };
}

/**
 * Paired t-test of mean(a - b) over pairs (a[i], b[i]) (scipy.stats.ttest_rel(a, b)): the one-sample test of the
 * differences. Cohen's d is theirs (mean over standard deviation of the differences, d_z), Hedges' g with the
 * correction for n - 1 degrees of freedom.
 */
export function pairedTTest(a: number[], b: number[], alternative: Alternative): Comparison {
  if (a.length !== b.length) throw new Error(`pairedTTest: ${a.length} and ${b.length} values do not pair`);
  const s = summarize(a.map((x, i) => x - b[i]));
  const df = s.n - 1;
  const t = tStatistic(s.mean, s.se);
  const half = tQuantile(0.975, df) * s.se;
  const cohenD = s.mean / s.sd;
  return {
    t,
    df,
    p: tPValue(t, df, alternative),
    alternative,
    diff: s.mean,
    ci95: [s.mean - half, s.mean + half],
    pTwoSided: tPValue(t, df, 'two-sided'),
    cohenD,
    hedgesG: cohenD * (1 - 3 / (4 * df - 1)),
  };
}

export interface RunsNeeded {
  have: number;
  /** Smallest n at which the one-sided test would give p < alpha if the mean and spread stay as observed. */
  forP: number | null;
  /** About how many runs give an 80 % chance that a fresh set of runs reaches p < alpha. */
  for80Power: number | null;
  note: string;
}

const RUNS_NEEDED_CAP = 1_000_000;

/** Smallest n in [2, cap] with ok(n), for ok monotone in n; null when even the cap fails. */
function smallestN(ok: (n: number) => boolean): number | null {
  if (!ok(RUNS_NEEDED_CAP)) return null;
  let lo = 2;
  let hi = RUNS_NEEDED_CAP;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (ok(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * Runs needed by a one-sided t-test whose statistic grows as d·√n with df(n) degrees of freedom, if the
 * effect and spread stay as observed: the smallest n with p < alpha, and with an 80 % chance of it. Power uses
 * the usual central-t approximation of the noncentral t, P(T_df > t_crit - d sqrt(n)); it agrees with scipy's
 * exact nct power to within one run.
 */
function runsFor(d: number, df: (n: number) => number, alpha: number): { forP: number | null; for80Power: number | null } {
  const critical = (n: number): number => tQuantile(1 - alpha, df(n));
  return {
    forP: smallestN((n) => d * Math.sqrt(n) > critical(n)),
    for80Power: smallestN((n) => 1 - tCdf(critical(n) - d * Math.sqrt(n), df(n)) >= 0.8),
  };
}

/** How many runs the one-sided test against the target likely needs, at effect size d = (target - mean) / sd. */
export function runsNeeded(losses: number[], target: number, alpha: number): RunsNeeded {
  const have = losses.length;
  if (have < 2) return { have, forP: null, for80Power: null, note: 'needs at least 2 runs to estimate the spread' };
  const s = summarize(losses);
  if (s.mean >= target) {
    return { have, forP: null, for80Power: null, note: 'the mean is not below the target: more runs alone will not certify it' };
  }
  if (s.sd === 0) return { have, forP: 2, for80Power: 2, note: 'all losses are equal: any 2 runs would do' };
  const { forP, for80Power } = runsFor((target - s.mean) / s.sd, (n) => n - 1, alpha);
  const note = forP === null ? `more than ${RUNS_NEEDED_CAP} runs: the mean is too close to the target` : '';
  return { have, forP, for80Power, note };
}

/**
 * How many runs in each group (a and b alike) the one-sided Welch test in the observed direction likely needs,
 * if the difference of the means and both spreads stay as observed. With n runs each, Welch's t is
 * |diff| / √((sa² + sb²) / n) = d·√n with d = |diff| / √(sa² + sb²), on (n - 1)(sa² + sb²)² / (sa⁴ + sb⁴) degrees of freedom.
 */
export function welchRunsNeeded(a: number[], b: number[], alpha: number): RunsNeeded {
  const have = Math.min(a.length, b.length);
  if (have < 2) return { have, forP: null, for80Power: null, note: 'needs at least 2 runs on each side to estimate the spreads' };
  const [sa, sb] = [summarize(a), summarize(b)];
  const diff = Math.abs(sa.mean - sb.mean);
  if (diff === 0) return { have, forP: null, for80Power: null, note: 'the means are equal: more runs alone will not separate them' };
  const [va, vb] = [sa.sd ** 2, sb.sd ** 2];
  if (va + vb === 0) return { have, forP: 2, for80Power: 2, note: 'no spread on either side: any 2 runs would do' };
  const { forP, for80Power } = runsFor(diff / Math.sqrt(va + vb), (n) => ((n - 1) * (va + vb) ** 2) / (va ** 2 + vb ** 2), alpha);
  const note = forP === null ? `more than ${RUNS_NEEDED_CAP} runs: the difference is too small for its spread` : '';
  return { have, forP, for80Power, note };
}

/** How many pairs the one-sided paired test in the observed direction likely needs, if the mean and spread of the
 * differences stay as observed (t = d·√n on n - 1 degrees of freedom, d = |mean| / sd). */
export function pairedRunsNeeded(a: number[], b: number[], alpha: number): RunsNeeded {
  const have = a.length;
  if (have < 2) return { have, forP: null, for80Power: null, note: 'needs at least 2 pairs to estimate the spread' };
  const s = summarize(a.map((x, i) => x - b[i]));
  if (s.mean === 0) return { have, forP: null, for80Power: null, note: 'the differences average 0: more pairs alone will not separate them' };
  if (s.sd === 0) return { have, forP: 2, for80Power: 2, note: 'the differences are all equal: any 2 pairs would do' };
  const { forP, for80Power } = runsFor(Math.abs(s.mean) / s.sd, (n) => n - 1, alpha);
  const note = forP === null ? `more than ${RUNS_NEEDED_CAP} pairs: the difference is too small for its spread` : '';
  return { have, forP, for80Power, note };
}

/**
 * Holm's step-down adjustment of m p-values (R's p.adjust(p, "holm")): the k-th smallest (k from 0) becomes
 * max over j ≤ k of min(1, (m - j) · p_(j)). It keeps the chance of any false rejection among the m tests below
 * alpha, whatever their dependence. An untested comparison (NaN) still counts in m, as if p were 1, and stays NaN.
 */
export function holm(ps: number[]): number[] {
  const m = ps.length;
  const value = (i: number): number => (Number.isNaN(ps[i]) ? 1 : ps[i]);
  const order = ps.map((_, i) => i).sort((i, j) => value(i) - value(j));
  const adjusted = new Array<number>(m).fill(NaN);
  let running = 0;
  order.forEach((i, k) => {
    running = Math.max(running, Math.min(1, (m - k) * value(i)));
    if (!Number.isNaN(ps[i])) adjusted[i] = running;
  });
  return adjusted;
}

// ------------------------------------------------------------------------------------------------------
// 4. The analysis
// ------------------------------------------------------------------------------------------------------

export type Role = 'record' | 'baseline';

export interface RoleRun extends Run {
  role: Role;
  variant?: string; // --compare: the variant (folder) of a record run
}

export interface Skipped {
  file: string;
  role: Role;
  variant?: string;
  reason: string;
}

export interface Group {
  role: Role;
  codeHashes: string[];
  configHashes: string[]; // '' for logs without a config line
  files: string[];
  loss: Summary;
  timeS: Summary;
  /** One-sided test of the mean loss against the target (H1: mean < target). */
  targetTest: TTest;
}

export interface Check {
  ok: boolean;
  text: string;
}

export interface Report {
  target: number;
  alpha: number;
  allowMixed: boolean;
  allowHardwareMismatch: boolean;
  runs: RoleRun[];
  skipped: Skipped[];
  notes: string[];
  /** One group per (role, code version, configuration): runs of different code or flags, reported separately. */
  versions: Group[];
  /** How the versions of a role differ: changed lines of normalised source, changed config keys. */
  differences: string[];
  /** All record (baseline) runs pooled; null when they mix versions without --allow-mixed. */
  record: Group | null;
  baseline: Group | null;
  /** Welch tests record - baseline, one-sided in the improving direction (lower loss, lower time). */
  vsBaseline: { loss: Comparison; timeS: Comparison } | null;
  runsNeeded: RunsNeeded | null;
  verdict: { certified: boolean; checks: Check[] };
  plot?: string;
}

export interface AnalysisOptions {
  target: number;
  alpha: number;
  allowMixed: boolean;
  allowHardwareMismatch: boolean;
}

/** What every group of runs reports: its versions, files, and the summaries of final loss and time. */
function groupStats(runs: Run[]): Omit<Group, 'role' | 'targetTest'> {
  return {
    codeHashes: [...new Set(runs.map((r) => r.codeHash))],
    configHashes: [...new Set(runs.map((r) => r.configHash))],
    files: runs.map((r) => r.file),
    loss: summarize(runs.map((r) => r.finalValLoss)),
    timeS: summarize(runs.map((r) => r.trainTimeMs / 1000)),
  };
}

export function makeGroup(role: Role, runs: Run[], target: number): Group {
  return { role, ...groupStats(runs), targetTest: oneSampleTTest(runs.map((r) => r.finalValLoss), target, 'less') };
}

/** Reads and parses every candidate file. A file that is not a finished run is skipped with its reason. */
export function loadRuns(inputs: LogInputs): { runs: RoleRun[]; skipped: Skipped[] } {
  const runs: RoleRun[] = [];
  const skipped: Skipped[] = [];
  const seen = new Map<string, string>(); // content hash -> file
  const load = (path: string, role: Role, variant?: string): void => {
    const file = displayPath(path);
    const where = variant === undefined ? { file, role } : { file, role, variant };
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      skipped.push({ ...where, reason: `unreadable: ${(error as Error).message}` });
      return;
    }
    const parsed = parseLog(text, file);
    if (!parsed.ok) {
      skipped.push({ ...where, reason: parsed.reason });
      return;
    }
    if (inputs.seeds && (parsed.run.seed === null || !inputs.seeds.includes(parsed.run.seed))) {
      skipped.push({ ...where, reason: `seed ${parsed.run.seed ?? '(none logged)'} is not among --seeds ${inputs.seeds.join(',')}` });
      return;
    }
    const twin = seen.get(parsed.run.contentHash);
    if (twin !== undefined) {
      // Counting one run twice would shrink the standard error for free.
      skipped.push({ ...where, reason: `identical to ${twin} (the same run counted twice?)` });
      return;
    }
    seen.set(parsed.run.contentHash, file);
    runs.push({ ...parsed.run, ...where });
  };
  for (const path of inputs.record) load(path, 'record');
  for (const path of inputs.baseline) load(path, 'baseline');
  for (const { name, files } of inputs.variants ?? []) for (const path of files) load(path, 'record', name);
  return { runs, skipped };
}

// Number formats, shared by the verdict and the reports. p keeps 4 significant digits, as the rule asks.
const fmtP = (p: number): string => (Number.isNaN(p) ? 'n/a' : p !== 0 && p < 1e-4 ? p.toExponential(3) : p.toPrecision(4));
const fmtS = (x: number): string => x.toFixed(3);
const fmtLoss = (x: number): string => (Number.isNaN(x) ? 'n/a' : x.toFixed(5));
const fmtSd = (x: number): string => (Number.isNaN(x) ? 'n/a' : x.toPrecision(3));
const fmtT = (x: number): string => (Number.isNaN(x) ? 'n/a' : Number.isFinite(x) ? x.toFixed(4) : String(x));
const fmtDf = (x: number): string => (Number.isInteger(x) ? String(x) : x.toFixed(2));
const fmtCi = ([lo, hi]: [number, number], f: (x: number) => string): string => (Number.isNaN(lo) ? 'n/a' : `[${f(lo)}, ${f(hi)}]`);
/** "1 run", "2 runs". */
const count = (k: number, what: string): string => `${k} ${what}${k === 1 ? '' : 's'}`;

/** The name of a run's version: its code hash, and its config hash where the log has a config line. */
export const versionOf = (r: { codeHash: string; configHash: string }): string => (r.configHash ? `${r.codeHash}/${r.configHash}` : r.codeHash);
const groupVersion = (g: Group): string => versionOf({ codeHash: g.codeHashes.join('+'), configHash: g.configHashes.join('+') });

const DIFF_LINES_SHOWN = 8;

/** The logged settings that differ from config a to config b, as `key a → b`. */
function configChanges(a: Record<string, unknown> | null, b: Record<string, unknown> | null): string[] {
  if (a === null || b === null) return a === b ? [] : ['one log has no config line'];
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const value = (c: Record<string, unknown>, k: string): string => (k in c ? JSON.stringify(c[k]) : '(absent)');
  return keys.filter((k) => value(a, k) !== value(b, k)).map((k) => `${k} ${value(a, k)} → ${value(b, k)}`);
}

/** The source lines only a or only b has (up to a few each way), under `label`; empty for the same source. */
function sourceDifference(a: Run, b: Run, label: string): string[] {
  if (a.codeHash === b.codeHash) return [];
  const linesA = a.source.split('\n');
  const linesB = b.source.split('\n');
  const setA = new Set(linesA);
  const setB = new Set(linesB);
  const removed = linesA.filter((l) => !setB.has(l));
  const added = linesB.filter((l) => !setA.has(l));
  const shown = (prefix: string, ls: string[]): string[] => [
    ...ls.slice(0, DIFF_LINES_SHOWN).map((l) => `    ${prefix} ${l.trim()}`),
    ...(ls.length > DIFF_LINES_SHOWN ? [`    ${prefix} … and ${ls.length - DIFF_LINES_SHOWN} more lines`] : []),
  ];
  return [`${label}: source differs (comments, layout, types and run ids ignored):`, ...shown('-', removed), ...shown('+', added),
    ...(removed.length === 0 && added.length === 0 ? ['    (the same lines in another order)'] : [])];
}

/** How version b differs from version a: source lines only one has, config keys that differ. */
function describeDifference(a: RoleRun, b: RoleRun, label = `${a.role} ${versionOf(a)} → ${versionOf(b)}`): string[] {
  return [...sourceDifference(a, b, label),
    ...(a.configHash !== b.configHash ? [`${label}: configuration differs: ${configChanges(a.config, b.config).join(', ')}`] : [])];
}

// The target (3.28) is the FineWeb val loss of the 124M speedrun: a run on the built-in corpus or with the tiny
// preset says nothing about it, however low its loss (bytes are not GPT-2 tokens), nor one of the short preset
// (a tenth of the steps) on any corpus.
function offTarget(r: Run): string | null {
  const c = r.config;
  if (!c) return null;
  if (c.preset === 'tiny' || c.preset === 'short') return `preset ${c.preset}`;
  if (typeof c.corpus === 'string' && c.corpus.startsWith('builtin')) return `corpus ${c.corpus}`;
  return null;
}

/** The hardware the runs ran on, each description once. */
const hardwareOf = (rs: Run[]): string[] => [...new Set(rs.map((r) => r.hardware))].sort();

export function analyze(runs: RoleRun[], skipped: Skipped[], notes: string[], options: AnalysisOptions): Report {
  const { target, alpha, allowMixed, allowHardwareMismatch } = options;
  const recordRuns = runs.filter((r) => r.role === 'record');
  const baselineRuns = runs.filter((r) => r.role === 'baseline');
  if (recordRuns.length === 0) {
    const listed = skipped.slice(0, 10).map((s) => `${s.file} (${s.reason})`).join(', ');
    const why = skipped.length > 0 ? `; skipped: ${listed}${skipped.length > 10 ? `, and ${skipped.length - 10} more` : ''}` : '';
    throw new UsageError(`no usable record run among the logs given${why}${notes.map((n) => `; ${n}`).join('')}`);
  }

  const versions: Group[] = [];
  const differences: string[] = [];
  for (const role of ['record', 'baseline'] as const) {
    const ofRole = runs.filter((r) => r.role === role);
    const firsts: RoleRun[] = [];
    for (const version of new Set(ofRole.map(versionOf))) {
      const ofVersion = ofRole.filter((r) => versionOf(r) === version);
      versions.push(makeGroup(role, ofVersion, target));
      firsts.push(ofVersion[0]);
    }
    for (const other of firsts.slice(1)) differences.push(...describeDifference(firsts[0], other));
  }
  const mixed = (role: Role): boolean => versions.filter((v) => v.role === role).length > 1;
  const pooled = (role: Role, ofRole: RoleRun[]): Group | null =>
    ofRole.length === 0 || (mixed(role) && !allowMixed) ? null : makeGroup(role, ofRole, target);
  const record = pooled('record', recordRuns);
  const baseline = pooled('baseline', baselineRuns);

  const allNotes = [...notes];
  const hardwareDiffers = baselineRuns.length > 0 && hardwareOf(recordRuns).join() !== hardwareOf(baselineRuns).join();
  const hardwareText = `record on ${hardwareOf(recordRuns).join(', ')}; baseline on ${hardwareOf(baselineRuns).join(', ')}`;
  if (baselineRuns.some((b) => recordRuns.some((r) => r.codeHash === b.codeHash))) {
    allNotes.push('some baseline runs have the same source code as record runs');
  }
  const stepCounts = [...new Set(recordRuns.map((r) => r.steps))];
  if (stepCounts.length > 1) allNotes.push(`record runs differ in step count: ${stepCounts.join(', ')}`);

  const bothTestable = record !== null && baseline !== null && record.loss.n >= 2 && baseline.loss.n >= 2;
  const vsBaseline = bothTestable
    ? {
        loss: welchTTest(recordRuns.map((r) => r.finalValLoss), baselineRuns.map((r) => r.finalValLoss), 'less'),
        timeS: welchTTest(recordRuns.map((r) => r.trainTimeMs / 1000), baselineRuns.map((r) => r.trainTimeMs / 1000), 'less'),
      }
    : null;

  // The verdict: each condition of the rule, passed or not, with the numbers that decide it.
  const checks: Check[] = [];
  for (const role of ['record', 'baseline'] as const) {
    if (!mixed(role)) continue;
    const ofRole = versions.filter((v) => v.role === role);
    const list = ofRole.map((v) => `${groupVersion(v)}: ${v.loss.n} runs`).join(', ');
    const code = new Set(ofRole.map((v) => v.codeHashes[0])).size > 1;
    const config = new Set(ofRole.map((v) => v.configHashes[0])).size > 1;
    const what = code && config ? 'source code and configurations' : code ? 'source code' : 'configurations (flags)';
    checks.push({
      ok: allowMixed,
      text: allowMixed
        ? `${role} runs mix ${ofRole.length} versions of different ${what} (${list}), pooled because of --allow-mixed`
        : `${role} runs come from different ${what} (${list}); mixing them is refused: pass the logs of one version, or --allow-mixed`,
    });
  }
  const offTargetRuns = recordRuns.filter((r) => offTarget(r) !== null);
  if (offTargetRuns.length > 0) {
    const why = [...new Set(offTargetRuns.map(offTarget))].join(', ');
    checks.push({
      ok: false,
      text: `${offTargetRuns.length} record run(s) train with ${why}: the target ${target} is about the speedrun on FineWeb, ` +
        'so no record can be certified from them (compare variants against a --baseline instead)',
    });
  }
  if (record) {
    const test = record.targetTest;
    if (record.loss.n < 2) {
      checks.push({ ok: false, text: `only ${record.loss.n} finished record run: the t-test needs at least 2` });
    } else {
      const below = test.p < alpha;
      checks.push({
        ok: below,
        text: `mean val loss ${fmtLoss(record.loss.mean)} ${below ? '<' : 'is not shown below'} ${target}: ` +
          `t = ${fmtT(test.t)}, df = ${test.df}, p = ${fmtP(test.p)} ${below ? '<' : '≥'} ${alpha}`,
      });
    }
  }
  if (record && baseline && !vsBaseline) allNotes.push('no Welch tests against the baseline: they need at least 2 runs on each side');
  if (baselineRuns.length === 0) {
    checks.push({ ok: true, text: 'no baseline given: the speed condition (faster than the previous record re-timed on the same hardware) is not checked' });
  } else if (hardwareDiffers && !allowHardwareMismatch) {
    checks.push({
      ok: false,
      text: `hardware differs (${hardwareText}): the speed condition needs the baseline re-timed on the record's hardware; ` +
        'pass --allow-hardware-mismatch to compare anyway',
    });
  } else if (record && baseline) {
    if (hardwareDiffers) allNotes.push(`hardware differs (${hardwareText}), compared because of --allow-hardware-mismatch`);
    const faster = record.timeS.mean < baseline.timeS.mean;
    const change = (record.timeS.mean / baseline.timeS.mean - 1) * 100;
    const significance = vsBaseline ? `, one-sided Welch p = ${fmtP(vsBaseline.timeS.p)}` : '';
    checks.push({
      ok: faster,
      text: `${faster ? 'faster' : 'not faster'} than the baseline: mean ${fmtS(record.timeS.mean)} s vs ${fmtS(baseline.timeS.mean)} s ` +
        `(${change >= 0 ? '+' : ''}${change.toFixed(2)} %${significance})`,
    });
    if (faster && vsBaseline && vsBaseline.timeS.p >= alpha) {
      allNotes.push(`the speed-up is not significant at alpha = ${alpha} (one-sided Welch p = ${fmtP(vsBaseline.timeS.p)}): consider more runs`);
    }
  }

  return {
    target,
    alpha,
    allowMixed,
    allowHardwareMismatch,
    runs,
    skipped,
    notes: allNotes,
    versions,
    differences,
    record,
    baseline,
    vsBaseline,
    runsNeeded: record ? runsNeeded(recordRuns.map((r) => r.finalValLoss), target, alpha) : null,
    verdict: { certified: record !== null && checks.every((c) => c.ok), checks },
  };
}

// ------------------------------------------------------------------------------------------------------
// 4b. Variants against one baseline (--compare): an ablation
// ------------------------------------------------------------------------------------------------------
// Each variant (a folder of runs of one configuration) gets Welch tests of its final loss and its time against
// the baseline's: two-sided, and one-sided either way. Testing many variants at once, some would pass by chance;
// Holm's correction across them keeps the chance of any false claim of each kind below alpha.

export type LossVerdict = 'better' | 'worse' | 'inconclusive' | 'untested';
export type TimeVerdict = 'faster' | 'slower' | 'inconclusive' | 'untested';

/** A Welch test of variant − baseline (p: one-sided, lower), its one-sided p the other way, and the Holm-adjusted p-values. */
export interface VariantTest extends Comparison {
  pHigher: number;
  holmLower: number;
  holmHigher: number;
  holmTwoSided: number;
}

export interface VariantResult {
  name: string;
  version: string; // code/config hash(es) of its runs
  hardware: string[];
  loss: Summary | null; // null without a usable run
  timeS: Summary | null;
  /** The logged settings that differ from the baseline's, as `key baseline → variant`: what the variant changes. */
  changes: string[];
  /** null below 2 runs on either side; timeS null when the hardware differs (without --allow-hardware-mismatch). */
  vsBaseline: { loss: VariantTest; timeS: VariantTest | null } | null;
  lossVerdict: LossVerdict;
  timeVerdict: TimeVerdict;
  /** Runs per group for a Holm-adjusted p < alpha in the observed direction, whatever its rank: p < alpha / m. */
  runsNeeded: RunsNeeded;
}

export interface CompareReport {
  kind: 'compare';
  alpha: number;
  /** --paired: each test is over the seeds both the variant and the baseline ran, paired by seed. */
  paired: boolean;
  allowMixed: boolean;
  allowHardwareMismatch: boolean;
  /** The multiple-comparison correction and the rule of the verdicts, in words. */
  correction: string;
  runs: RoleRun[];
  skipped: Skipped[];
  notes: string[];
  /** How a variant's source differs from the baseline's, and the versions pooled by --allow-mixed. */
  differences: string[];
  baseline: { version: string; hardware: string[]; loss: Summary; timeS: Summary };
  variants: VariantResult[];
  plot?: string;
}

/**
 * The runs of one folder as one version; throws UsageError naming the configurations (or code) mixed in it,
 * unless --allow-mixed, which pools them and says so.
 */
function checkOneVersion(label: string, runs: RoleRun[], allowMixed: boolean, notes: string[], differences: string[]): void {
  const versions = [...new Set(runs.map(versionOf))];
  if (versions.length < 2) return;
  const firsts = versions.map((v) => runs.find((r) => versionOf(r) === v)!);
  const counts = versions.map((v) => `${runs.filter((r) => versionOf(r) === v).length} of ${v}`).join(', ');
  const configs = firsts.slice(1).flatMap((b) => configChanges(firsts[0].config, b.config)).join('; ');
  const code = new Set(firsts.map((r) => r.codeHash)).size > 1;
  const what = `${code ? 'source code' : ''}${code && configs ? ' and ' : ''}${configs ? 'configurations' : ''}`;
  const text = `${label} (${displayPath(dirname(runs[0].file))}/) mixes runs of different ${what}: ${counts}${configs ? ` (${configs})` : ''}`;
  if (!allowMixed) {
    throw new UsageError(`${text}; one folder must hold the runs of one variant: move the others out, or pass --allow-mixed to pool them`);
  }
  notes.push(`${text}, pooled because of --allow-mixed`);
  for (const other of firsts.slice(1)) differences.push(...describeDifference(firsts[0], other, `${label} ${versionOf(firsts[0])} → ${versionOf(other)}`));
}

/** The runs of `a` and `b` of each seed both ran exactly once, in seed order: [a's, b's]. */
function pairBySeed(a: RoleRun[], b: RoleRun[]): [RoleRun[], RoleRun[]] {
  const bySeed = (rs: RoleRun[]): Map<number, RoleRun[]> => {
    const by = new Map<number, RoleRun[]>();
    for (const r of rs) if (r.seed !== null) by.set(r.seed, [...(by.get(r.seed) ?? []), r]);
    return by;
  };
  const [inA, inB] = [bySeed(a), bySeed(b)];
  const seeds = [...inA.keys()].filter((s) => inA.get(s)!.length === 1 && inB.get(s)?.length === 1).sort((x, y) => x - y);
  return [seeds.map((s) => inA.get(s)![0]), seeds.map((s) => inB.get(s)![0])];
}

export function compareVariants(runs: RoleRun[], skipped: Skipped[], notes: string[], names: string[],
  options: Omit<AnalysisOptions, 'target'> & { paired?: boolean }): CompareReport {
  const { alpha, allowMixed, allowHardwareMismatch } = options, paired = options.paired ?? false;
  const baselineRuns = runs.filter((r) => r.role === 'baseline');
  if (baselineRuns.length === 0) {
    const listed = skipped.filter((s) => s.role === 'baseline').slice(0, 10).map((s) => `${s.file} (${s.reason})`).join(', ');
    throw new UsageError(`no usable baseline run among the logs given${listed ? `; skipped: ${listed}` : ''}`);
  }
  const allNotes = [...notes];
  const differences: string[] = [];
  checkOneVersion('the baseline', baselineRuns, allowMixed, allNotes, differences);
  const base = baselineRuns[0];
  const m = names.length;

  const tested = names.map((name) => {
    const vr = runs.filter((r) => r.variant === name);
    checkOneVersion(`variant ${name}`, vr, allowMixed, allNotes, differences);
    // The runs each test compares: all of them (Welch), or the variant's and the baseline's runs of each seed both ran once (paired).
    const [mine, theirs] = paired ? pairBySeed(vr, baselineRuns) : [vr, baselineRuns];
    if (paired && vr.length > 0 && (mine.length < vr.length || mine.length < baselineRuns.length)) {
      allNotes.push(`variant ${name}: paired over seeds ${mine.map((r) => r.seed).join(',') || '(none)'}; ${vr.length - mine.length} of its runs and ` +
        `${baselineRuns.length - mine.length} of the baseline's have no partner (a seed on one side only, run twice, or not logged) and are not counted`);
    }
    const losses = mine.map((r) => r.finalValLoss), baseLossesOf = theirs.map((r) => r.finalValLoss);
    const times = mine.map((r) => r.trainTimeMs / 1000), baseTimesOf = theirs.map((r) => r.trainTimeMs / 1000);
    const changes = vr.length > 0 ? configChanges(base.config, vr[0].config) : [];
    if (vr.length === 0) allNotes.push(`variant ${name}: no usable run`);
    else if (mine.length < 2 || theirs.length < 2) allNotes.push(`variant ${name}: not tested (${paired ? 'a paired test needs at least 2 pairs' : 'a Welch test needs at least 2 runs on each side'})`);
    if (vr.length > 0 && vr[0].codeHash !== base.codeHash) {
      allNotes.push(`variant ${name} runs other source code than the baseline: its comparison includes that change (see the differences)`);
      differences.push(...sourceDifference(base, vr[0], `${name}: baseline ${versionOf(base)} → ${versionOf(vr[0])}`));
    } else if (vr.length > 0 && changes.length === 0) {
      allNotes.push(`variant ${name} logs the baseline's configuration: it compares the baseline with itself`);
    }
    const seedsOf = (rs: RoleRun[]): string => [...new Set(rs.map((r) => r.seed))].sort((a, b) => (a ?? -1) - (b ?? -1)).join(',');
    if (!paired && vr.length > 0 && seedsOf(vr) !== seedsOf(baselineRuns) && [...vr, ...baselineRuns].every((r) => r.seed !== null)) {
      // Runs of one seed start from the same initialisation in every variant (and all share the data order), so a seed's
      // luck is shared: a seed on one side only shifts the difference (seen: seed 5 ended 0.02-0.04 high in every variant).
      allNotes.push(`variant ${name} ran seeds ${seedsOf(vr)}, the baseline ${seedsOf(baselineRuns)}: a seed's initialisation is the same in ` +
        'every variant, so seeds on one side only can bias the difference; --seeds LIST compares the seeds both have, --paired pairs them');
    }
    const sameHardware = vr.length === 0 || hardwareOf(vr).join() === hardwareOf(baselineRuns).join();
    if (!sameHardware) {
      allNotes.push(`variant ${name} ran on ${hardwareOf(vr).join(', ')}, the baseline on ${hardwareOf(baselineRuns).join(', ')}: ` +
        (allowHardwareMismatch ? 'times compared because of --allow-hardware-mismatch' : 'times not compared (pass --allow-hardware-mismatch to compare them)'));
    }
    const testable = mine.length >= 2 && theirs.length >= 2, test = paired ? pairedTTest : welchTTest;
    return {
      loss: testable ? test(losses, baseLossesOf, 'less') : null,
      timeS: testable && (sameHardware || allowHardwareMismatch) ? test(times, baseTimesOf, 'less') : null,
      result: {
        name,
        version: [...new Set(vr.map(versionOf))].join('+'),
        hardware: hardwareOf(vr),
        loss: mine.length > 0 ? summarize(losses) : null,
        timeS: mine.length > 0 ? summarize(times) : null,
        changes,
        runsNeeded: (paired ? pairedRunsNeeded : welchRunsNeeded)(losses, baseLossesOf, alpha / m),
      },
    };
  });

  // Holm across the variants, each family of p-values on its own; an untested variant counts in m all the same.
  const pHigher = (c: Comparison): number => tPValue(-c.t, c.df, 'less');
  const withHolm = (tests: (Comparison | null)[]): (VariantTest | null)[] => {
    const family = (p: (c: Comparison) => number): number[] => holm(tests.map((c) => (c ? p(c) : NaN)));
    const [lower, higher, twoSided] = [family((c) => c.p), family(pHigher), family((c) => c.pTwoSided)];
    return tests.map((c, i) => c && { ...c, pHigher: pHigher(c), holmLower: lower[i], holmHigher: higher[i], holmTwoSided: twoSided[i] });
  };
  const lossTests = withHolm(tested.map((t) => t.loss));
  const timeTests = withHolm(tested.map((t) => t.timeS));
  const verdict = <T extends string>(t: VariantTest | null, lower: T, higher: T): T | 'inconclusive' | 'untested' =>
    !t ? 'untested' : t.holmLower < alpha ? lower : t.holmHigher < alpha ? higher : 'inconclusive';
  const variants = tested.map(({ result }, i): VariantResult => {
    const [loss, timeS] = [lossTests[i], timeTests[i]];
    return {
      ...result,
      vsBaseline: loss ? { loss, timeS } : null,
      lossVerdict: verdict<LossVerdict>(loss, 'better', 'worse'),
      timeVerdict: verdict<TimeVerdict>(timeS, 'faster', 'slower'),
    };
  });

  const correction = `Holm's step-down correction over the m = ${count(m, 'variant')} compared with the baseline, ` +
    'applied to each family of p-values on its own (final loss lower, higher, two-sided; the same for time). ' +
    (paired ? 'Each test is a paired t-test over the seeds both the variant and the baseline ran (a seed\'s runs start from the same ' +
      'initialisation): a variant\'s n, mean and Δ are over those seeds, while the baseline\'s row shows all its runs. ' : '') +
    `A variant is better (worse) when its Holm-adjusted one-sided ${paired ? 'paired' : 'Welch'} p for a lower (higher) final loss is below alpha = ${alpha}, ` +
    'and faster (slower) likewise for its training time; otherwise inconclusive. ' +
    `The chance of any false "better" among the ${m} is then at most ${alpha}, and the same for each other verdict. ` +
    `Runs needed: ${paired ? 'pairs' : 'runs in each group'} for one-sided p < alpha / m = ${fmtP(alpha / m)} (Holm's strictest step) if the difference and ${paired ? 'its spread' : 'spreads'} stay as observed.`;
  return {
    kind: 'compare',
    alpha,
    paired,
    allowMixed,
    allowHardwareMismatch,
    correction,
    runs,
    skipped,
    notes: allNotes,
    differences,
    baseline: { version: [...new Set(baselineRuns.map(versionOf))].join('+'), hardware: hardwareOf(baselineRuns),
      loss: summarize(baselineRuns.map((r) => r.finalValLoss)), timeS: summarize(baselineRuns.map((r) => r.trainTimeMs / 1000)) },
    variants,
  };
}

// ------------------------------------------------------------------------------------------------------
// 5. The reports: coloured terminal tables, a markdown block for a record's README, JSON for tools
// ------------------------------------------------------------------------------------------------------

function runsNeededText(r: RunsNeeded, alpha: number): string {
  if (r.forP === null) return `${r.note} (have ${r.have})`;
  const reached = r.have >= r.forP ? 'reached' : `${r.forP - r.have} more`;
  return `p < ${alpha} from n = ${r.forP} runs at the observed mean and spread (have ${r.have}: ${reached}); ` +
    `≈ ${r.for80Power ?? `> ${RUNS_NEEDED_CAP}`} runs for an 80 % chance that a fresh set certifies`;
}

function groupRows(groups: Group[]): string[][] {
  return groups.flatMap((g) => [
    [`${g.role} val loss`, groupVersion(g), String(g.loss.n), fmtLoss(g.loss.mean), fmtSd(g.loss.sd), fmtSd(g.loss.se),
      fmtCi(g.loss.ci95, fmtLoss), fmtLoss(g.loss.min), fmtLoss(g.loss.max)],
    [`${g.role} time (s)`, groupVersion(g), String(g.timeS.n), fmtS(g.timeS.mean), fmtSd(g.timeS.sd), fmtSd(g.timeS.se),
      fmtCi(g.timeS.ci95, fmtS), fmtS(g.timeS.min), fmtS(g.timeS.max)],
  ]);
}
const GROUP_HEADER = ['group', 'version', 'n', 'mean', 'std (n−1)', 's.e.', '95 % CI', 'min', 'max'];

function comparisonRows(vs: NonNullable<Report['vsBaseline']>): string[][] {
  return ([['val loss', vs.loss, fmtLoss], ['time (s)', vs.timeS, fmtS]] as const).map(([name, c, f]) => [
    name, f(c.diff), fmtCi(c.ci95, f), fmtT(c.t), fmtDf(c.df), fmtP(c.p), fmtP(c.pTwoSided), c.cohenD.toFixed(3), c.hedgesG.toFixed(3),
  ]);
}
const COMPARISON_HEADER = ['quantity', 'record − baseline', '95 % CI', 't', 'df', 'p (one-sided, record lower)', 'p (two-sided)', "Cohen's d", "Hedges' g"];

const runRow = (r: RoleRun): string[] =>
  [r.role, r.file, versionOf(r), String(r.steps), r.finalValLoss.toFixed(4), fmtS(r.trainTimeMs / 1000), r.stepAvgMs.toFixed(2), r.hardware];
const RUN_HEADER = ['role', 'file', 'version', 'steps', 'val loss', 'time (s)', 'step avg (ms)', 'hardware'];

function foundLine(report: Report): string {
  const n = (role: Role): number => report.runs.filter((r) => r.role === role).length;
  return `Found ${count(report.runs.length + report.skipped.length, 'log file')}: ${count(n('record'), 'record run')}, ` +
    `${count(n('baseline'), 'baseline run')}, ${report.skipped.length} skipped.`;
}

/** Aligned columns; widths are measured without the colour codes. */
function textTable(header: string[], rows: string[][]): string {
  const width = (s: string): number => stripVTControlCharacters(s).length;
  const widths = header.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i]))));
  const line = (cells: string[]): string => '  ' + cells.map((c, i) => c + ' '.repeat(widths[i] - width(c))).join('  ').trimEnd();
  return [chalk.bold(line(header)), ...rows.map(line)].join('\n');
}

/** The test against the target of each record version, for a report of mixed versions. */
function versionTests(report: Report): string[] {
  return report.versions.filter((v) => v.role === 'record').map((v) =>
    `record ${groupVersion(v)} against ${report.target}: t = ${fmtT(v.targetTest.t)}, df = ${v.targetTest.df}, p = ${fmtP(v.targetTest.p)}`);
}

/** Whether the runs of a role come from more than one version (code or configuration). */
function isMixed(report: Report, role: Role): boolean {
  return report.versions.filter((v) => v.role === role).length > 1;
}

export function terminalReport(report: Report): string {
  const out: string[] = [];
  const heading = (text: string): void => void out.push('', chalk.bold.cyan(text));
  const mark = (ok: boolean): string => (ok ? chalk.green('✓') : chalk.red('✗'));
  out.push(chalk.bold(`stats.ts: target ${report.target}, alpha ${report.alpha}`), foundLine(report));

  heading('Runs');
  out.push(textTable(RUN_HEADER, report.runs.map(runRow)));
  if (report.skipped.length > 0) {
    heading('Skipped logs (not counted)');
    out.push(textTable(['role', 'file', 'reason'], report.skipped.map((s) => [s.role, s.file, chalk.yellow(s.reason)])));
  }
  if (isMixed(report, 'record') || isMixed(report, 'baseline')) {
    heading('Versions: code/configuration (reported separately)');
    out.push(textTable(GROUP_HEADER, groupRows(report.versions)), ...versionTests(report).map((line) => `  ${line}`),
      ...report.differences.map((line) => `  ${line}`));
  }
  const pooled = [report.record, report.baseline].filter((g): g is Group => g !== null);
  if (pooled.length > 0) {
    heading('Groups');
    out.push(textTable(GROUP_HEADER, groupRows(pooled)));
  }
  if (report.record) {
    const t = report.record.targetTest;
    heading(`Against the target ${report.target} (one-sample t-test, one-sided, H1: mean < ${report.target})`);
    out.push(`  t = ${fmtT(t.t)}, df = ${t.df}, p = ${chalk.bold(fmtP(t.p))}`);
  }
  if (report.vsBaseline) {
    heading('Against the baseline (Welch two-sample t-tests)');
    out.push(textTable(COMPARISON_HEADER, comparisonRows(report.vsBaseline)));
  }
  if (report.runsNeeded) {
    heading('Runs needed');
    out.push(`  ${runsNeededText(report.runsNeeded, report.alpha)}`);
  }
  if (report.notes.length > 0) {
    heading('Notes');
    out.push(...report.notes.map((n) => `  ${chalk.yellow('!')} ${n}`));
  }
  out.push('');
  for (const check of report.verdict.checks) out.push(`  ${mark(check.ok)} ${check.text}`);
  out.push(report.verdict.certified ? chalk.bold.green('Verdict: CERTIFIED') : chalk.bold.red('Verdict: NOT CERTIFIED'));
  if (report.plot) out.push(`Plot written to ${report.plot}`);
  return out.join('\n') + '\n';
}

function markdownTable(header: string[], rows: string[][]): string {
  const escape = (s: string): string => s.replace(/\|/g, '\\|');
  return [header, header.map(() => '---'), ...rows].map((r) => `| ${r.map(escape).join(' | ')} |`).join('\n');
}

export function markdownReport(report: Report, command: string): string {
  const out: string[] = ['## Statistics', ''];
  out.push(`Computed by \`${command}\` (target ${report.target}, alpha ${report.alpha}). ${foundLine(report)}`, '');
  const pooled = [report.record, report.baseline].filter((g): g is Group => g !== null);
  if (isMixed(report, 'record') || isMixed(report, 'baseline')) {
    out.push('Versions (code/configuration), reported separately:', '', markdownTable(GROUP_HEADER, groupRows(report.versions)), '',
      ...versionTests(report).map((line) => `- ${line}`), '', '```', ...report.differences, '```', '');
  }
  if (pooled.length > 0) out.push(markdownTable(GROUP_HEADER, groupRows(pooled)), '');
  if (report.record) {
    const t = report.record.targetTest;
    out.push(`**Against the target** (one-sample t-test, one-sided, H1: mean < ${report.target}): ` +
      `t = ${fmtT(t.t)}, df = ${t.df}, p = ${fmtP(t.p)}.`, '');
  }
  if (report.vsBaseline) {
    out.push('**Against the baseline** (Welch two-sample t-tests, record − baseline):', '',
      markdownTable(COMPARISON_HEADER, comparisonRows(report.vsBaseline)), '');
  }
  if (report.runsNeeded) out.push(`**Runs needed:** ${runsNeededText(report.runsNeeded, report.alpha)}.`, '');
  out.push(`**Verdict: ${report.verdict.certified ? 'certified' : 'not certified'}.**`, '');
  out.push(...report.verdict.checks.map((c) => `- ${c.ok ? '✓' : '✗'} ${c.text}`), '');
  if (report.notes.length > 0) out.push('Notes:', '', ...report.notes.map((n) => `- ${n}`), '');
  out.push('<details><summary>Runs</summary>', '', markdownTable(RUN_HEADER, report.runs.map(runRow)), '');
  if (report.skipped.length > 0) {
    out.push('Skipped logs (not counted):', '', markdownTable(['role', 'file', 'reason'], report.skipped.map((s) => [s.role, s.file, s.reason])), '');
  }
  out.push('</details>');
  return out.join('\n') + '\n';
}

/** The report as JSON, without each run's source. NaN (undefined statistics, such as the spread of one run) becomes null. */
export function jsonReport(report: Report | CompareReport): string {
  return JSON.stringify({ ...report, runs: report.runs.map(({ source: _source, ...run }) => run) }, null, 2) + '\n';
}

// The reports of --compare: a table of the final losses, one of the times, the correction in words, what each
// variant changes; the markdown block is what an ablation's README shows.

const signed = (x: number, f: (x: number) => string): string => (Number.isNaN(x) ? 'n/a' : `${x > 0 ? '+' : ''}${f(x)}`);

function runsNeededCell(r: RunsNeeded): string {
  if (r.forP === null) return '—';
  return r.have >= r.forP ? `${r.forP} (reached)` : `${r.forP} (have ${r.have})`;
}

const COMPARE_LOSS_HEADER = ['variant', 'n', 'mean val loss', '95 % CI', 'Δ vs baseline', '95 % CI of Δ', 'p two-sided', 'p lower',
  'Holm p lower', 'Holm p higher', 'verdict', 'runs each for p < α/m'];
const COMPARE_TIME_HEADER = ['variant', 'n', 'mean time (s)', '95 % CI', 'Δ (s)', 'Δ %', '95 % CI of Δ', 'p two-sided', 'p lower',
  'Holm p lower', 'Holm p higher', 'verdict'];

/** The loss rows (time: `time`), the baseline first; `paint` colours a verdict. */
function compareRows(report: CompareReport, quantity: 'loss' | 'time', paint: (verdict: string) => string): string[][] {
  const isLoss = quantity === 'loss';
  const f = isLoss ? fmtLoss : fmtS;
  const summaryCells = (s: Summary | null): string[] => (s ? [String(s.n), f(s.mean), fmtCi(s.ci95, f)] : ['0', 'n/a', 'n/a']);
  const b = isLoss ? report.baseline.loss : report.baseline.timeS;
  const blank = (isLoss ? COMPARE_LOSS_HEADER : COMPARE_TIME_HEADER).length - 4;
  return [
    ['baseline', ...summaryCells(b), ...Array<string>(blank).fill('')],
    ...report.variants.map((v) => {
      const c = isLoss ? v.vsBaseline?.loss : v.vsBaseline?.timeS;
      const tests = c
        ? [signed(c.diff, f), ...(isLoss ? [] : [signed((c.diff / b.mean) * 100, (x) => `${x.toFixed(2)} %`)]), fmtCi(c.ci95, f),
          fmtP(c.pTwoSided), fmtP(c.p), fmtP(c.holmLower), fmtP(c.holmHigher)]
        : Array<string>(isLoss ? 6 : 7).fill('n/a');
      return [v.name, ...summaryCells(isLoss ? v.loss : v.timeS), ...tests, paint(isLoss ? v.lossVerdict : v.timeVerdict),
        ...(isLoss ? [runsNeededCell(v.runsNeeded)] : [])];
    }),
  ];
}

const compareRunRow = (r: RoleRun): string[] =>
  [r.variant ?? 'baseline', r.file, versionOf(r), String(r.steps), r.finalValLoss.toFixed(4), fmtS(r.trainTimeMs / 1000), r.stepAvgMs.toFixed(2), r.hardware];
const COMPARE_RUN_HEADER = ['variant', 'file', 'version', 'steps', 'val loss', 'time (s)', 'step avg (ms)', 'hardware'];
const skippedRow = (s: Skipped): string[] => [s.variant ?? 'baseline', s.file, s.reason];

function compareFoundLine(report: CompareReport): string {
  const baseline = report.runs.filter((r) => r.role === 'baseline').length;
  return `Found ${count(report.runs.length + report.skipped.length, 'log file')}: ${count(baseline, 'baseline run')}, ` +
    `${count(report.runs.length - baseline, 'run')} of ${count(report.variants.length, 'variant')}, ${report.skipped.length} skipped.`;
}

const changesLine = (v: VariantResult): string => `${v.name}: ${v.changes.length > 0 ? v.changes.join(', ') : v.loss ? '(none)' : '(no usable run)'}`;
const compareTitles = (paired: boolean) => {
  const tests = paired ? 'paired t-tests over the seeds both ran' : 'Welch two-sample t-tests';
  return {
    loss: `Final val loss (${tests}, variant − baseline; lower is better)`,
    time: `Training time (${tests}, variant − baseline; lower is faster)`,
    changes: "What each variant changes (its logged configuration against the baseline's)",
  };
};

export function compareTerminalReport(report: CompareReport): string {
  const out: string[] = [];
  const heading = (text: string): void => void out.push('', chalk.bold.cyan(text));
  const paint = (verdict: string): string =>
    ['better', 'faster'].includes(verdict) ? chalk.green(verdict) : ['worse', 'slower'].includes(verdict) ? chalk.red(verdict) : verdict;
  out.push(chalk.bold(`stats.ts: ${count(report.variants.length, 'variant')} against the baseline, alpha ${report.alpha}`), compareFoundLine(report));
  heading('Runs');
  out.push(textTable(COMPARE_RUN_HEADER, report.runs.map(compareRunRow)));
  if (report.skipped.length > 0) {
    heading('Skipped logs (not counted)');
    out.push(textTable(['variant', 'file', 'reason'], report.skipped.map((s) => skippedRow(s).map((c, i) => (i === 2 ? chalk.yellow(c) : c)))));
  }
  const titles = compareTitles(report.paired);
  heading(titles.loss);
  out.push(textTable(COMPARE_LOSS_HEADER, compareRows(report, 'loss', paint)));
  heading(titles.time);
  out.push(textTable(COMPARE_TIME_HEADER, compareRows(report, 'time', paint)));
  heading('Multiple comparisons');
  out.push(`  ${report.correction}`);
  heading(titles.changes);
  out.push(...report.variants.map((v) => `  ${changesLine(v)}`));
  if (report.differences.length > 0) {
    heading('Differences');
    out.push(...report.differences.map((line) => `  ${line}`));
  }
  if (report.notes.length > 0) {
    heading('Notes');
    out.push(...report.notes.map((n) => `  ${chalk.yellow('!')} ${n}`));
  }
  if (report.plot) out.push('', `Plot written to ${report.plot}`);
  return out.join('\n') + '\n';
}

export function compareMarkdownReport(report: CompareReport, command: string): string {
  const out: string[] = [`## Ablation: ${count(report.variants.length, 'variant')} against the baseline`, ''];
  out.push(`Computed by \`${command}\` (alpha ${report.alpha}). ${compareFoundLine(report)}`, '');
  const titles = compareTitles(report.paired);
  out.push(`**${titles.loss}:**`, '', markdownTable(COMPARE_LOSS_HEADER, compareRows(report, 'loss', (v) => v)), '');
  out.push(`**${titles.time}:**`, '', markdownTable(COMPARE_TIME_HEADER, compareRows(report, 'time', (v) => v)), '');
  out.push(`**Multiple comparisons.** ${report.correction}`, '');
  out.push(`**${titles.changes}:**`, '', ...report.variants.map((v) => `- ${changesLine(v)}`), '');
  if (report.differences.length > 0) out.push('```', ...report.differences, '```', '');
  if (report.notes.length > 0) out.push('Notes:', '', ...report.notes.map((n) => `- ${n}`), '');
  out.push('<details><summary>Runs</summary>', '', markdownTable(COMPARE_RUN_HEADER, report.runs.map(compareRunRow)), '');
  if (report.skipped.length > 0) out.push('Skipped logs (not counted):', '', markdownTable(['variant', 'file', 'reason'], report.skipped.map(skippedRow)), '');
  out.push('</details>');
  return out.join('\n') + '\n';
}

// ------------------------------------------------------------------------------------------------------
// 6. The plot: val-loss curves against training time, record and baseline in two colours, target line.
// Vega-Lite compiles the chart to Vega, Vega renders SVG headlessly, resvg rasterises the SVG for PNG.
// ------------------------------------------------------------------------------------------------------

export interface PlotSize {
  width: number;
  height: number;
}

// The colours of the roles; each run gets its own shade between the role's colour and a light tint of it.
const ROLE_COLOURS: Record<Role, [string, string]> = { record: ['#d62728', '#ff9896'], baseline: ['#1f77b4', '#aec7e8'] };

function shade([from, to]: [string, string], k: number, n: number): string {
  const f = n <= 1 ? 0 : k / (n - 1);
  const channel = (hex: string, i: number): number => parseInt(hex.slice(1 + 2 * i, 3 + 2 * i), 16);
  return '#' + [0, 1, 2].map((i) => Math.round(channel(from, i) + (channel(to, i) - channel(from, i)) * f).toString(16).padStart(2, '0')).join('');
}

/** Each role's mean curve: the mean loss and time at each step that every run of the role validated at. */
function meanCurve(runs: RoleRun[]): ValPoint[] {
  const steps = runs.map((r) => new Map(r.valCurve.map((p) => [p.step, p])));
  return runs[0].valCurve.map((p) => p.step).filter((step) => steps.every((s) => s.has(step))).map((step) => ({
    step,
    trainTimeMs: mean(steps.map((s) => s.get(step)!.trainTimeMs)),
    valLoss: mean(steps.map((s) => s.get(step)!.valLoss)),
  }));
}

/**
 * Two views of the val-loss curves: the whole run (the early losses clipped) and the finish, where the final
 * points sit and a 1 % difference in time is visible. Each run has its own shade of its role's colour; each role's
 * mean curve is drawn thick and named with its n in the legend; the record is drawn above the baseline.
 */
export function plotSpec(runs: RoleRun[], target: number, size: PlotSize): TopLevelSpec {
  // Baseline first, so the record's lines are drawn over them.
  const roles = (['baseline', 'record'] as const).filter((role) => runs.some((r) => r.role === role));
  const ordered = roles.flatMap((role) => runs.filter((r) => r.role === role));
  const groupName = (role: Role): string => `${role} mean (n = ${runs.filter((r) => r.role === role).length})`;
  const shades = new Map(roles.flatMap((role) => {
    const ofRole = runs.filter((r) => r.role === role);
    return ofRole.map((r, k): [string, string] => [r.file, shade(ROLE_COLOURS[role], k, ofRole.length)]);
  }));
  const values = ordered.flatMap((r) => r.valCurve.map((p) => ({ run: r.file, time: p.trainTimeMs / 1000, loss: p.valLoss })));
  const finals = ordered.map((r) => ({ run: r.file, time: r.trainTimeMs / 1000, loss: r.finalValLoss }));
  const means = roles.flatMap((role) =>
    meanCurve(runs.filter((r) => r.role === role)).map((p) => ({ group: groupName(role), time: p.trainTimeMs / 1000, loss: p.valLoss })));

  const losses = values.map((v) => v.loss).filter(Number.isFinite);
  // The early losses (≈ 10.8 at step 0) would flatten the part that matters; show up to ≈ 0.7 above the worst
  // final loss, clip above, and end the axis exactly there (no rounding) so that the note matches it.
  const low = Math.floor((Math.min(target, min(losses)) - 0.02) * 100) / 100;
  const worstFinal = Math.max(target, max(finals.map((f) => f.loss)));
  const high = Math.min(Math.ceil(max(losses) * 100) / 100, Math.ceil((worstFinal + 0.7) * 100) / 100);
  const clipped = high < max(losses);

  // The finish: from 3 % before the fastest run's end to 1 % after the slowest; losses within reach of the finals.
  const times = finals.map((f) => f.time);
  const zoomX: [number, number] = [min(times) * 0.97, max(times) * 1.01];
  const bestFinal = Math.min(target, min(finals.map((f) => f.loss)));
  const zoomY: [number, number] = [bestFinal - 0.002, worstFinal + Math.max(0.01, (worstFinal - bestFinal) * 2)];

  const view = (title: string, x: [number, number] | null, y: [number, number], height: number) => ({
    title,
    height,
    width: size.width - 220, // room for the axes and the legend
    layer: [
      {
        data: { values },
        mark: { type: 'line', clip: true, strokeWidth: 1, strokeOpacity: 0.7 }, // not `opacity`: resvg drops clipped paths with it
        encoding: {
          x: { field: 'time', type: 'quantitative', title: 'training time (s)', scale: x ? { domain: x, nice: false, zero: false } : {} },
          y: { field: 'loss', type: 'quantitative', title: 'val loss', scale: { domain: y, nice: false, zero: false } },
          color: { field: 'run', type: 'nominal', legend: null, scale: { domain: [...shades.keys()], range: [...shades.values()] } },
          detail: { field: 'run', type: 'nominal' },
        },
      },
      {
        data: { values: means },
        mark: { type: 'line', clip: true, strokeWidth: 2.5 },
        encoding: {
          x: { field: 'time', type: 'quantitative' },
          y: { field: 'loss', type: 'quantitative' },
          stroke: { field: 'group', type: 'nominal', title: null, legend: { labelLimit: 400 },
            scale: { domain: roles.map(groupName), range: roles.map((role) => ROLE_COLOURS[role][0]) } },
        },
      },
      {
        data: { values: finals },
        mark: { type: 'point', clip: true, filled: true, size: 30 },
        encoding: {
          x: { field: 'time', type: 'quantitative' },
          y: { field: 'loss', type: 'quantitative' },
          color: { field: 'run', type: 'nominal', legend: null },
        },
      },
      {
        data: { values: [{ target, label: `target ${target}` }] },
        layer: [
          { mark: { type: 'rule', strokeDash: [6, 4], color: 'black' }, encoding: { y: { field: 'target', type: 'quantitative' } } },
          { mark: { type: 'text', align: 'left', dx: 4, dy: -6, x: 0, color: 'black' }, // left: the curves end on the right
            encoding: { y: { field: 'target', type: 'quantitative' }, text: { field: 'label' } } },
        ],
      },
    ],
  });
  const fullHeight = Math.round((size.height - 190) * 0.55);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    config: { font: 'sans-serif' },
    title: { text: `Validation loss of ${runs.length} runs`, subtitle: clipped ? `losses above ${high.toFixed(2)} clipped` : '' },
    vconcat: [
      view('whole run', null, [low, high], fullHeight),
      view('the finish (final points; a 1 % difference in time is visible here)', zoomX, zoomY, size.height - 190 - fullHeight),
    ],
  } as TopLevelSpec;
}

// The colours of --compare's plot: the baseline's as in the curves, a verdict's as the words in the tables.
const VERDICT_COLOURS: Record<'baseline' | LossVerdict, string> = {
  baseline: ROLE_COLOURS.baseline[0], better: '#2ca02c', worse: '#d62728', inconclusive: '#7f7f7f', untested: '#c7c7c7',
};

/**
 * --compare's plot: one row per variant, its mean final loss and 95 % CI coloured by its verdict, its single runs
 * as small circles; the baseline on the first row, and its mean and interval across every row as a dashed line
 * and a band, so that each variant reads against it.
 */
export function comparePlotSpec(report: CompareReport, size: PlotSize): TopLevelSpec {
  const b = report.baseline.loss;
  const groups = [{ name: 'baseline', kind: 'baseline' as const, loss: b },
    ...report.variants.flatMap((v) => (v.loss ? [{ name: v.name, kind: v.lossVerdict, loss: v.loss }] : []))];
  const labelOf = new Map(groups.map((g) => [g.name, `${g.name} (n = ${g.loss.n})`]));
  const rows = groups.map((g) => ({ label: labelOf.get(g.name)!, kind: g.kind, mean: g.loss.mean, lo: g.loss.ci95[0], hi: g.loss.ci95[1] }));
  const singles = report.runs.map((r) => ({ label: labelOf.get(r.variant ?? 'baseline')!, loss: r.finalValLoss }));
  const xs = [...rows.flatMap((r) => [r.lo, r.hi]), ...singles.map((r) => r.loss)].filter(Number.isFinite);
  const pad = Math.max((max(xs) - min(xs)) * 0.05, 1e-4);
  const x = { field: 'x', type: 'quantitative', title: 'final val loss', scale: { domain: [min(xs) - pad, max(xs) + pad], nice: false, zero: false } };
  const y = { field: 'label', type: 'nominal', title: null, sort: rows.map((r) => r.label), axis: { labelLimit: 400 } }; // whole names
  const kinds = [...new Set(rows.map((r) => r.kind))];
  const colour = { field: 'kind', type: 'nominal', title: 'verdict',
    scale: { domain: kinds, range: kinds.map((k) => VERDICT_COLOURS[k]) } };
  const withCi = rows.filter((r) => Number.isFinite(r.lo));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    config: { font: 'sans-serif' },
    title: { text: `Final val loss of ${count(report.variants.length, 'variant')} against the baseline: mean and 95 % CI`,
      subtitle: [`dashed line and band: the baseline's mean and 95 % CI; small circles: single runs;`,
        `colour: the verdict on the final loss (Holm-adjusted one-sided ${report.paired ? 'paired' : 'Welch'} p < ${report.alpha})`] },
    width: size.width - 320, // room for the names and the legend
    height: size.height - 125,
    layer: [
      ...(Number.isFinite(b.ci95[0]) ? [{ data: { values: [{ x: b.ci95[0], x2: b.ci95[1] }] },
        mark: { type: 'rect', color: VERDICT_COLOURS.baseline, fillOpacity: 0.12 }, encoding: { x, x2: { field: 'x2' } } }] : []),
      { data: { values: [{ x: b.mean }] }, mark: { type: 'rule', strokeDash: [6, 4], color: VERDICT_COLOURS.baseline }, encoding: { x } },
      { data: { values: withCi.map((r) => ({ label: r.label, kind: r.kind, x: r.lo, x2: r.hi })) }, mark: { type: 'rule', strokeWidth: 2.5 },
        encoding: { x, x2: { field: 'x2' }, y, color: colour } },
      { data: { values: singles.map((r) => ({ label: r.label, x: r.loss })) }, mark: { type: 'point', size: 20, color: '#555555', strokeOpacity: 0.6 },
        encoding: { x, y } },
      { data: { values: rows.map((r) => ({ label: r.label, kind: r.kind, x: r.mean })) }, mark: { type: 'point', filled: true, size: 70, fillOpacity: 1 },
        encoding: { x, y, color: colour } },
    ],
  } as TopLevelSpec;
}

/** Draws a plot and writes it atomically (temp file, fsync, rename). The format follows the extension. */
export async function writePlot(file: string, spec: TopLevelSpec, size: PlotSize): Promise<void> {
  const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  // Vega cannot fit two stacked views to a size (autosize fit is for single views): scale the drawing to it.
  const svg = (await view.toSVG()).replace(/^(<svg[^>]*?) width="[\d.]+" height="[\d.]+"/, `$1 width="${size.width}" height="${size.height}"`);
  view.finalize();
  let bytes: Uint8Array = Buffer.from(svg);
  if (extname(file).toLowerCase() === '.png') {
    const { Resvg } = await import('@resvg/resvg-js');
    // Vega asks for "sans-serif"; name a common one, else resvg falls back to the first system font (often a serif).
    const font = { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' };
    bytes = new Resvg(svg, { fitTo: { mode: 'original' }, font }).render().asPng();
  }
  try {
    writeFileAtomic(file, bytes);
  } catch (error) {
    throw new UsageError(`--plot: cannot write ${file}: ${(error as Error).message}`);
  }
}

// ------------------------------------------------------------------------------------------------------
// 7. The command line
// ------------------------------------------------------------------------------------------------------

export const OPTIONS = {
  baseline: { type: 'string', multiple: true, arg: 'RUNS...', help: 'logs of the previous record re-timed on the same hardware (with --compare: of the baseline)' },
  compare: { type: 'string', multiple: true, arg: 'DIR...', help: 'an ablation: each folder holds one variant\'s runs (named after the folder), each compared with --baseline' },
  target: { type: 'string', arg: 'LOSS', help: 'the val loss to beat (default 3.28; not with --compare)' },
  alpha: { type: 'string', arg: 'P', help: 'significance level, 0 < P < 1 (default 0.01)' },
  markdown: { type: 'boolean', arg: '', help: 'print the statistics block for a record README' },
  json: { type: 'boolean', arg: '', help: 'print the whole report as JSON, for tools' },
  plot: { type: 'string', arg: 'FILE', help: 'draw the val-loss curves (with --compare: each variant\'s final loss and CI) to FILE.svg or FILE.png' },
  'plot-size': { type: 'string', arg: 'WxH', help: 'size of the plot in pixels (default 900x560)' },
  seeds: { type: 'string', arg: 'LIST', help: 'count only the runs of these logged seeds (0-4, 0,2,5 or 0-2,7): the same seeds on each side' },
  paired: { type: 'boolean', arg: '', help: 'with --compare: paired t-tests over the seeds both a variant and the baseline ran (a seed starts every variant from the same initialisation), instead of Welch tests' },
  'allow-mixed': { type: 'boolean', arg: '', help: 'pool runs whose logged source code or configuration differs' },
  'allow-hardware-mismatch': { type: 'boolean', arg: '', help: 'compare times with a baseline timed on other hardware' },
  help: { type: 'boolean', short: 'h', arg: '', help: 'show this help (also -h)' },
} as const;

const optionLines = Object.entries(OPTIONS).map(([name, o]) => [`--${name} ${o.arg}`, o.help]);
const optionWidth = Math.max(...optionLines.map(([flag]) => flag.length));

export const USAGE = `Certify a speedrun record from its run logs, or compare variants with a baseline.

Usage: npx tsx stats.ts [RUNS...] [--baseline RUNS...] [options]
       npx tsx stats.ts --baseline RUNS... --compare DIR... [options]

RUNS are log files, folders or globs. A folder means the .txt and .log files directly in it; a record
folder (records/<track>/<date>_<name>/) means its logs, and its baseline/ subfolder is the baseline
unless --baseline is given. The positionals right after --baseline (up to the next flag) are baseline runs.
Symbolic links are followed. Runs of different source (comments, layout, types and run ids aside) or of a
different logged configuration (seed, log and checkpoint settings aside) are versions, reported apart.

With --compare (an ablation, as bench/ablation.ts writes it), each DIR (or glob of folders) is one variant,
named after its folder; a folder must hold the runs of one version (else refused, unless --allow-mixed).
Each variant's final loss and time are compared with the baseline's by Welch tests (--paired: paired t-tests over
the seeds both ran), two-sided and one-sided, with Holm's correction across the variants; a folder holding baseline
runs is passed over. For example:
  npx tsx stats.ts --baseline OUT/baseline --compare 'OUT/*' --markdown --plot OUT/ablation.svg

Options:
${optionLines.map(([flag, help]) => `  ${flag.padEnd(optionWidth)}  ${help}`).join('\n')}

Exit status: 0 certified (--compare: compared), 1 not certified, 2 bad usage or no usable run.
`;

export interface CliOptions {
  record: string[];
  baseline: string[];
  compare: string[];
  target: number;
  alpha: number;
  format: 'terminal' | 'markdown' | 'json';
  plot?: string;
  plotSize: PlotSize;
  seeds?: number[];
  paired: boolean;
  allowMixed: boolean;
  allowHardwareMismatch: boolean;
  help: boolean;
}

/** "0-4", "0,1,2", "0-2,7" -> the seeds in order, each once. */
export function parseSeeds(text: string): number[] {
  const bad = () => new UsageError(`--seeds ${JSON.stringify(text)}: expected a list such as 0-4, 0,1,2 or 0-2,7 of non-negative integers`);
  const seeds: number[] = [];
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw bad();
    const [from, to] = [Number(m[1]), Number(m[2] ?? m[1])];
    if (to < from) throw bad();
    for (let s = from; s <= to; s++) seeds.push(s);
  }
  return [...new Set(seeds)];
}

function numberFlag(name: string, text: string | undefined, fallback: number, valid: (x: number) => boolean, what: string): number {
  if (text === undefined) return fallback;
  const x = Number(text);
  if (text.trim() === '' || !Number.isFinite(x) || !valid(x)) throw new UsageError(`--${name} must be ${what}, got ${JSON.stringify(text)}`);
  return x;
}

export function parseCli(argv: string[]): CliOptions {
  const config = Object.fromEntries(Object.entries(OPTIONS).map(([name, { help: _help, arg: _arg, ...o }]) => [name, o]));
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: config as typeof OPTIONS, allowPositionals: true, strict: true, tokens: true });
  } catch (error) {
    // parseArgs names the offending flag; drop its long hint about positionals that start with '-'.
    throw new UsageError(`${(error as Error).message.split('. To specify')[0]} (see --help)`);
  }
  // Positionals right after --baseline (--compare), up to the next flag, are baseline runs (variant folders);
  // all others are record runs.
  const record: string[] = [];
  const baseline: string[] = [];
  const compare: string[] = [];
  let into = record;
  for (const token of parsed.tokens) {
    if (token.kind === 'option') {
      into = token.name === 'baseline' ? baseline : token.name === 'compare' ? compare : record;
      if (into !== record && token.value !== undefined) into.push(token.value);
    } else if (token.kind === 'positional') into.push(token.value);
    else into = record; // after '--'
  }
  const v = parsed.values;
  if (v.markdown && v.json) throw new UsageError('choose one of --markdown and --json');
  if (compare.length > 0) {
    if (v.target !== undefined) throw new UsageError('--target does not apply with --compare: variants are compared with the baseline, not a target');
    if (record.length > 0) throw new UsageError(`with --compare, every variant folder goes after --compare (got ${record.join(' ')} before it)`);
    if (baseline.length === 0) throw new UsageError('--compare needs --baseline RUNS: the runs every variant is compared with');
  } else if (v.paired) {
    throw new UsageError('--paired goes with --compare: it pairs a variant\'s runs with the baseline\'s by seed');
  }
  const plot = v.plot;
  if (plot !== undefined && !['.svg', '.png'].includes(extname(plot).toLowerCase())) {
    throw new UsageError(`--plot must name a .svg or .png file, got ${JSON.stringify(plot)}`);
  }
  if (plot !== undefined && !existsSync(dirname(resolve(plot)))) throw new UsageError(`--plot: folder ${dirname(plot)} does not exist`);
  const sizeText = v['plot-size'] ?? '900x560';
  const size = /^(\d+)x(\d+)$/.exec(sizeText);
  if (!size || Number(size[1]) < 100 || Number(size[2]) < 100 || Number(size[1]) > 10000 || Number(size[2]) > 10000) {
    throw new UsageError(`--plot-size must be WIDTHxHEIGHT in pixels (100 to 10000), got ${JSON.stringify(sizeText)}`);
  }
  return {
    record,
    baseline,
    compare,
    target: numberFlag('target', v.target, 3.28, () => true, 'a number'),
    alpha: numberFlag('alpha', v.alpha, 0.01, (x) => x > 0 && x < 1, 'a number between 0 and 1'),
    format: v.markdown ? 'markdown' : v.json ? 'json' : 'terminal',
    plot,
    plotSize: { width: Number(size[1]), height: Number(size[2]) },
    seeds: v.seeds === undefined ? undefined : parseSeeds(v.seeds),
    paired: v.paired ?? false,
    allowMixed: v['allow-mixed'] ?? false,
    allowHardwareMismatch: v['allow-hardware-mismatch'] ?? false,
    help: v.help ?? false,
  };
}

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** An argument as a POSIX shell reads it back: bare when safe, else in single quotes. */
export const shellQuote = (arg: string): string => (/^[\w./:=@+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`);

/** The command as the user can paste it again, for the markdown block. */
function commandLine(argv: string[]): string {
  return ['npx tsx stats.ts', ...argv.map(shellQuote)].join(' ');
}

/** --compare: the variants against the baseline. Returns 0 (there is no verdict to fail); usage errors throw. */
async function compareMain(cli: CliOptions, argv: string[], io: Io): Promise<number> {
  const inputs = collectLogs([], cli.baseline);
  const variants = collectVariants(cli.compare, inputs);
  const { runs, skipped } = loadRuns({ ...inputs, variants, seeds: cli.seeds });
  const report = compareVariants(runs, skipped, inputs.notes, variants.map((v) => v.name), {
    alpha: cli.alpha, paired: cli.paired, allowMixed: cli.allowMixed, allowHardwareMismatch: cli.allowHardwareMismatch,
  });
  if (cli.plot) {
    await writePlot(cli.plot, comparePlotSpec(report, cli.plotSize), cli.plotSize);
    report.plot = cli.plot;
  }
  io.stdout(cli.format === 'json' ? jsonReport(report) : cli.format === 'markdown' ? compareMarkdownReport(report, commandLine(argv)) : compareTerminalReport(report));
  return 0;
}

/** Runs the command; returns the exit status (0 certified, 1 not certified, 2 usage error). */
export async function main(argv: string[], io: Io): Promise<number> {
  try {
    const cli = parseCli(argv);
    if (cli.help) {
      io.stdout(USAGE);
      return 0;
    }
    if (cli.compare.length > 0) return await compareMain(cli, argv, io);
    if (cli.record.length === 0 && cli.baseline.length > 0) {
      throw new UsageError(`no record runs given: all ${cli.baseline.length} paths after --baseline are baseline runs; ` +
        'put the record runs before --baseline (or after another flag)');
    }
    if (cli.record.length === 0) throw new UsageError('no runs given: pass log files, folders or globs (see --help)');
    const inputs = collectLogs(cli.record, cli.baseline);
    const { runs, skipped } = loadRuns({ ...inputs, seeds: cli.seeds });
    const report = analyze(runs, skipped, inputs.notes, {
      target: cli.target, alpha: cli.alpha, allowMixed: cli.allowMixed, allowHardwareMismatch: cli.allowHardwareMismatch,
    });
    if (cli.plot) {
      await writePlot(cli.plot, plotSpec(runs, cli.target, cli.plotSize), cli.plotSize);
      report.plot = cli.plot;
    }
    io.stdout(cli.format === 'json' ? jsonReport(report) : cli.format === 'markdown' ? markdownReport(report, commandLine(argv)) : terminalReport(report));
    return report.verdict.certified ? 0 : 1;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr(`stats.ts: error: ${error.message}\n`);
    return 2;
  }
}

// Run the command only when this file is executed, not when tests import it.
if (process.argv[1] && existsSync(process.argv[1]) && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  process.exitCode = await main(process.argv.slice(2), {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
  });
}
