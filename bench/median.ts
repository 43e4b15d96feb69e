// bench/median.ts: the benchmarks' headline statistic. A median rather than a mean, so that one slow run (a
// page fault, another process, a clock ramping up) does not move the figure.
import * as tf from '@tensorflow/tfjs-core';

/** The middle value; for an even count, the mean of the two middle values. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const k = s.length >> 1;
  return s.length % 2 ? s[k] : (s[k - 1] + s[k]) / 2;
}

/** Median kernel time (tf.time: CUDA events on cuda) of `reps` runs of f, after an untimed one that warms plans, heuristics, the pool. */
export async function medianKernelMs(f: () => tf.TensorContainer, reps = 10): Promise<number> {
  tf.dispose(f());
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    let out: tf.TensorContainer = [];
    const t = await tf.time(() => { out = f(); });
    tf.dispose(out);
    times.push(t.kernelMs as number);
  }
  return median(times);
}
