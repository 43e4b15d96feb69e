// bench/optimizer.ts: the optimiser step alone (train_gpt.ts's optimizerStep: NorMuon on the matrices, Adam on the
// tables, the head and the scalars every adamEvery-th step) on the speedrun model with random gradients, timed by reading
// back one value after each step; --profile lists its kernels by time. A step's time is its micro-steps plus this, so
// this is what a training step costs beyond its forwards and backwards (one rank; a sharded step divides the Muon part).
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
const stepOnce = async (s: number) => { optimizerStep(m, st, grads, s); await sync(); };
for (let s = 0; s < 2; s++) await stepOnce(s);  // warm-up: plans, the pool, both parities
const times = new Map<string, number[]>([['even', []], ['odd', []]]);
for (let s = 2; s < 2 + steps; s++) {
  const t = performance.now();
  await stepOnce(s);
  times.get(s % 2 ? 'odd' : 'even')!.push(performance.now() - t);
}
const adamEvery = cfg.adamEvery;
console.log(`optimiser step on ${tf.getBackend()}, ${args.preset} preset (${cfg.optimizer}, Adam every ${adamEvery} step(s)): ` +
  [...times].map(([k, v]) => `${k} steps ${median(v).toFixed(1)} ms`).join(', ') + ` (medians of ${steps / 2})`);
if (args.profile) {
  for (const s of [2 + steps, 3 + steps]) {
    const prof = await profileStep(async () => { await stepOnce(s); });
    console.log(`profile of an ${s % 2 ? 'odd' : 'even'} step: ${prof.kernels} kernels, ${prof.kernelMs.toFixed(1)} ms of kernel time`);
    for (const k of prof.byName) console.log(`  ${k.name.padEnd(22)} ${k.ms.toFixed(2).padStart(7)} ms  ×${k.count}`);
    console.log('  by input shapes:');
    for (const k of prof.byShape) console.log(`    ${k.ms.toFixed(2).padStart(7)} ms ×${String(k.count).padEnd(4)} ${k.kernel}`);
  }
}
