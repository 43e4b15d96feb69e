// Fixture logs for test/stats.test.ts, written in the format train_gpt.ts (and the PyTorch speedrun) write:
// script source, a line of 100 '=', versions and GPU listing, another line of '=', step lines, peak memory.
// Our runs' lines come from log_format.ts's writers, as train_gpt.ts's do; the PyTorch log spells its own.
// The final losses and times below are the data the committed scipy reference values were computed from.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SEPARATOR, peakMemoryLine, stepLine, valLine } from '../log_format.ts';

// Two "source files": the record's and the previous record's (the baseline), plus a variant of the record's
// source that a careless submitter might mix in.
export const RECORD_SOURCE = "// train_gpt.ts (record)\nconst lr = 0.05;\nconsole.log(`step:${step}/${total}`);\n";
export const BASELINE_SOURCE = "// train_gpt.ts (previous record)\nconst lr = 0.04;\nconsole.log(`step:${step}/${total}`);\n";
export const RECORD_VARIANT_SOURCE = "// train_gpt.ts (record, edited between runs)\nconst lr = 0.06;\nconsole.log(`step:${step}/${total}`);\n";

export const RECORD_LOSSES = [3.2781, 3.2795, 3.2772, 3.2788, 3.2779, 3.279, 3.2776, 3.2784];
export const RECORD_TIMES_MS = [130412, 130977, 129860, 130551, 131203, 130095, 130733, 130318];
export const BASELINE_LOSSES = [3.279, 3.2801, 3.2785, 3.2797, 3.2779, 3.2793];
export const BASELINE_TIMES_MS = [135012, 134580, 135490, 134873, 135260, 134702];
export const VARIANT_LOSSES = [3.2769, 3.2774];
export const VARIANT_TIMES_MS = [129950, 130120];
// An ablation's variant that loses against the baseline above (--compare), at its speed.
export const WORSE_LOSSES = [3.285, 3.2861, 3.2842, 3.2855];
export const WORSE_TIMES_MS = [135000, 135100, 134900, 135050];

export interface FixtureRun {
  source: string;
  finalLoss: number;
  trainTimeMs: number;
  totalSteps?: number; // default 200
  valEvery?: number; // default 50
  stopAtStep?: number; // write only up to this step (an unfinished run)
  crlf?: boolean;
  gpuListing?: string;
  config?: Record<string, unknown>; // written as train_gpt.ts's `config:` header line
}

const H100_LISTING = [
  '+-----------------------------------------------------------------------------------------+',
  '| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |',
  '|=========================================+========================+======================|',
  '|   0  NVIDIA H100 80GB HBM3          On  |   00000000:19:00.0 Off |                    0 |',
  '|   1  NVIDIA H100 80GB HBM3          On  |   00000000:3B:00.0 Off |                    0 |',
  '+-----------------------------------------+------------------------+----------------------+',
].join('\n');

/** The text of one run's log. The val-loss curve decays from 10.8258 to finalLoss. */
export function makeLog(run: FixtureRun): string {
  const total = run.totalSteps ?? 200;
  const valEvery = run.valEvery ?? 50;
  const last = run.stopAtStep ?? total;
  const msPerStep = run.trainTimeMs / total;
  const lines = [
    run.source.trimEnd(),
    SEPARATOR,
    'Running Node v20.20.2, @tensorflow/tfjs-core 4.22.0, backend cuda',
    ...(run.config ? [`config: ${JSON.stringify(run.config)}`] : []),
    run.gpuListing ?? H100_LISTING,
    SEPARATOR,
  ];
  for (let step = 0; step <= last; step++) {
    const time = Math.round(msPerStep * step);
    if (step > 0) lines.push(stepLine(step, total, time));
    if (step % valEvery === 0 || step === total) {
      const loss = step === total ? run.finalLoss : run.finalLoss + (10.8258 - run.finalLoss) * Math.exp(-step / 40);
      lines.push(valLine(step, total, loss, step === total ? run.trainTimeMs : time));
    }
  }
  if (last === total) lines.push(peakMemoryLine(31042 * 2 ** 20, 33210 * 2 ** 20));
  return lines.join(run.crlf ? '\r\n' : '\n') + (run.crlf ? '\r\n' : '\n');
}

/** Writes one log per (loss, time) pair into dir as <prefix>-<i>.txt; returns the paths. */
export function writeRuns(dir: string, prefix: string, source: string | ((i: number) => string), losses: number[], timesMs: number[],
  config?: (i: number) => Record<string, unknown>): string[] {
  mkdirSync(dir, { recursive: true });
  return losses.map((finalLoss, i) => {
    const file = join(dir, `${prefix}-${i}.txt`);
    const text = typeof source === 'string' ? source : source(i);
    writeFileSync(file, makeLog({ source: text, finalLoss, trainTimeMs: timesMs[i], config: config?.(i) }));
    return file;
  });
}

/**
 * A log in the style of the PyTorch speedrun's January 2025 records: a third '=' block listing the data
 * files, attention-scale lines between steps, `step_avg:nanms` early on, a per-step line for the last step
 * before its validation line, and `peak memory consumption` at the end.
 */
export function makePytorchLog(finalLoss: number, trainTimeMs: number, total = 1370): string {
  const lines = [
    'import os\nimport sys\nwith open(sys.argv[0]) as f:\n    code = f.read()',
    "print0(f'step:{step}/{train_steps} val_loss:{val_loss:.4f} train_time:{training_time_ms:.0f}ms')",
    SEPARATOR,
    'Running Python 3.10.12 (main, Sep 11 2024, 15:47:36) [GCC 11.4.0]',
    'Running PyTorch 2.7.0.dev20250110+cu126 compiled for CUDA 12.6',
    '|   0  NVIDIA H100 80GB HBM3          On  | 00000000:19:00.0 Off |                    0 |',
    '',
    SEPARATOR,
    "Training dataloader files: ['data/fineweb10B/fineweb_train_000001.bin']",
    SEPARATOR,
    '_orig_mod.blocks.0.attn.attn_scale: 0.0883883461356163',
    `step:0/${total} val_loss:10.8258 train_time:0ms step_avg:nanms`,
    `step:1/${total} train_time:30354ms step_avg:nanms`,
    `step:125/${total} val_loss:4.3981 train_time:16800ms step_avg:147.37ms`,
    `step:${total}/${total} train_time:${trainTimeMs - 74}ms step_avg:148.01ms`,
    '_orig_mod.blocks.0.attn.attn_scale: 0.1463543325662613',
    `step:${total}/${total} val_loss:${finalLoss.toFixed(4)} train_time:${trainTimeMs}ms step_avg:148.07ms`,
    'peak memory consumption: 32619 MiB',
  ];
  return lines.join('\n') + '\n';
}
