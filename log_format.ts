// log_format.ts: the speedrun's run-log format (shared/reference/speedrun.md), written by train_gpt.ts and
// read by stats.ts. Both sides live here so that what one writes is what the other reads.
//
// A log is: the training script's source, a line of exactly 100 '=', runtime versions and the GPU listing
// (nvidia-smi), another such line, then one line per event:
//   step:{n}/{N} train_time:{ms}ms step_avg:{ms:.2f}ms                       after each training step
//   step:{n}/{N} val_loss:{loss:.4f} train_time:{ms}ms step_avg:{ms:.2f}ms   at each validation and at the end
//   peak memory allocated: {X} MiB reserved: {Y} MiB                         last
// A run that stops early ends instead with train_gpt.ts's `stopped:` or `interrupted at step` line, which
// readers ignore: the log has no final validation, so it is unfinished.
// A resumed run's log starts its events with a `resumed:` line (resumedLine below): its train_time includes
// the time of the run before it, which no log of that run shows whole, so no record may count it.
//
// The PyTorch speedrun writes the same lines, with variants over its history (a '=' line before the source,
// a third '=' block, `step_avg:nanms` early on, `val_loss:nan`, `peak memory consumption`). stats.ts reads
// public modded-nanogpt logs too, so the readers below are lenient: a step line's fields are picked by name,
// `nan` reads as NaN, and a missing field is undefined rather than an error.

export const SEPARATOR = '='.repeat(100);

// -----------------------------------------------------------------------------
// Writing

/** Everything before the step lines. `versions` and `gpuListing` may span several lines. */
export const logHeader = (source: string, versions: string, gpuListing: string) =>
  `${source}\n${SEPARATOR}\n${versions}\n${gpuListing}\n${SEPARATOR}\n`;

// train_time is whole milliseconds; step_avg divides the unrounded time, by 1 at step 0.
export const stepLine = (step: number, N: number, trainMs: number) =>
  `step:${step}/${N} train_time:${Math.round(trainMs)}ms step_avg:${(trainMs / Math.max(step, 1)).toFixed(2)}ms`;
export const valLine = (step: number, N: number, loss: number, trainMs: number) =>
  `step:${step}/${N} val_loss:${loss.toFixed(4)} train_time:${Math.round(trainMs)}ms step_avg:${(trainMs / Math.max(step, 1)).toFixed(2)}ms`;

export const peakMemoryLine = (allocatedBytes: number, reservedBytes: number) =>
  `peak memory allocated: ${Math.round(allocatedBytes / 2 ** 20)} MiB reserved: ${Math.round(reservedBytes / 2 ** 20)} MiB`;

/** The closing line of a run that stops early: a diverged loss (see parseStoppedLine) or `error: <message>`. */
export const stoppedLine = (reason: string) => `stopped: ${reason}`;

/** The first event line of a resumed run: the step and checkpoint it continues from, and the train time before. */
export const resumedLine = (step: number, priorTrainMs: number, checkpoint: string) =>
  `resumed: step:${step} prior_train_time:${Math.round(priorTrainMs)}ms checkpoint:${checkpoint}`;

// -----------------------------------------------------------------------------
// Reading

const STEP_LINE = /^step:(\d+)\/(\d+)\s/;
const VAL_LOSS = /\bval_loss:(\S+)/;
const TRAIN_TIME = /\btrain_time:([\d.]+)ms\b/;
const STEP_AVG = /\bstep_avg:(\S+?)ms\b/;
const NVIDIA_SMI_GPU = /^\|\s+\d+\s+(.+?)\s{2,}(?:On|Off)\s+\|/;

/** A step or validation line's fields; one the line lacks is undefined, and `nan` reads as NaN. */
export interface StepRecord {
  step: number;
  total: number;
  valLoss?: number; // only on validation lines
  trainTimeMs?: number;
  stepAvgMs?: number;
}

/** Reads a `step:n/N ...` line; null for any other line. */
export function parseStepLine(line: string): StepRecord | null {
  const step = STEP_LINE.exec(line);
  if (!step) return null;
  const field = (re: RegExp): number | undefined => {
    const m = re.exec(line);
    return m ? Number(m[1]) : undefined;
  };
  return { step: Number(step[1]), total: Number(step[2]), valLoss: field(VAL_LOSS), trainTimeMs: field(TRAIN_TIME), stepAvgMs: field(STEP_AVG) };
}

/** The card's name on a GPU row of the nvidia-smi listing ("NVIDIA H100 80GB HBM3"); null for any other line. */
export function parseGpuName(line: string): string | null {
  return NVIDIA_SMI_GPU.exec(line)?.[1] ?? null;
}

export interface ResumedRecord { step: number; priorTrainMs: number; checkpoint: string }

/** Reads a `resumed:` line; null for any other line. */
export function parseResumedLine(line: string): ResumedRecord | null {
  const m = /^resumed: step:(\d+) prior_train_time:(\d+)ms checkpoint:(.*)$/.exec(line);
  return m ? { step: Number(m[1]), priorTrainMs: Number(m[2]), checkpoint: m[3] } : null;
}

/** Reads a `stopped:` line: its reason, and whether it says the loss diverged (`train loss is X at step N...`). */
export function parseStoppedLine(line: string): { reason: string; diverged: boolean } | null {
  const m = /^stopped: (.*)$/.exec(line);
  return m ? { reason: m[1], diverged: /^(train|validation) loss is \S+ at step \d+/.test(m[1]) } : null;
}
