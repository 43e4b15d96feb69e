// bench/step.ts: the speedrun model's training step (train_gpt.ts's createModel + trainStep: forward,
// backward and the Muon/Adam update) on one backend for a fixed batch. Prints ms/step, training tokens/s
// per GPU, MFU and peak memory, and writes them as JSON with --out.
//
//   npm run bench -- [--backend cuda] [--preset speedrun] [--data-layout packed|rows] [--stream-len 32768]
//                    [--device-batch 4] [--seq-len 2048] [--steps 10] [--warmup 2] [--accum N] [--gpus N]
//                    [--collective nccl|tcp] [--fused on|off] [--fp8-head on|off] [--profile] [--out FILE]
//                    [-- train_gpt.ts model flags, e.g. --canon ABCD, --block sas, --mlp swiglu]
//
// The default batch is one GPU's share of the preset's batch on the 8 GPUs of the speedrun, in the preset's
// layout (train_gpt.ts --data-layout): packed (the 2025-11 record's), --accum micro-steps of one stream of
// --stream-len tokens (speedrun: 1 × 32,768, documents cut at --seq-len 2048); rows (--recipe 2025-08's), --accum
// micro-steps of --device-batch × --seq-len (speedrun: 16 × 2048). Either way batchTokens / 8 tokens per
// optimiser step (one optimiser step per 32k tokens as on an 8-GPU run), or one micro-step where that share is smaller.
//
// --gpus N runs N ranks through train_gpt.ts's launcher (one per GPU on cuda), each on its own slice of the
// batch with the real gradient all-reduce (NCCL on cuda, TCP elsewhere); rank 0 reports, per GPU. With one
// rank, --collective runs the all-reduce through NCCL (cuda) or the TCP collective all the same. The
// all-reduce's time per step is reported either way: the queue is drained before and after it, so it is its
// own wall time (with several ranks it includes waiting for the slowest).
//
// The batch is synthetic (random GPT-2-range tokens in documents of random length, written as a shard in
// a temporary folder and read by the trainer's own loader of the layout), so no corpus is needed. Warm-up
// steps are excluded; each timed step ends when its loss is read back (a sync per step).
//
// MFU = model FLOPs per token × tokens/s ÷ the card's dense bf16 peak, with (PaLM appendix B, the formula
// in shared/reference/speedrun.md) model FLOPs per token = 6 × (hidden matmul params + head params)
// + 12 × attention layers × heads × head dim × seq len. The attention term counts the full T×T scores of
// every attention layer (no causal or window discount), as PaLM and nanoGPT do, with T = --seq-len: a packed
// stream's attention stays inside documents of at most --seq-len tokens, so its T is that, not the stream's.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { writeShard } from '../data/shard.ts';
import { median } from './median.ts';
import {
  attnScheduleAt, countParams, createCollective, createLoader, createModel, createOptimizerState, disposeModel, disposeOptimizerState, initRope,
  launch, parseFlags, resolveConfig, selectBackend, soloCollective, trainStep, useFusedKernels, visibleGpuCount, worldFromEnv,
  type Collective, type Config, type Model,
} from '../train_gpt.ts';

/** Dense bf16 tensor-core peaks (FLOP/s) by card name; used for MFU on GPU backends. */
const BF16_PEAK: [RegExp, number][] = [
  [/H100.*PCIe/i, 756e12],
  [/H100|H200|GH200/i, 989e12], // SXM: 989.4 TFLOP/s dense
  [/A100/i, 312e12],
];

/** The GPUs of the speedrun's record runs: the default batch is one GPU's share of the preset's. */
const SPEEDRUN_GPUS = 8;

class UsageError extends Error {}

const USAGE = 'usage: npm run bench -- [--backend cuda|wasm|tensorflow] [--preset speedrun|tiny] [--data-layout packed|rows] [--stream-len L] ' +
  '[--device-batch N] [--seq-len T] [--steps N] [--warmup N] [--accum N] [--gpus N] [--matmul-precision bf16|tf32|fp32] [--collective nccl|tcp] ' +
  '[--fused on|off] [--fp8-head on|off] [--profile] [--out FILE] [-- train_gpt.ts flags: the model\'s, e.g. --canon ABCD]';

interface Args {
  backend: Config['backend']; preset: 'speedrun' | 'tiny'; dataLayout?: Config['dataLayout']; streamLen?: number; deviceBatch?: number; seqLen?: number; steps: number; warmup: number;
  accum?: number; gpus: number; matmulPrecision?: Config['matmulPrecision']; collective?: 'nccl' | 'tcp'; fused: boolean; profile: boolean;
  fp8Head?: boolean; out?: string;
  /** train_gpt.ts flags after `--` (a variant's: --canon, --block, --mlp, ...), as given and as overrides under the
   * bench's own. */
  modelFlags: string[]; model: Partial<Config>;
}

/** argv split at `--`: the bench's own flags, then train_gpt.ts's model flags (host_overhead.ts takes the same). */
export function splitModelFlags(argv: string[]): [own: string[], model: string[]] {
  const cut = argv.indexOf('--');
  return cut < 0 ? [argv, []] : [argv.slice(0, cut), argv.slice(cut + 1)];
}

function parse(argv: string[]): Args {
  const [own, modelFlags] = splitModelFlags(argv);
  let values, model: Partial<Config>;
  try {
    model = parseFlags(modelFlags).overrides;
  } catch (e) {
    throw new UsageError(`after --: ${(e as Error).message}`);
  }
  try {
    ({ values } = parseArgs({
      args: own, strict: true, allowPositionals: false, options: {
        backend: { type: 'string', default: 'cuda' }, preset: { type: 'string', default: 'speedrun' },
        'data-layout': { type: 'string' }, 'stream-len': { type: 'string' },
        'device-batch': { type: 'string' }, 'seq-len': { type: 'string' }, steps: { type: 'string', default: '10' },
        warmup: { type: 'string', default: '2' }, accum: { type: 'string' }, gpus: { type: 'string', default: '1' },
        'matmul-precision': { type: 'string' }, collective: { type: 'string' }, fused: { type: 'string', default: 'on' }, 'fp8-head': { type: 'string' }, profile: { type: 'boolean', default: false }, out: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) { console.log(USAGE); process.exit(0); }
  const int = (flag: string, raw: string | undefined, min: number): number | undefined => {
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${flag} ${raw}: expected an integer ≥ ${min}`);
    return n;
  };
  const oneOf = <T extends string>(flag: string, raw: string | undefined, allowed: readonly T[]): T | undefined => {
    if (raw === undefined) return undefined;
    if (!allowed.includes(raw as T)) throw new UsageError(`--${flag} ${raw}: expected one of ${allowed.join(', ')}`);
    return raw as T;
  };
  return {
    backend: oneOf('backend', values.backend, ['cuda', 'tensorflow', 'wasm'] as const)!,
    preset: oneOf('preset', values.preset, ['speedrun', 'tiny'] as const)!,
    dataLayout: oneOf('data-layout', values['data-layout'], ['packed', 'rows'] as const),
    streamLen: int('stream-len', values['stream-len'], 2),
    deviceBatch: int('device-batch', values['device-batch'], 1),
    seqLen: int('seq-len', values['seq-len'], 2),
    steps: int('steps', values.steps, 1)!,
    warmup: int('warmup', values.warmup, 0)!,
    accum: int('accum', values.accum, 1),
    gpus: int('gpus', values.gpus, 1)!,
    matmulPrecision: oneOf('matmul-precision', values['matmul-precision'], ['bf16', 'tf32', 'fp32'] as const),
    collective: oneOf('collective', values.collective, ['nccl', 'tcp'] as const),
    fused: oneOf('fused', values.fused, ['on', 'off'] as const) === 'on',
    fp8Head: values['fp8-head'] === undefined ? undefined : oneOf('fp8-head', values['fp8-head'], ['on', 'off'] as const) === 'on',  // default: the recipe's (on)
    profile: values.profile!,
    out: values.out,
    modelFlags, model,
  };
}

/** Model FLOPs per token (see the top of this file) and the parameter counts it is built from. */
export function modelFlopsPerToken(m: Model): { flopsPerToken: number; matmulParams: number; headParams: number; attnLayers: number; formula: string } {
  const { cfg } = m;
  let matmulParams = 0;
  // The hidden matrices: Muon's, less the gates (with the 2025-11 recipe Muon's too), which read 12 channels of a token.
  for (const [name, v] of m.params) if (m.info.get(name)!.opt === 'muon' && !/(^|\.)(smear_gate|attn_gate)$/.test(name)) matmulParams += v.size;
  const headParams = cfg.tieEmbed ? m.params.get('embed')!.size : m.params.get('head')!.size;
  const attnLayers = m.plan.filter((p) => p.attn).length;
  const flopsPerToken = 6 * (matmulParams + headParams) + 12 * attnLayers * cfg.numHeads * cfg.headDim * cfg.seqLen;
  return { flopsPerToken, matmulParams, headParams, attnLayers, formula: '6*(hidden matmul params + head params) + 12*attn_layers*heads*head_dim*seq_len' };
}

/** A shard of synthetic documents: BOS + random tokens, lengths uniform in [T/8, 2T]. */
export function syntheticShard(dir: string, cfg: Config, tokens: number): string {
  let s = 0x9e3779b9 ^ cfg.seed;
  const rand = () => { s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0; return s / 2 ** 32; };
  const vocab = Math.min(cfg.vocabSize, 65535);
  const data = new Uint16Array(tokens);
  for (let i = 0; i < tokens;) {
    data[i++] = cfg.bosToken;
    const len = Math.floor(cfg.seqLen / 8 + rand() * cfg.seqLen * 1.875);
    for (let j = 0; j < len && i < tokens; j++) {
      let t = Math.floor(rand() * vocab);
      if (t === cfg.bosToken) t = (t + 1) % vocab;
      data[i++] = t;
    }
  }
  const file = path.join(dir, 'bench_train_000001.bin');
  writeShard(file, data);
  return file;
}

export async function profileStep(run: () => Promise<void>, topN = 20): Promise<{ kernelMs: number; kernels: number; byName: { name: string; ms: number; count: number; share: number }[]; byShape: { kernel: string; ms: number; count: number }[] }> {
  const check = tf.env().getBool('CHECK_COMPUTATION_FOR_ERRORS');
  tf.env().set('CHECK_COMPUTATION_FOR_ERRORS', false); // else every kernel output is read back to look for NaNs
  let info: Awaited<ReturnType<typeof tf.profile>>;
  try {
    info = await tf.profile(run);
  } finally {
    tf.env().set('CHECK_COMPUTATION_FOR_ERRORS', check);
  }
  const byName = new Map<string, { ms: number; count: number }>(), byShape = new Map<string, { ms: number; count: number }>();
  let total = 0;
  // tf.customGrad's forward functions (train_gpt.ts's checkpoint()) are profiled as one 'unnamed scope' entry that
  // times the registered kernels inside it again: count registered kernels only.
  const kernels = info.kernels.filter((k) => tf.getKernel(k.name, tf.getBackend()) !== undefined);
  for (const k of kernels) {
    const ms = Number(k.kernelTimeMs) || 0;
    total += ms;
    const a = byName.get(k.name) ?? { ms: 0, count: 0 }; a.ms += ms; a.count++; byName.set(k.name, a);
    const key = `${k.name}(${k.inputShapes.map((s: number[]) => `[${s}]`).join(',')})`;
    const b = byShape.get(key) ?? { ms: 0, count: 0 }; b.ms += ms; b.count++; byShape.set(key, b);
  }
  return {
    kernelMs: total, kernels: kernels.length,
    byName: [...byName].map(([name, v]) => ({ name, ...v, share: v.ms / total })).sort((x, y) => y.ms - x.ms).slice(0, topN),
    byShape: [...byShape].map(([kernel, v]) => ({ kernel, ...v })).sort((x, y) => y.ms - x.ms).slice(0, topN),
  };
}

export async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parse(argv);
  } catch (e) {
    if (e instanceof UsageError) { console.error(`bench/step.ts: ${e.message}\n${USAGE}`); return 2; }
    throw e;
  }
  const world = worldFromEnv();
  if (args.out && fs.existsSync(args.out) && world.rank === 0) { console.error(`bench/step.ts: --out ${args.out} exists; results are never overwritten`); return 2; }
  if (!world.launched && args.gpus > 1) {
    const visible = visibleGpuCount();
    if (args.backend === 'cuda' && args.gpus > visible) { console.error(`bench/step.ts: --gpus ${args.gpus}: only ${visible} GPU(s) visible`); return 2; }
    return launch(args.gpus, argv, undefined, fileURLToPath(import.meta.url));
  }
  if (world.size !== args.gpus) { console.error(`bench/step.ts: --gpus ${args.gpus} but WORLD_SIZE=${world.size}`); return 2; }
  const lead = world.rank === 0, say = (line: string) => { if (lead) console.log(line); };
  const overrides: Partial<Config> = { ...args.model, backend: args.backend, warmupSteps: 0 };
  if (args.dataLayout !== undefined) overrides.dataLayout = args.dataLayout;
  if (args.streamLen !== undefined) overrides.streamLen = args.streamLen;
  if (args.deviceBatch !== undefined) overrides.deviceBatch = args.deviceBatch;
  if (args.seqLen !== undefined) overrides.seqLen = args.seqLen;
  if (args.matmulPrecision !== undefined) overrides.matmulPrecision = args.matmulPrecision;
  if (args.fp8Head !== undefined) overrides.fp8Head = args.fp8Head;
  const base = resolveConfig(args.preset, overrides).cfg;
  const packed = base.dataLayout === 'packed';
  if (packed && args.deviceBatch !== undefined) { console.error(`bench/step.ts: --device-batch applies to --data-layout rows (a packed micro-step is one stream)\n${USAGE}`); return 2; }
  if (!packed && args.streamLen !== undefined) { console.error(`bench/step.ts: --stream-len applies to --data-layout packed\n${USAGE}`); return 2; }
  const microTokens = packed ? base.streamLen : base.deviceBatch * base.seqLen; // per rank per micro-step
  const accum = args.accum ?? Math.max(1, Math.floor(base.batchTokens / (SPEEDRUN_GPUS * microTokens)));
  const { cfg } = resolveConfig(args.preset, { ...overrides, batchTokens: microTokens * accum * world.size });

  await selectBackend(cfg);
  useFusedKernels(args.fused);
  const backend = tf.getBackend();
  const deviceName = backend === 'cuda' ? ((await import('../backend-cuda/index.ts')).cudaDeviceName()) : os.cpus()[0]?.model ?? 'cpu';
  const tokensPerStep = microTokens * accum; // per rank
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsgpt-bench-'));
  try {
    const shard = syntheticShard(dir, cfg, Math.min(tokensPerStep * world.size * 4 + cfg.seqLen * 2, 2 ** 31 - 1));
    const loader = createLoader(cfg, [shard], world);
    const m = createModel(cfg), st = createOptimizerState(m);
    // The longest windows of training, the extension's (the composite attention's cost does not depend on it).
    const sched = attnScheduleAt(Math.max(...cfg.windowSchedule, cfg.extensionWindow), initRope(cfg), cfg);
    const flops = modelFlopsPerToken(m);
    say(`bench: ${backend} (${deviceName}), preset ${args.preset}: ${(countParams(m) / 1e6).toFixed(2)}M params, ` +
      `batch ${packed ? `one packed stream of ${cfg.streamLen} (documents cut at ${cfg.seqLen})` : `${cfg.deviceBatch}×${cfg.seqLen}`}×${accum} micro-step(s) = ${tokensPerStep} tokens/step per rank, ` +
      `${world.size} rank(s), matmul ${cfg.matmulPrecision}, FP8 head ${cfg.fp8Head ? 'on' : 'off'}` +
      (args.modelFlags.length ? `, model flags ${args.modelFlags.join(' ')}` : ''));
    // The all-reduce, timed alone: the queue is drained before it (reading the small loss vector, the last
    // tensor) and after it, so the wall time is the all-reduce's own (and, with several ranks, the wait for
    // the slowest).
    let collective: Collective = soloCollective, allReduceMs = 0, allReduces = 0;
    if (args.collective || world.size > 1) {
      const inner = await createCollective(world, backend, args.collective ?? 'auto');
      const timed = (reduce: (tensors: tf.Tensor[]) => Promise<tf.Tensor[]>) => async (tensors: tf.Tensor[]) => {
        await tensors[tensors.length - 1].data();
        const t = performance.now();
        const out = await reduce(tensors);
        await out[out.length - 1].data();
        allReduceMs += performance.now() - t;
        allReduces++;
        return out;
      };
      collective = { ...inner, allReduceMean: timed(inner.allReduceMean) };  // the gradients' (the sharded optimiser's all-gather is not in it)
    }
    // Host time per step: until trainStep has queued the whole step (its loss not yet read). Close to the step's
    // time, the host is the bottleneck (tfjs and kernel-launch overhead); far below it, the GPU is.
    let hostMs = 0;
    const stepOnce = async (s: number) => {
      const t = performance.now();
      const loss = await trainStep(m, st, loader, sched, accum, s, collective);
      hostMs += performance.now() - t;
      const v = (await loss.data())[0];
      loss.dispose();
      if (!Number.isFinite(v)) throw new Error(`loss is ${v} at bench step ${s}`);
      return v;
    };
    for (let s = 0; s < args.warmup; s++) {
      const t = performance.now();
      const loss = await stepOnce(s);
      say(`warm-up ${s + 1}/${args.warmup}: ${(performance.now() - t).toFixed(1)} ms, loss ${loss.toFixed(4)}`);
    }
    const times: number[] = [];
    allReduceMs = 0; allReduces = 0; hostMs = 0; // timed steps only
    for (let s = 0; s < args.steps; s++) {
      const t = performance.now();
      const loss = await stepOnce(args.warmup + s);
      times.push(performance.now() - t);
      say(`step ${s + 1}/${args.steps}: ${times[s].toFixed(1)} ms, loss ${loss.toFixed(4)}`);
    }
    const msPerStep = median(times), hostMsPerStep = hostMs / args.steps;
    const tokensPerSecond = tokensPerStep / (msPerStep / 1000);
    const peak = backend === 'cuda' ? BF16_PEAK.find(([re]) => re.test(deviceName))?.[1] ?? null : null;
    const achieved = flops.flopsPerToken * tokensPerSecond;
    const mem = tf.memory() as tf.MemoryInfo & { peakBytes?: number; allocRetries?: number };
    const peakBytes = mem.peakBytes ?? process.resourceUsage().maxRSS * 1024;
    const result: Record<string, unknown> = {
      backend, device: deviceName, preset: args.preset, modelFlags: args.modelFlags, matmulPrecision: cfg.matmulPrecision, fp8Head: cfg.fp8Head, fused: args.fused,
      dataLayout: cfg.dataLayout, streamLen: packed ? cfg.streamLen : null, deviceBatch: packed ? 1 : cfg.deviceBatch, seqLen: cfg.seqLen, accum, gpus: world.size,
      tokensPerStep, warmupSteps: args.warmup, steps: args.steps,
      msPerStep, msPerStepMean: times.reduce((a, b) => a + b, 0) / times.length, msPerStepMin: Math.min(...times), stepMs: times,
      hostMsPerStep,
      tokensPerSecond, params: countParams(m), ...flops, achievedTflops: achieved / 1e12,
      peakTflops: peak === null ? null : peak / 1e12, mfu: peak === null ? null : achieved / peak,
      collective: allReduces ? args.collective ?? (backend === 'cuda' ? 'nccl' : 'tcp') : null,
      allReduceMsPerStep: allReduces ? allReduceMs / allReduces : null,
      allocRetries: mem.allocRetries ?? null, peakMemoryBytes: peakBytes, peakMemoryKind: mem.peakBytes !== undefined ? 'device bytes allocated to tensors' : 'host peak RSS',
      node: process.version, tfjs: tf.version_core, date: new Date().toISOString(),
    };
    if (args.profile && !lead) await stepOnce(args.warmup + args.steps);  // the all-reduce needs every rank
    if (args.profile && lead) {
      const prof = await profileStep(async () => { await stepOnce(args.warmup + args.steps); });
      result.profile = prof;
      console.log(`profile of one step: ${prof.kernels} kernels, ${prof.kernelMs.toFixed(1)} ms of kernel time (events around each kernel)`);
      for (const k of prof.byName) console.log(`  ${k.name.padEnd(22)} ${k.ms.toFixed(2).padStart(9)} ms ${(100 * k.share).toFixed(1).padStart(5)}%  ×${k.count}`);
      console.log('  top kernels by input shapes:');
      for (const k of prof.byShape) console.log(`  ${k.ms.toFixed(2).padStart(9)} ms ×${String(k.count).padEnd(4)} ${k.kernel}`);
    }
    if (allReduces) say(`all-reduce (${result.collective}, ${world.size === 1 ? 'one rank' : `${world.size} ranks`}): ${(allReduceMs / allReduces).toFixed(2)} ms per step`);
    say(`${msPerStep.toFixed(1)} ms/step (median of ${args.steps}), ${Math.round(tokensPerSecond)} tokens/s per GPU, ` +
      `${(achieved / 1e12).toFixed(1)} TFLOP/s model FLOPs (${(flops.flopsPerToken / 1e9).toFixed(3)} GFLOP/token)` +
      `${peak === null ? '' : `, MFU ${(100 * achieved / peak).toFixed(1)}% of ${peak / 1e12} TFLOP/s bf16`}, ` +
      `peak memory ${(peakBytes / 2 ** 20).toFixed(0)} MiB (${result.peakMemoryKind}), host ${hostMsPerStep.toFixed(1)} ms/step to queue it` +
      `${mem.allocRetries ? `; ${mem.allocRetries} allocations waited for the stream and emptied the pool (memory nearly full)` : ''}`);
    if (args.out && lead) {
      // Atomic and never overwriting: a complete temp file, hard-linked to the name only if it is free.
      const out = path.resolve(args.out), tmp = `${out}.${process.pid}.tmp`;
      fs.mkdirSync(path.dirname(out), { recursive: true });
      fs.writeFileSync(tmp, JSON.stringify(result, null, 2) + '\n');
      try { fs.linkSync(tmp, out); } finally { fs.rmSync(tmp, { force: true }); }
      console.log(`wrote ${args.out}`);
    }
    collective.close();
    disposeOptimizerState(st);
    disposeModel(m);
    return 0;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  try {
    process.exitCode = await main(process.argv.slice(2));
  } catch (e) {
    console.error(`bench/step.ts: ${(e as Error).message}`);
    if (process.env.TSGPT_DEBUG) console.error((e as Error).stack);
    process.exitCode = 1;
  }
}
