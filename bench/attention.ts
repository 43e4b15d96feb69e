// Speed of the fused causal attention ('CausalAttention', backend-cuda/ops/causal_attention/causal_attention.cu) against
// the composite attention() of train_gpt.ts (scores as [B,H,T,T]) on the GPU, at the speedrun's
// shapes (T = 2048, 6 heads of 128), short and long windows, one document or many. CUDA-event
// timings (tf.time), median of several runs after a warm-up. TFLOP/s count only visible (query,
// key) pairs P, FlashAttention's convention: forward 4·P·h·H, backward 10·P·h·H (2.5× forward).
//   npx tsx bench/attention.ts [--batch 4] [--json out.json]
import '../tfjs_node.ts';
import * as tf from '@tensorflow/tfjs-core';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { cudaAvailability, cudaDeviceName, registerCudaBackend } from '../backend-cuda/index.ts';
import { attention, ForwardContext } from '../train_gpt.ts';
import { medianKernelMs } from './median.ts';

const { values: args } = parseArgs({ options: { batch: { type: 'string', default: '4' }, json: { type: 'string' } } });
const B = Number(args.batch);
if (!Number.isInteger(B) || B < 1) {
  console.error(`bench/attention.ts: --batch must be a positive integer, got ${args.batch}`);
  process.exit(1);
}
const avail = cudaAvailability();
if (!avail.ok) {
  console.error(`bench/attention.ts: the cuda backend is unavailable: ${avail.reason}`);
  process.exit(1);
}
await registerCudaBackend({ matmulPrecision: 'bf16' });
await tf.setBackend('cuda');

const T = 2048, H = 6, h = 128, scale = 0.12;
type Score = 'softmax' | 'softpick' | 'softmax1';

/** Document ids: one document per row, or lengths drawn around a FineWeb-like mean of ~600 tokens. */
function docIds(many: boolean): Int32Array {
  const ids = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let id = 0, left = many ? 1 + Math.floor(Math.random() * 1200) : T;
    for (let t = 0; t < T; t++, left--) {
      if (left === 0) { id++; left = 1 + Math.floor(Math.random() * 1200); }
      ids[b * T + t] = id;
    }
  }
  return ids;
}

function visiblePairs(ids: Int32Array, window: number): number {
  let n = 0;
  for (let b = 0; b < B; b++) for (let i = 0; i < T; i++) {
    for (let j = i; j >= 0 && i - j < window && ids[b * T + j] === ids[b * T + i]; j--) n++;
  }
  return n;
}

/** Runs f with the fused kernel unregistered, so attention() takes the composite. */
async function composite<R>(f: () => Promise<R>): Promise<R> {
  const kernel = tf.getKernel('CausalAttention', 'cuda')!;
  tf.unregisterKernel('CausalAttention', 'cuda');
  try { return await f(); } finally { tf.registerKernel(kernel); }
}

const rows: Array<Record<string, string | number>> = [];
const configs: Array<[number, boolean, Score]> = [
  [384, true, 'softmax'], [1664, true, 'softmax'], [2048, false, 'softmax'],
  [1664, true, 'softpick'], [1664, true, 'softmax1'],
];
for (const [window, many, score] of configs) {
  const ids = docIds(many), pairs = visiblePairs(ids, window);
  const q = tf.randomNormal([B, T, H, h]), k = tf.randomNormal([B, T, H, h]), v = tf.randomNormal([B, T, H, h]);
  const w = tf.randomNormal([B, T, H, h]), idsT = tf.tensor2d(ids, [B, T], 'int32');
  const ctx = new ForwardContext(idsT);
  const forward = () => [attention(q, k, v, ctx, window, scale, score)];
  const both = () => tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(attention(a, b, c, ctx, window, scale, score), w)))([q, k, v]);
  for (const [impl, run] of [['fused', <R>(f: () => Promise<R>) => f()], ['composite', composite]] as const) {
    const fwd = await run(() => medianKernelMs(forward, 5));
    const fb = await run(() => medianKernelMs(both, 5));
    const label = `B${B} T${T} H${H} h${h} window ${window} ${many ? 'documents' : 'one document'} ${score}`;
    rows.push({ case: label, impl, forwardMs: +fwd.toFixed(2), forwardBackwardMs: +fb.toFixed(2),
      forwardTflops: +(4 * pairs * h * H / fwd / 1e9).toFixed(2), backwardTflops: +(10 * pairs * h * H / Math.max(fb - fwd, 1e-3) / 1e9).toFixed(2) });
    console.log(rows[rows.length - 1]);
  }
  ctx.dispose();
  tf.dispose([q, k, v, w, idsT]);
}
console.log(`\n${cudaDeviceName()}`);
console.table(rows);
if (args.json) writeFileSync(args.json, JSON.stringify({ device: cudaDeviceName(), rows }, null, 2));
