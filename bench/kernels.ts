// Throughput of the cuda backend's core kernels on the GPU, timed with CUDA events (tf.time):
// matmul TFLOP/s per precision (a square 8192³ and the speedrun model's shapes for 48K tokens)
// and elementwise/softmax bandwidth. Median of several runs after a warm-up.
//   npx tsx bench/kernels.ts [--json out.json]
import '../tfjs_node.ts';
import * as tf from '@tensorflow/tfjs-core';
import { writeFileSync } from 'node:fs';
import { cudaAvailability, cudaDeviceName, registerCudaBackend } from '../backend-cuda/index.ts';
import type { CudaBackend } from '../backend-cuda/backend.ts';
import type { MatmulPrecision } from '../backend-cuda/device.ts';
import { crossEntropy, DEFAULTS, initRope, logitSoftcap, reluSquared, rotary, softcapCrossEntropy, useFusedKernels } from '../train_gpt.ts';
import { medianKernelMs } from './median.ts';

const avail = cudaAvailability();
if (!avail.ok) {
  console.error(`bench/kernels.ts: the cuda backend is unavailable: ${avail.reason}`);
  process.exit(1);
}
await registerCudaBackend();
await tf.setBackend('cuda');

/** Random values made on the device: a random 64-row block tiled (host generation of GBs is slow). */
function randn(shape: number[]): tf.Tensor {
  return tf.tidy(() => {
    const block = tf.randomNormal([64, ...shape.slice(1)]);
    return tf.tile(block, [shape[0] / 64, ...shape.slice(1).map(() => 1)]);
  });
}

const rows: Array<Record<string, string | number>> = [];
const matmuls: Array<[string, number, number, number, boolean, boolean]> = [
  ['square 8192³', 8192, 8192, 8192, false, false],
  ['qkv 49152×768·768×2304', 49152, 2304, 768, false, false],
  ['mlp-up 49152×768·768×3072', 49152, 3072, 768, false, false],
  ['head 49152×768·768×50304', 49152, 50304, 768, false, false],
  ['head dW 768×8192ᵀ·8192×50304', 768, 50304, 8192, true, false],
];
for (const [label, m, n, k, ta, tb] of matmuls) {
  const a = randn(ta ? [k, m] : [m, k]), b = randn(tb ? [n, k] : [k, n]);
  for (const p of ['bf16', 'tf32', 'fp32'] as MatmulPrecision[]) {
    (tf.backend() as CudaBackend).setMatmulPrecision(p);
    const ms = await medianKernelMs(() => tf.matMul(a, b, ta, tb), p === 'fp32' ? 3 : 10);
    rows.push({ kernel: `matmul ${label}`, precision: p, ms: +ms.toFixed(3), tflops: +((2 * m * n * k) / ms / 1e9).toFixed(1) });
  }
  tf.dispose([a, b]);
}
(tf.backend() as CudaBackend).setMatmulPrecision('bf16');

const N = 1 << 28;
const x = tf.reshape(randn([N / 1024, 1024]), [N]), y = tf.reshape(randn([N / 1024, 1024]), [N]);
const addMs = await medianKernelMs(() => tf.add(x, y));
rows.push({ kernel: `add ${N} floats`, ms: +addMs.toFixed(3), 'GB/s': +((3 * 4 * N) / addMs / 1e6).toFixed(0) });
const expMs = await medianKernelMs(() => tf.exp(x));
rows.push({ kernel: `exp ${N} floats`, ms: +expMs.toFixed(3), 'GB/s': +((2 * 4 * N) / expMs / 1e6).toFixed(0) });
const sumMs = await medianKernelMs(() => tf.sum(tf.reshape(x, [N / 768, 768]), -1));
rows.push({ kernel: `sum rows of 768 (${N} floats)`, ms: +sumMs.toFixed(3), 'GB/s': +((4 * N) / sumMs / 1e6).toFixed(0) });
tf.dispose([x, y]);
const logits = randn([8192, 50304]);
const smMs = await medianKernelMs(() => tf.softmax(logits));
rows.push({ kernel: 'softmax 8192×50304', ms: +smMs.toFixed(3), 'GB/s': +((2 * 4 * 8192 * 50304) / smMs / 1e6).toFixed(0) });
const trMs = await medianKernelMs(() => tf.transpose(tf.reshape(logits, [8, 1024, 6, 8384]), [0, 2, 1, 3]));
rows.push({ kernel: 'transpose [8,1024,6,8384]→[0,2,1,3]', ms: +trMs.toFixed(3), 'GB/s': +((2 * 4 * 8192 * 50304) / trMs / 1e6).toFixed(0) });
// Soft-capped cross-entropy forward + backward (the speedrun's sigmoid cap): the fused kernels
// (logits read twice, dlogits written once: 12 bytes a logit) and the composite they replace.
const ceTargets = tf.randomUniform([8192], 0, 50304, 'int32') as tf.Tensor1D;
const ceFused = (l: tf.Tensor) => softcapCrossEntropy(l as tf.Tensor2D, ceTargets, DEFAULTS, 'sum');
const ceComposite = (l: tf.Tensor) => crossEntropy(logitSoftcap(l, DEFAULTS) as tf.Tensor2D, ceTargets, 'sum');
for (const [label, f] of [['fused', ceFused], ['composite', ceComposite]] as const) {
  const ms = await medianKernelMs(() => tf.grad(f)(logits), 5);
  rows.push({ kernel: `softcap cross-entropy fwd+bwd 8192×50304 (${label})`, ms: +ms.toFixed(3), 'GB/s': +((12 * 8192 * 50304) / ms / 1e6).toFixed(0) });
}
tf.dispose([logits, ceTargets]);
// Rotary on q of the speedrun step at B = 8 and ReLU² on its MLP's [8·2048, 3072], forward + backward:
// the fused kernels and the composites (useFusedKernels(false), as --fused off). GB/s counts the
// fused kernels' traffic (4 and 5 passes over the tensor) for both.
const rope = initRope(DEFAULTS);
const q = tf.reshape(randn([8 * 2048 * 6, 128]), [8, 2048, 6, 128]), up = randn([8 * 2048, 3072]);
for (const fused of [true, false]) {
  useFusedKernels(fused);
  const label = fused ? 'fused' : 'composite';
  const rotMs = await medianKernelMs(() => tf.grad((v: tf.Tensor) => rotary(v, rope))(q, q));
  rows.push({ kernel: `rotary fwd+bwd [8,2048,6,128] (${label})`, ms: +rotMs.toFixed(3), 'GB/s': +((16 * q.size) / rotMs / 1e6).toFixed(0) });
  const reluMs = await medianKernelMs(() => tf.grad((v: tf.Tensor) => reluSquared(v))(up, up));
  rows.push({ kernel: `relu² fwd+bwd 16384×3072 (${label})`, ms: +reluMs.toFixed(3), 'GB/s': +((20 * up.size) / reluMs / 1e6).toFixed(0) });
}
useFusedKernels(true);
tf.dispose([q, up]);

console.log(`device: ${cudaDeviceName()}`);
console.table(rows);
const jsonAt = process.argv.indexOf('--json');
if (jsonAt > 0) writeFileSync(process.argv[jsonAt + 1], JSON.stringify({ device: cudaDeviceName(), rows, memory: tf.memory() }, null, 2));
