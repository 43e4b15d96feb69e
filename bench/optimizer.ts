// bench/optimizer.ts: the optimiser step alone (train_gpt.ts's optimizerStep: NorMuon on the matrices, Adam on the
// tables, the head and the scalars every adamEvery-th step) on the speedrun model with random gradients, timed by reading
// back one value after each step (and the host's time to queue it, which that time includes where the host is the
// slower); --profile lists its kernels by time. In training the host queues the optimiser while the GPU still runs the
// micro-steps, so what a training step pays beyond its forwards and backwards is this step's kernel time (one rank; a
// sharded step divides the Muon part).
//   npx tsx bench/optimizer.ts [--backend cuda] [--preset speedrun|tiny] [--steps 6] [--profile] [-- train_gpt.ts flags]
import '../tfjs_node.ts';
import * as tf from '@tensorflow/tfjs-core';
import { parseArgs } from 'node:util';
import { createModel, createOptimizerState, optimizerStep, parseFlags, resolveConfig, selectBackend, type Config } from '../train_gpt.ts';
import { median } from './median.ts';
import { profileStep, splitModelFlags } from './step.ts';

const USAGE = 'usage: npx tsx bench/optimizer.ts [--backend cuda|wasm|cpu] [--preset speedrun|tiny] [--steps N] [--profile] [-- train_gpt.ts flags]';
const [own, modelFlags] = splitModelFlags(process.argv.slice(2));
let args;
try {
  ({ values: args } = parseArgs({ args: own, options: { backend: { type: 'string', default: 'cuda' }, preset: { type: 'string', default: 'speedrun' }, steps: { type: 'string', default: '6' }, profile: { type: 'boolean', default: false } } }));
} catch (e) {
  console.error(`bench/optimizer.ts: ${(e as Error).message}\n${USAGE}`);
  process.exit(2);
}
const steps = Number(args.steps);
if (!Number.isInteger(steps) || steps < 2) { console.error(`bench/optimizer.ts: --steps ${args.steps}: expected an integer ≥ 2 (even and odd steps)\n${USAGE}`); process.exit(2); }
if (args.preset !== 'speedrun' && args.preset !== 'tiny') { console.error(`bench/optimizer.ts: --preset ${args.preset}: expected speedrun or tiny\n${USAGE}`); process.exit(2); }
const { cfg } = resolveConfig(args.preset, { ...parseFlags(modelFlags).overrides, backend: args.backend as Config['backend'] });
await selectBackend(cfg);
const m = createModel(cfg), st = createOptimizerState(m);
// Random gradients of a trained model's scale (their values do not change the work; zeros would make cautious weight
// decay and the normalisation degenerate)
const grads = new Map([...m.params].map(([name, p]) => [name, tf.tidy(() => tf.randomNormal(p.shape, 0, 1e-3, 'float32', cfg.seed))]));
const probe = m.params.get('embed')!;
const sync = async () => { await tf.tidy(() => probe.slice([0, 0], [1, 1])).data(); };
/** One step: the host's time to queue it (the GPU runs behind), and its time to the read-back. */
const stepOnce = async (s: number) => {
  const t = performance.now();
  optimizerStep(m, st, grads, s);
  const queued = performance.now() - t;
  await sync();
  return { queued, total: performance.now() - t };
};
for (let s = 0; s < 2; s++) await stepOnce(s);  // warm-up: plans, the pool, both parities
const times = new Map<string, { total: number[]; queued: number[] }>([['even', { total: [], queued: [] }], ['odd', { total: [], queued: [] }]]);
for (let s = 2; s < 2 + steps; s++) {
  const { queued, total } = await stepOnce(s);
  const t = times.get(s % 2 ? 'odd' : 'even')!;
  t.total.push(total);
  t.queued.push(queued);
}
const adamEvery = cfg.adamEvery;
// A step here waits for its read-back, so where the host queues slower than the GPU runs, the host's time is the step's;
// in training the host queues the optimiser while the GPU still runs the micro-steps, which hides it.
console.log(`optimiser step on ${tf.getBackend()}, ${args.preset} preset (${cfg.optimizer}, Adam every ${adamEvery} step(s)): ` +
  [...times].map(([k, v]) => `${k} steps ${median(v.total).toFixed(1)} ms (host ${median(v.queued).toFixed(1)} ms to queue)`).join(', ') +
  ` (medians of ${steps / 2})`);
if (args.profile) {
  for (const s of [2 + steps, 3 + steps]) {
    const prof = await profileStep(async () => { await stepOnce(s); });
    console.log(`profile of an ${s % 2 ? 'odd' : 'even'} step: ${prof.kernels} kernels, ${prof.kernelMs.toFixed(1)} ms of kernel time`);
    for (const k of prof.byName) console.log(`  ${k.name.padEnd(22)} ${k.ms.toFixed(2).padStart(7)} ms  ×${k.count}`);
    console.log('  by input shapes:');
    for (const k of prof.byShape) console.log(`    ${k.ms.toFixed(2).padStart(7)} ms ×${String(k.count).padEnd(4)} ${k.kernel}`);
  }
}
