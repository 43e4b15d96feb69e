// bench/memory.ts: where a training micro-step's device memory goes, for issue 14's memory work. One forward and
// backward of the model (the preset's micro-step: one packed stream by default) on the cuda backend, then: the bytes in
// use before, the bytes the forward left in use (what the tape keeps for the backward), the peak of the process, and
// the saved tensors' stored bytes by the kernel that saved them (float32 and/or bf16 copy and the buffer a fused kernel
// keeps with its output: what the backend holds; a tensor saved by several kernels counted once, at the first: the
// Reshape before a matmul usually; parameters and the batch not). It reads tfjs's tape (engine state), so it is a
// measuring tool, not part of the trainer.
//
// --device null runs it over the null device (bench/null_device.ts: no GPU, no compute, allocations counted as the GPU
// counts them), so the numbers match the GPU's for any model on any machine, in seconds.
//
//   npx tsx bench/memory.ts [--device cuda|cuda-host|null] [--preset speedrun] [train_gpt.ts flags...]   (TOP=N: rows)
import '../tfjs_node.ts';
import * as tf from '@tensorflow/tfjs-core';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CudaBackend } from '../backend-cuda/backend.ts';
import { registerCudaHostBackend } from '../backend-cuda/host_device.ts';
import { registerCudaBackend } from '../backend-cuda/index.ts';
import * as T from '../train_gpt.ts';
import { registerNullBackend } from './null_device.ts';

export interface MemoryProfile {
  /** Device bytes in use before the forward (parameters, optimiser state, the batch). */
  before: number;
  /** Bytes the forward added: the tape's saved tensors and the loss. */
  afterForward: number;
  /** The device's peak bytes in use so far in this process (the backward's, in a fresh one). */
  peak: number;
  /** Stored bytes of the saved tensors by the kernel that saved them, largest first. */
  savedByKernel: [string, number][];
  /** Bytes of bf16-only tensors widened to float32 copies (a conversion pass, and the copy kept with the tensor), by the
   * kernel that read them as float32 (forward and backward), largest first: the readers to teach bf16. */
  widenedByKernel: [string, number][];
}

type TapeNode = { kernelName: string; saved?: tf.Tensor[] };

/** One forward and backward of the summed training loss on a cuda backend (the current one), measured. */
export function memoryProfile(m: T.Model, batch: T.Batch, sched: T.AttnSchedule): MemoryProfile {
  const backend = tf.backend() as CudaBackend, inUse = () => backend.device.memory().bytesInUse;
  // in use before the forward: the parameters and the batch (a reshape of them shares their buffers)
  const before = inUse(), saved = new Map<string, number>();
  const existing = new Set<object>([...m.params.values(), batch.inputs, batch.targets, batch.docIds].map((t) => t.dataId));
  // the kernel running when the backend widens a bf16-only tensor (its fromBf16 call)
  const widened = new Map<string, number>(), engine = tf.engine(), runKernel = engine.runKernel, fromBf16 = backend.device.fromBf16;
  let running = '';
  engine.runKernel = ((name: string, ...rest: unknown[]) => {
    const outer = running;
    running = name;
    try { return (runKernel as (...args: unknown[]) => unknown).call(engine, name, ...rest); } finally { running = outer; }
  }) as typeof runKernel;
  backend.device.fromBf16 = (x, y, n) => { widened.set(running, (widened.get(running) ?? 0) + 4 * n); fromBf16.call(backend.device, x, y, n); };
  let afterForward = 0;
  const { value, grads } = tf.variableGrads(() => {
    const loss = T.modelLoss(m, batch, sched, 'sum');
    afterForward = inUse() - before;
    const tape = (tf.engine() as unknown as { state: { activeTape: TapeNode[] } }).state.activeTape, seen = new Set<object>();
    for (const node of tape) {
      for (const t of node.saved ?? []) {
        if (seen.has(t.dataId) || existing.has(t.dataId)) continue;
        seen.add(t.dataId);
        const d = backend.data.get(t.dataId);
        // the float32 buffer, the bf16 one, and what a fused kernel keeps with its output (attachSaved: the attention's
        // statistics, and the gated attention's o)
        const stored = (d.bf16Only ? 0 : d.bytes) + (d.bf16 !== undefined ? d.bytes / 2 : 0) + (d.savedBytes ?? 0);
        saved.set(node.kernelName, (saved.get(node.kernelName) ?? 0) + stored);
      }
    }
    return loss;
  });
  value.dataSync();
  tf.dispose([value, ...Object.values(grads)]);
  engine.runKernel = runKernel;
  backend.device.fromBf16 = fromBf16;
  const largestFirst = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { before, afterForward, peak: backend.device.memory().peakBytesInUse, savedByKernel: largestFirst(saved), widenedByKernel: largestFirst(widened) };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2), at = argv.indexOf('--device');
  const device = at >= 0 ? argv.splice(at, 2)[1] : 'cuda';
  if (device !== 'cuda' && device !== 'cuda-host' && device !== 'null') throw new Error(`--device ${device}: expected cuda, cuda-host or null`);
  const pAt = argv.indexOf('--preset'), preset = (pAt >= 0 ? argv.splice(pAt, 2)[1] : 'speedrun') as keyof typeof T.PRESETS;
  if (!(preset in T.PRESETS)) throw new Error(`--preset ${preset}: expected one of ${Object.keys(T.PRESETS).join(', ')}`);
  if (device === 'cuda') await registerCudaBackend();
  else if (device === 'null') registerNullBackend();
  else registerCudaHostBackend('cuda-host');
  if (!(await tf.setBackend(device))) throw new Error(`the ${device} backend did not start`);
  const { overrides } = T.parseFlags(argv);
  const { cfg } = T.resolveConfig(preset, { ...overrides, backend: 'cuda' });
  (tf.backend() as CudaBackend).setMatmulPrecision(cfg.matmulPrecision);
  const m = T.createModel(cfg), B = cfg.deviceBatch, L = cfg.seqLen, V = cfg.vocabSize;
  const tokens = Int32Array.from({ length: B * L }, (_, i) => (i % 700 === 0 ? cfg.bosToken : (i * 7919) % (V - 1)));
  const batch = T.toDevice({ inputs: tokens, targets: tokens.map((t) => (t + 1) % (V - 1)), B, T: L }, cfg.bosToken);
  const p = memoryProfile(m, batch, T.attnScheduleAt(cfg.windowSchedule[0], T.initRope(cfg), cfg));
  const GiB = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  console.log(`${preset} ${argv.join(' ')} on ${device}: ${B} × ${L} tokens, matmul ${cfg.matmulPrecision}`);
  console.log(`in use before ${GiB(p.before)}; the forward added ${GiB(p.afterForward)}; peak ${GiB(p.peak)}`);
  console.log('saved for the backward, stored bytes by the kernel that saved them:');
  for (const [k, b] of p.savedByKernel.slice(0, Number(process.env.TOP ?? 12))) console.log(`  ${k.padEnd(28)} ${GiB(b)}`);
  console.log('bf16-only tensors widened to float32 copies, by the kernel that read them:' + (p.widenedByKernel.length ? '' : ' none'));
  for (const [k, b] of p.widenedByKernel.slice(0, Number(process.env.TOP ?? 12))) console.log(`  ${k.padEnd(28)} ${GiB(b)}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
