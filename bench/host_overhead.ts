// bench/host_overhead.ts: the host's share of the speedrun's training step. The GPU only runs what the host has
// queued, so once the kernels are fast the step cannot be shorter than the time tfjs and the backend's
// TypeScript take to queue it. This runs the cuda backend's TypeScript layer over a device whose kernels do
// nothing (the null device: allocations are numbers, reads return zeros), so the time per step is the host's
// alone; it prints the kernels a step runs by name and input shapes (what fusing would remove), and the host
// cost of single ops. With --device cuda the same op timings go through the real addon (kernel launches,
// cudaMallocAsync/cudaFreeAsync), to compare with the null device on the same machine.
//
//   npx tsx bench/host_overhead.ts [--device null|cuda] [--steps 6] [--accum 1] [--device-batch 16] [--ops on|off]
//                                  [-- train_gpt.ts model flags, e.g. --block sas]   (TOP=N: rows of the shapes table)
import '../tfjs_node.ts';
import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import type { CudaBackend } from '../backend-cuda/backend.ts';
import * as T from '../train_gpt.ts';
import { median } from './median.ts';
import { registerNullBackend } from './null_device.ts';
import { splitModelFlags, syntheticShard } from './step.ts';

const [own, modelFlags] = splitModelFlags(process.argv.slice(2));
const { values: args } = parseArgs({
  args: own,
  options: {
    device: { type: 'string', default: 'null' }, steps: { type: 'string', default: '6' }, accum: { type: 'string', default: '1' },
    'device-batch': { type: 'string', default: '16' }, ops: { type: 'string', default: 'on' },
  },
});
if (args.device !== 'null' && args.device !== 'cuda') throw new Error(`--device ${args.device}: expected null or cuda`);

/** Native calls by name (null device): what the kernels would launch. */
let calls = new Map<string, number>();
if (args.device === 'null') {
  calls = registerNullBackend();
  await tf.setBackend('null');
} else {
  await (await import('../backend-cuda/index.ts')).registerCudaBackend({ matmulPrecision: 'bf16' });
  await tf.setBackend('cuda');
}
tf.env().set('CHECK_COMPUTATION_FOR_ERRORS', false);

// Host cost of single ops (median of 5 rounds); tensors of the speedrun's activation size.
const perOp = (label: string, f: () => tf.TensorContainer, n = 2000) => {
  const rounds: number[] = [];
  for (let r = 0; r < 6; r++) {
    const t = performance.now();
    for (let i = 0; i < n; i++) tf.dispose(f());
    rounds.push((performance.now() - t) * 1000 / n);
  }
  rounds.shift();  // warm-up
  console.log(`  ${label.padEnd(34)} ${median(rounds).toFixed(1).padStart(6)} µs`);
};
if (args.ops === 'on') {
  const B = Number(args['device-batch']);
  const x = tf.randomNormal([B, 2048, 768]), y = tf.randomNormal([B, 2048, 768]), s = tf.scalar(2), w = tf.randomNormal([768, 768]);
  console.log(`host time per op on ${args.device === 'null' ? 'the null device' : 'the GPU'} (${os.cpus()[0]?.model ?? 'cpu'}):`);
  perOp('add [B,2048,768]', () => tf.add(x, y));
  perOp('mul by a scalar tensor', () => tf.mul(x, s));
  perOp('reshape (a view)', () => tf.reshape(x, [-1, 768]));
  perOp('matMul [B·2048,768]·[768,768]', () => tf.tidy(() => tf.matMul(tf.reshape(x, [-1, 768]), w)), 500);
  perOp('grads of x·s + y (2 outputs)', () => tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.add(tf.mul(p, s), q))([x, y], y), 500);
  if (args.device === 'cuda') await (tf.backend() as CudaBackend).device.sync();
  tf.dispose([x, y, s, w]);
}

// The speedrun step.
const { cfg } = T.resolveConfig('speedrun', { ...T.parseFlags(modelFlags).overrides, dataLayout: 'rows', deviceBatch: Number(args['device-batch']), batchTokens: Number(args['device-batch']) * 2048 * Number(args.accum) });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsgpt-host-'));
const shard = syntheticShard(dir, cfg, cfg.deviceBatch * cfg.seqLen * 8);
const loader = new T.TrainLoader([shard], cfg.seqLen, cfg.deviceBatch, 1, 0, cfg.bosToken);
const m = T.createModel(cfg), st = T.createOptimizerState(m);
const sched = T.attnScheduleAt(cfg.windowSchedule[cfg.windowSchedule.length - 1], T.initRope(cfg), cfg);
const accum = Number(args.accum);
console.log(`speedrun step${modelFlags.length ? ` (${modelFlags.join(' ')})` : ''}, ${accum} micro-step(s) of ${cfg.deviceBatch}×${cfg.seqLen}:`);
const steps: number[] = [];
for (let s = 0; s < Number(args.steps); s++) {
  calls.clear();
  const t = performance.now();
  const loss = await T.trainStep(m, st, loader, sched, accum, s);
  steps.push(performance.now() - t);
  await loss.data();
  loss.dispose();
  console.log(`  step ${s}: ${steps[s].toFixed(1)} ms to queue${calls.size ? `, ${[...calls.values()].reduce((a, b) => a + b, 0)} native calls` : ''}`);
}
calls.clear();
const prof = await tf.profile(async () => { const l = await T.trainStep(m, st, loader, sched, accum, steps.length); await l.data(); l.dispose(); });
const count = (key: (k: (typeof prof.kernels)[number]) => string) => {
  const c = new Map<string, number>();
  for (const k of prof.kernels) c.set(key(k), (c.get(key(k)) ?? 0) + 1);
  return [...c].sort((a, b) => b[1] - a[1]);
};
console.log(`${prof.kernels.length} kernels per step: ${count(k => k.name).map(([k, v]) => `${k} ${v}`).join(', ')}`);
console.log('by input shapes (top 40):');
for (const [k, v] of count(k => `${k.name}(${k.inputShapes.map(s => `[${s}]`).join(',')})`).slice(0, Number(process.env.TOP ?? 40))) console.log(`  ${String(v).padStart(5)} ${k}`);
if (calls.size) console.log(`native calls of that step: ${[...calls].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`);
T.disposeModel(m);
T.disposeOptimizerState(st);
fs.rmSync(dir, { recursive: true, force: true });
