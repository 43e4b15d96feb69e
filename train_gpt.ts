// train_gpt.ts: the NanoGPT speedrun in TypeScript.
//
// One file, read top to bottom: hyperparameters, backends, the model, the optimisers, the data, the
// training loop and its log. Run it with `npx tsx train_gpt.ts` (see `--help`); import it (tests do)
// and it exports its pieces and runs nothing.
//
// The model is the modded-nanogpt speedrun GPT (see ../shared/reference/model.md) written on the
// TensorFlow.js API, so the same code runs on every tfjs backend: `cpu`/`wasm` for small runs and tests,
// the project's own `cuda` backend on NVIDIA GPUs, or tfjs-node-gpu where a user has it. Every trick
// carries a comment saying why and where it came from; each block variant from the literature is a flag.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash, randomUUID } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import * as net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { variableGradsSummed } from './tfjs_node.ts'; // gradients, chained ops and the cpu backend, without tfjs's Node.js banner
import cliProgress from 'cli-progress';
import { checkTokenIds, readShard, readShardSync, removeStaleTempFiles, writeFileAtomic, GPT2_BOS } from './data/shard.ts';
import { ensureBuiltinCorpus, loadCodec, type CorpusCodec, type CorpusTokenizer } from './data/builtin_corpus.ts';
import { logHeader, peakMemoryLine, resumedLine, stepLine, stoppedLine, valLine } from './log_format.ts';
// The fused kernels' backend-neutral halves: kernel names, the calls each supports, their gradients (no backend code).
import type { FusedKernelSpec } from './backend-cuda/ops/fused_kernel.ts';
import { attentionInputs as attentionInputsKernel, attentionInputsQK, attentionInputsVE } from './backend-cuda/ops/attention_inputs/attention_inputs.ts';
import { canonAttentionInputs as canonAttentionInputsKernel, canonAttentionInputsVE } from './backend-cuda/ops/canon_attention_inputs/canon_attention_inputs.ts';
import { canonConv, type CanonAttrs } from './backend-cuda/ops/canon_conv/canon_conv.ts';
import { causalAttention, gatedCausalAttention } from './backend-cuda/ops/causal_attention/causal_attention.ts';
import { embedding as embeddingKernel } from './backend-cuda/ops/embedding/embedding.ts';
import { fp8HeadLoss as fp8HeadLossKernel, type Fp8HeadLossAttrs } from './backend-cuda/ops/fp8_head_loss/fp8_head_loss.ts';
import { fp8Matmul as fp8MatmulKernel, type Fp8MatmulAttrs } from './backend-cuda/ops/fp8_matmul/fp8_matmul.ts';
import { headGate as headGateKernel } from './backend-cuda/ops/head_gate/head_gate.ts';
import { roundBf16 as roundBf16Kernel } from './backend-cuda/ops/round_bf16/round_bf16.ts';
import { linear as linearKernel } from './backend-cuda/ops/linear/linear.ts';
import { matMulAdd as matMulAddKernel, type MatMulAddAttrs } from './backend-cuda/ops/matmul_add/matmul_add.ts';
import { muonApply as muonApplyKernel, muonGather as muonGatherKernel, muonMomentumGather as muonMomentumGatherKernel, type MuonApplyAttrs, type MuonGatherAttrs,
  type MuonMomentumGatherAttrs } from './backend-cuda/ops/muon_blocks/muon_blocks.ts';
import { adamUpdate as adamUpdateKernel, muonMomentum as muonMomentumKernel, normuonUpdate as normuonUpdateKernel } from './backend-cuda/ops/optimizer/optimizer.ts';
import { reluSquared as reluSquaredKernel } from './backend-cuda/ops/relu_squared/relu_squared.ts';
import { rmsNorm as rmsNormKernel, type RmsNormAttrs } from './backend-cuda/ops/rms_norm/rms_norm.ts';
import { rotary as rotaryKernel } from './backend-cuda/ops/rotary/rotary.ts';
import { scaledAdd as scaledAddKernel, scaledAddPair as scaledAddPairKernel } from './backend-cuda/ops/scaled_add/scaled_add.ts';
import { shapedMix as shapedMixKernel } from './backend-cuda/ops/shaped_mix/shaped_mix.ts';
import { smear as smearKernel } from './backend-cuda/ops/smear/smear.ts';
import { softcapCrossEntropy as softcapCrossEntropyKernel } from './backend-cuda/ops/softcap_cross_entropy/softcap_cross_entropy.ts';
import { swiglu as swigluKernel } from './backend-cuda/ops/swiglu/swiglu.ts';

const REPO_ROOT = path.dirname(fileURLToPath(import.meta.url));

// -----------------------------------------------------------------------------
// Hyperparameters
//
// Every field is a command-line flag (camelCase here, kebab-case there: `modelDim` is `--model-dim`), declared
// once in FLAGS with its type or choices, default, `--preset tiny` value, --help section, help and valid range.
// The Config type, DEFAULTS, PRESETS, parsing, --help and the run log's flags line are all read off that table.
// The defaults are the speedrun baseline (124M model, Nov 2025 batch form). The tiny values make a byte-level
// model small enough to train in about two minutes on a 2-core CPU (the 50k-token GPT-2 head alone would cost
// more than the whole tiny model); it keeps the speedrun's architecture tricks.

/** The sections of --help, in order. */
const GROUPS = {
  data: 'Data', model: 'Model', attention: 'Attention', optimiser: 'Optimisers', schedule: 'Batch and schedule',
  run: 'Run control', backend: 'Backend and GPUs',
};

/** A number flag's valid range: min and max are inclusive, above and below exclusive (a beta is in [0, 1)). */
interface Range { min?: number; max?: number; above?: number; below?: number }
type FlagSpec = { group: keyof typeof GROUPS; help: string } & (
  | { choices: readonly string[]; default: string; tiny?: string }
  | ({ type: 'int' | 'float'; default: number; tiny?: number } & Range)
  | { type: 'bool'; default: boolean; tiny?: boolean }
  | { type: 'list'; arg: string; default: readonly number[]; tiny?: readonly number[] } // non-negative integers
  | { type: 'text'; arg: string; default: string; tiny?: string } // never empty when given
);

const FLAGS = {
  preset: { group: 'run', choices: ['auto', 'speedrun', 'short', 'tiny'], default: 'auto',
    help: 'speedrun: the 124M model on FineWeb; short: the same model and recipe on the built-in GPT-2 corpus, sized for repeated runs on one GPU ' +
      '(≈ 1.8 epochs in 225 steps of 16,384 tokens; --preset short --describe lists it); tiny: the values in brackets, a byte-level model for a CPU; ' +
      'auto: speedrun with a GPU backend and FineWeb shards, else tiny' },
  recipe: { group: 'run', choices: ['2025-11', '2025-08'], default: '2025-11',
    help: 'training recipe, the defaults of its optimiser and schedule flags (explicit flags win): 2025-11 is the record of 2025-11-22 (../shared/reference/record-2025-11.md); ' +
      '2025-08 is the port\'s earlier one: --optimizer muon --orthogonalizer ns5 --muon-lr 0.05 --weight-decay 0 --gate-optimizer adam --adam-beta1 0.8 --adam-eps 1e-10 ' +
      '--adam-every 1 --cooldown-frac 0.45 --extension-frac 0 --window-schedule 3,7,11,13 --muon-cooldown-steps 0 --val-yarn --data-layout rows --smear-across-docs off --fp8-head off --bf16-state off' },
  // Not tfjs's pure-JavaScript cpu backend: it cannot finish one step of the tiny model in 5 minutes (allocation
  // and GC in its matmul and segment sum); wasm runs the same model on the same CPU in about a second a step.
  backend: { group: 'backend', choices: ['auto', 'cuda', 'tensorflow', 'wasm'], default: 'auto',
    help: 'tensor backend: tensorflow is tfjs-node-gpu, if installed; wasm runs on the CPU; auto: the fastest that loads' },
  matmulPrecision: { group: 'backend', choices: ['bf16', 'tf32', 'fp32'], default: 'bf16', help: 'cuda matmul precision (bf16: autocast)' },
  // data
  corpus: { group: 'data', choices: ['auto', 'fineweb', 'builtin-gpt2', 'builtin-bytes'], default: 'auto', tiny: 'builtin-bytes',
    help: 'fineweb: the shards in --data-dir; builtin-gpt2, builtin-bytes: the built-in corpus in GPT-2 tokens or bytes; auto: fineweb when present' },
  dataDir: { group: 'data', type: 'text', arg: 'DIR', default: 'data/fineweb10B', help: 'folder holding the FineWeb .bin shards' },
  trainFiles: { group: 'data', type: 'text', arg: 'GLOB', default: 'fineweb_train_*.bin', help: 'training shards inside --data-dir' },
  valFiles: { group: 'data', type: 'text', arg: 'GLOB', default: 'fineweb_val_*.bin', help: 'validation shards inside --data-dir' },
  valTokens: { group: 'data', type: 'int', min: 1, default: 10_485_760, tiny: 16384,
    help: 'validation tokens, clamped to the val shard (the rules fix the first 10M tokens of the val shard)' },
  // The record validates 40 streams of 262,144 tokens (record-2025-11.md §8.4). The tiny value keeps the composite
  // attention's [T, T] scores of a validation stream small on the CPU (on wasm, 8 streams of 2048 took 10 s, 16 of 1024 1 s).
  valStreamLen: { group: 'data', type: 'int', min: 1, default: 262_144, tiny: 1024,
    help: '--data-layout packed: tokens per validation stream (consecutive, not BOS-aligned; documents not cut); a shorter val shard gives the longest stream that fits' },
  vocabSize: { group: 'data', type: 'int', min: 1, default: 50304, tiny: 320,
    help: 'embedding rows: the vocabulary, padded (50257 GPT-2 tokens to a multiple of 128, for fast matmuls)' },
  bosToken: { group: 'data', type: 'int', min: 0, default: GPT2_BOS, tiny: 256, help: 'document-start token' },
  // model shape
  numLayers: { group: 'model', type: 'int', min: 1, default: 12, tiny: 4, help: 'transformer layers' },
  modelDim: { group: 'model', type: 'int', min: 1, default: 768, tiny: 128, help: 'residual width d' },
  numHeads: { group: 'attention', type: 'int', min: 1, default: 6, tiny: 2, help: 'query heads' },
  headDim: { group: 'attention', type: 'int', min: 1, default: 128, tiny: 64, help: 'head dimension (a multiple of 4: rotary pairs)' },
  kvHeads: { group: 'attention', type: 'int', min: 1, default: 6, tiny: 2, help: 'key/value heads (grouped-query attention when fewer than --num-heads)' },
  // Layer 0 is a null layer; layer 7 is MLP-only (model.md).
  noAttnLayers: { group: 'model', type: 'list', arg: 'LAYERS', default: [0, 7], tiny: [], help: 'layers without attention (comma list, or none)' },
  noMlpLayers: { group: 'model', type: 'list', arg: 'LAYERS', default: [0], tiny: [], help: 'layers without MLP (comma list, or none)' },
  mlp: { group: 'model', choices: ['relu2', 'swiglu'], default: 'relu2', help: 'MLP: relu2 is ReLU squared; swiglu\'s hidden width is 2/3 of --mlp-ratio·d' },
  mlpRatio: { group: 'model', type: 'float', above: 0, default: 4, help: 'MLP hidden width as a multiple of d' },
  // architecture options (model.md)
  block: { group: 'model', choices: ['prenorm', 'sas', 'sas-p'], default: 'prenorm',
    help: 'sas, sas-p: He & Hofmann simplified blocks; they exclude value embeddings, attention gate, Canon B, GQA, non-softmax scores, skips, backout, block lambdas, --parallel' },
  parallel: { group: 'model', type: 'bool', default: false, help: 'attention and MLP in parallel from one normed input (PaLM)' },
  skip: { group: 'model', type: 'text', arg: 'A-B|unet|none', default: '4-7', tiny: '1-3',
    help: 'U-net skip: A-B adds the output of layer A to the input of layer B through a sigmoid gate; unet is the full U-net' },
  blockLambdas: { group: 'model', type: 'bool', default: true, help: 'x <- a·x + b·x0 at each block start' },
  lambdaInit: { group: 'model', type: 'float', default: 1.1, help: 'initial a of the block lambdas' },
  canon: { group: 'model', type: 'text', arg: 'ABCD|none', default: 'none', help: 'Canon layers (Allen-Zhu) at any subset of the positions ABCD' },
  canonInit: { group: 'model', choices: ['uniform', 'zero'], default: 'uniform', help: 'Canon weight init (uniform: the author\'s, ±0.5)' },
  attnScore: { group: 'attention', choices: ['softmax', 'softpick', 'softmax1'], default: 'softmax', help: 'attention normaliser' },
  valueEmbeds: { group: 'model', type: 'int', min: 0, default: 3, tiny: 1, help: 'value-embedding tables (0: off)' },
  smear: { group: 'model', type: 'bool', default: true, help: 'token smear: mix the previous token into each embedding through a learned gate' },
  smearAcrossDocs: { group: 'model', type: 'bool', default: true,
    help: 'the smear also runs across a document start (a BOS receives the last token of the document before it), as the 2025-11 record\'s along its packed stream; off: never' },
  attnGate: { group: 'attention', type: 'bool', default: true, help: 'sparse attention output gate per head' },
  backout: { group: 'model', type: 'bool', default: true, help: 'subtract a learned multiple of layer --backout-layer output before the head' },
  backoutLayer: { group: 'model', type: 'int', min: 0, default: 8, tiny: 2, help: 'layer whose output is backed out' },
  backoutInit: { group: 'model', type: 'float', default: 0.5, help: 'initial backout lambda' },
  logitCap: { group: 'model', choices: ['sigmoid', 'tanh', 'none'], default: 'sigmoid', help: 'logit soft cap: sigmoid is s·σ(x/t), tanh is s·tanh(x/s)' },
  logitCapScale: { group: 'model', type: 'float', above: 0, default: 30, help: 'soft-cap scale s' },
  logitCapTemp: { group: 'model', type: 'float', above: 0, default: 7.5, help: 'sigmoid soft-cap temperature t' },
  qkNorm: { group: 'attention', type: 'bool', default: true, help: 'RMSNorm on queries and keys' },
  rotary: { group: 'attention', choices: ['half', 'full', 'none'], default: 'half', help: 'rotary embedding (half: half the dims stationary)' },
  attnScale: { group: 'attention', type: 'float', above: 0, default: 0.1, help: 'softmax scale (prenorm attention)' },
  tieEmbed: { group: 'model', type: 'bool', default: false, help: 'tie the head to the embedding' },
  fp8Head: { group: 'model', type: 'bool', default: true,
    help: 'the head\'s matmul in FP8 in training, as the 2025-11 record: e4m3 activations and weights, e5m2 logit gradients, fixed scales ' +
      '√d/448, 2⁻⁹, 1/448 (validation runs it unquantised; backends without FP8 kernels emulate it); needs an untied head' },
  // batch and schedule
  // packed is the 2025-11 record's layout (record-2025-11.md §8.2); rows the port's earlier one (--recipe 2025-08).
  dataLayout: { group: 'schedule', choices: ['packed', 'rows'], default: 'packed',
    help: 'training batches: packed streams one per micro-step (batch 1) of whole documents from their BOS, each cut at --seq-len, targets at a cut the next document\'s BOS; ' +
      'rows: --device-batch rows of --seq-len tokens from a document start. Validation: packed, streams of --val-stream-len tokens; rows, rows of --seq-len' },
  seqLen: { group: 'schedule', type: 'int', min: 1, default: 2048, tiny: 128,
    help: 'the longest training context: packed, each document\'s first N tokens (the rest is never used); rows, the row length (a document longer is cut)' },
  // One stream holds the tokens of 16 rows of 2048: the record's per-GPU micro-batch. The tiny value is a quarter of
  // its batch: the composite attention's [T, T] scores grow with the square of the stream.
  streamLen: { group: 'schedule', type: 'int', min: 1, default: 32_768, tiny: 512,
    help: '--data-layout packed: input tokens per training stream (one rank\'s micro-batch); --batch-tokens / this streams a step, in the same order on any number of GPUs' },
  batchTokens: { group: 'schedule', type: 'int', min: 1, default: 262_144, tiny: 2048, help: 'global tokens per optimiser step, on any number of GPUs' },
  // 16 as the PyTorch speedrun (its 8-GPU step is one micro-step per GPU): 58 GiB on an 80 GB H100 with the cuda
  // backend's fused kernels and bf16 matmul inputs (the tape's other activations stay fp32).
  deviceBatch: { group: 'schedule', type: 'int', min: 1, default: 16,
    help: '--data-layout rows: sequences per GPU per micro-step, the rest is gradient accumulation (at most: lowered until it divides each GPU\'s share of the batch); 8 (32 GiB) on a smaller card' },
  numIterations: { group: 'schedule', type: 'int', min: 1, default: 2225, tiny: 100, help: 'optimiser steps: the scheduled steps, then the extension' },
  extensionFrac: { group: 'schedule', type: 'float', min: 0, below: 1, default: 40 / 2225,
    help: 'share of --num-iterations in the extension after the scheduled steps (the record: 40 of 2225): lr at its floor, the --extension-window' },
  cooldownFrac: { group: 'schedule', type: 'float', min: 0, max: 1, default: 0.5, tiny: 0.4, help: 'fraction of the scheduled steps in the final linear cooldown' },
  cooldownFloor: { group: 'schedule', type: 'float', min: 0, max: 1, default: 0.1, help: 'learning-rate multiplier at the end of the cooldown' },
  windowBlock: { group: 'attention', type: 'int', min: 1, default: 128, tiny: 32, help: 'tokens per attention-window block' },
  windowSchedule: { group: 'attention', type: 'list', arg: 'BLOCKS', default: [3, 7, 11], tiny: [2, 4],
    help: 'long window in blocks for equal stages of the scheduled steps (short = long/2)' },
  extensionWindow: { group: 'attention', type: 'int', min: 1, default: 13, tiny: 4, help: 'long window in blocks during the extension steps' },
  windowPattern: { group: 'attention', type: 'text', arg: 'SL...', default: 'SSSSLSSSSSSL', tiny: 'SLSL',
    help: 'per-layer window: S (short) or L (long), one letter a layer' },
  valWindow: { group: 'attention', type: 'int', min: 1, default: 20, tiny: 4, help: 'long window in blocks at the final validation' },
  valYarn: { group: 'attention', type: 'bool', default: false,
    help: 'reach --val-window by one more YaRN extension, with half of it as the short window; off: rotary, scale and short window stay as in the last step' },
  // optimisers
  optimizer: { group: 'optimiser', choices: ['normuon', 'muon'], default: 'normuon',
    help: 'optimiser of the matrices: muon orthogonalises the momentum; normuon also divides each neuron\'s update by its RMS over time' },
  // tiny: 0.03 under either recipe (presets override recipes).
  muonLr: { group: 'optimiser', type: 'float', min: 0, default: 0.03, tiny: 0.03, help: 'Muon (and NorMuon) learning rate' },
  muonMomentum: { group: 'optimiser', type: 'float', min: 0, below: 1, default: 0.95, help: 'Muon momentum after warm-up' },
  muonMomentumStart: { group: 'optimiser', type: 'float', min: 0, below: 1, default: 0.85, help: 'Muon momentum at step 0 and at the end of its cool-down' },
  muonWarmupSteps: { group: 'optimiser', type: 'int', min: 0, default: 300, tiny: 30, help: 'Muon momentum warm-up steps' },
  muonCooldownSteps: { group: 'optimiser', type: 'int', min: 0, default: 50, help: 'Muon momentum cool-down over the last N steps' },
  orthogonalizer: { group: 'optimiser', choices: ['ns5', 'polar'], default: 'polar', help: 'Muon orthogonalisation: ns5 is Newton-Schulz, polar is Polar Express' },
  normuonBeta2: { group: 'optimiser', type: 'float', min: 0, below: 1, default: 0.95, help: 'NorMuon: decay of the per-neuron mean square' },
  weightDecay: { group: 'optimiser', type: 'float', min: 0, default: 1.2,
    help: 'cautious weight decay of the Muon matrices, λ = this · Muon lr (scheduled), on the entries where update and weight agree in sign' },
  gateOptimizer: { group: 'optimiser', choices: ['muon', 'adam'], default: 'muon', help: 'optimiser of the smear and attention gate weights (muon: as --optimizer)' },
  adamLr: { group: 'optimiser', type: 'float', min: 0, default: 0.008, tiny: 0.01, help: 'Adam base learning rate' },
  adamBeta1: { group: 'optimiser', type: 'float', min: 0, below: 1, default: 0.65, help: 'Adam beta1' },
  adamBeta2: { group: 'optimiser', type: 'float', min: 0, below: 1, default: 0.95, help: 'Adam beta2' },
  adamEps: { group: 'optimiser', type: 'float', above: 0, default: 1e-8, help: 'Adam epsilon, added to √v before the bias correction' },
  adamEvery: { group: 'optimiser', type: 'int', min: 1, default: 2, help: 'Adam steps every N steps on the sum of their gradients' },
  embedLrMul: { group: 'optimiser', type: 'float', min: 0, default: 75, tiny: 10, help: 'Adam lr multiplier for embeddings and value embeddings' },
  scalarLrMul: { group: 'optimiser', type: 'float', min: 0, default: 5, help: 'Adam lr multiplier for scalars (and the gates with --gate-optimizer adam)' },
  headLrMul: { group: 'optimiser', type: 'float', min: 0, default: 1, help: 'Adam lr multiplier for the head' },
  bf16State: { group: 'optimiser', type: 'bool', default: true,
    help: 'keep in bf16 what the record does (its §5): the embeddings, value embeddings, head and gate weights with their gradients and optimiser state, and every Adam moment, each rounded to bf16 when written; on cuda the embeddings, value embeddings, head and Adam moments are stored in bf16 (half the bytes; the gates, 732 values, stay float32)' },
  shardOptimizer: { group: 'optimiser', type: 'bool', default: true,
    help: 'with several ranks, each orthogonalises every Nth Muon matrix of a shape and the ranks exchange the updates by one all-gather (the record shards its optimiser); off: every rank computes them all (the same updates)' },
  // run
  valEvery: { group: 'run', type: 'int', min: 0, default: 250, tiny: 50, help: 'validate every N steps (0: only at the end)' },
  warmupSteps: { group: 'run', type: 'int', min: 0, default: 10, tiny: 1, help: 'untimed warm-up steps (then the state is restored)' },
  seed: { group: 'run', type: 'int', default: 0, help: 'random seed' },
  saveCheckpoint: { group: 'run', type: 'bool', default: false, help: 'save a checkpoint at the end' },
  checkpointEvery: { group: 'run', type: 'int', min: 0, default: 0, help: 'also save every N steps (0: off)' },
  checkpointDir: { group: 'run', type: 'text', arg: 'DIR', default: 'checkpoints', help: 'checkpoint folder' },
  resume: { group: 'run', type: 'text', arg: 'FILE', default: '', help: 'resume from a checkpoint file' },
  resumeAllowConfigChange: { group: 'run', type: 'bool', default: false,
    help: 'let --resume change settings that change the computation (the step count, the model, the data, the batch, the optimisers); without it they must equal the checkpoint\'s' },
  keepCheckpoints: { group: 'run', type: 'int', min: 0, default: 3, help: 'keep the newest K checkpoints of this run, deleting older ones (0: keep all)' },
  logDir: { group: 'run', type: 'text', arg: 'DIR', default: 'logs', help: 'log folder (one new file per run)' },
  printEvery: { group: 'run', type: 'int', min: 0, default: 10, help: 'console line every N steps when not on a terminal' },
  describe: { group: 'run', type: 'bool', default: false, help: 'print the resolved hyperparameters and the schedules at --steps, then exit without training' },
  steps: { group: 'run', type: 'list', arg: 'STEPS', default: [], help: '--describe: the steps to show (none: every step where a schedule changes)' },
  json: { group: 'run', type: 'bool', default: false, help: '--describe: as JSON' },
  gpus: { group: 'backend', type: 'int', min: 0, default: 0,
    help: 'processes to start, one per GPU (0: every visible GPU for the speedrun on cuda, else 1); on CPU backends, CPU workers' },
  collectiveTimeout: { group: 'backend', type: 'int', min: 1, default: 300,
    help: 'seconds a rank waits for another in the TCP all-reduce before it ends the run naming that rank (a stopped or hung worker)' },
  collective: { group: 'backend', choices: ['auto', 'tcp', 'nccl'], default: 'auto',
    help: 'gradient all-reduce: auto is none for one rank, nccl on cuda, else tcp; nccl also with one rank, to exercise the NCCL path' },
  fused: { group: 'backend', type: 'bool', default: true,
    help: 'use the backend\'s fused kernels (attention, its inputs and output gate, cross-entropy, RMSNorm, rotary, ReLU², scaled adds, matmul-adds, optimiser updates, the FP8 head) where it has them and they support the call; off: the composites' },
} as const satisfies Record<string, FlagSpec>;

type Key = keyof typeof FLAGS;
type ValueOf<F> = F extends { choices: readonly (infer C)[] } ? C
  : F extends { type: 'int' | 'float' } ? number : F extends { type: 'bool' } ? boolean : F extends { type: 'list' } ? number[] : string;
export type Config = { -readonly [K in Key]: ValueOf<(typeof FLAGS)[K]> };

const KEYS = Object.keys(FLAGS) as Key[];
export const DEFAULTS = Object.fromEntries(KEYS.map((k): [Key, unknown] => [k, FLAGS[k].default])) as Config;
// The defaults are the 2025-11 record's recipe; --recipe 2025-08 restores the port's earlier one (the flags its
// help names; windows of W + 1 keys, RMSNorm's eps and Adam's eps placement are the record's under both).
// Recipes override the defaults, presets override recipes, explicit flags override presets.
export const RECIPES: Record<Config['recipe'], Partial<Config>> = {
  '2025-11': {},
  '2025-08': {
    optimizer: 'muon', orthogonalizer: 'ns5', muonLr: 0.05, weightDecay: 0, gateOptimizer: 'adam', adamBeta1: 0.8, adamEps: 1e-10, adamEvery: 1,
    cooldownFrac: 0.45, extensionFrac: 0, windowSchedule: [3, 7, 11, 13], muonCooldownSteps: 0, valYarn: true, dataLayout: 'rows', smearAcrossDocs: false,
    fp8Head: false, bf16State: false,
  },
};

// --preset short: the record's model and recipe for repeated runs on one GPU (an ablation of variants over seeds),
// on the built-in GPT-2 corpus: 2,258,977 train tokens, which the loader cuts into 1014 sequences of 2048 an epoch
// (each starts at a document start). The issue asks for one to two epochs and at most ≈ 45 s of training on an H200.
// The data binds before the time: two epochs are ≈ 4.2M tokens, which even the full model trains in ≈ 11 s at its
// full-batch speed (≈ 378k tokens/s on one H200). So the model keeps the record's size and structure (12 layers, d 768,
// 6 heads of 128, the null layer 0, the MLP-only layer 7, the 4-7 skip, value embeddings, backout, the window
// pattern): every variant flag then changes what it changes in the record. What shrinks is the batch and, with it, the
// step count: the record's 262,144 tokens a step would give 8 steps an epoch, too few for its schedules to have a
// shape. One packed stream of 16,384 tokens a step (one micro-step, 1/16 of the record's batch; 8 rows of 2048 under
// --data-layout rows) over 225 steps (≈ 1/10 of its 2225) is ≈ 1.8 epochs. A step of this batch took 74 ms on one H100 (bench/results/2026-11-25_h100),
// of which the host needs ≈ 50 ms to queue the kernels whatever the width, so a run is ≈ 15-20 s of training: room
// under the 45 s for more steps or a larger batch; a narrower model (modelDim 384, headDim 64 here) would save less
// than half of it. The windows stay in blocks of 128 tokens (documents here are at most 2000 characters, ≈ 450 tokens,
// so the long windows rarely reach past one). Step-counted schedule lengths scale with the steps (Muon's momentum
// warm-up 300 → 30, its cool-down 50 → 5: the 2025-08 recipe has none, so give --muon-cooldown-steps 0 with it);
// fractions (cooldown, extension, window stages) carry over as they are. The learning rates are the record's, tuned
// for a 16× larger batch: if runs are noisy or diverge, lower them here. On wasm the preset resolves and describes
// itself (a CPU smoke test); training a model with the GPT-2 vocabulary needs more than wasm's 4 GiB heap (d 384 at
// one sequence a micro-step aborts). Measured on one H200: 58.8 ms a step, 13.2 s of training a run; of the 85 runs of
// records/ablations/2026-12-02_seed-variants one diverged (a sas-p seed), none of the baseline's. To tune, change SHORT.
const SHORT = { steps: 225, tokens: 16_384 };
const shortSteps = (recordSteps: number) => Math.round((recordSteps * SHORT.steps) / DEFAULTS.numIterations);

export const PRESETS: Record<Exclude<Config['preset'], 'auto'>, Partial<Config>> = {
  speedrun: {},
  short: {
    corpus: 'builtin-gpt2', // fixed, so that a machine with FineWeb shards runs the same data
    numIterations: SHORT.steps,
    batchTokens: SHORT.tokens,
    streamLen: SHORT.tokens,
    muonWarmupSteps: shortSteps(DEFAULTS.muonWarmupSteps),
    muonCooldownSteps: shortSteps(DEFAULTS.muonCooldownSteps),
    valEvery: 75, // a few points of the curve; validation is not training time
    valTokens: 1 << 17, // all of the built-in val shard (115,004 tokens) that whole batches hold; a bounded cost on FineWeb
  },
  tiny: Object.fromEntries(KEYS.flatMap((k) => { const f: FlagSpec = FLAGS[k]; return f.tiny === undefined ? [] : [[k, f.tiny]]; })),
};

export class ConfigError extends Error {}
const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
const flagOf = (k: Key) => '--' + kebab(k);
/** A value as the command line spells it: on/off, a comma list, none for an empty list or path. */
const fmt = (v: unknown) => Array.isArray(v) ? (v.length ? v.join(',') : 'none') : typeof v === 'boolean' ? (v ? 'on' : 'off') : v === '' ? 'none' : String(v);
const inRange = (v: number, { min = -Infinity, max = Infinity, above = -Infinity, below = Infinity }: Range) => v >= min && v <= max && v > above && v < below;
/** A range in words: "≥ 1", "> 0", "in [0, 1)"; empty for any number. */
function rangeText({ min, max, above, below }: Range): string {
  if (max === undefined && below === undefined) return min !== undefined ? `≥ ${min}` : above !== undefined ? `> ${above}` : '';
  return `in ${min !== undefined ? `[${min}` : `(${above ?? '-∞'}`}, ${max !== undefined ? `${max}]` : `${below})`}`;
}

function parseValue(key: Key, raw: string): Config[Key] {
  const f: FlagSpec = FLAGS[key];
  const bad = (what: string) => new ConfigError(`${flagOf(key)} ${JSON.stringify(raw)}: expected ${what}`);
  if ('choices' in f) {
    if (key === 'backend' && raw === 'cpu') {
      throw new ConfigError('--backend cpu is not offered: tfjs\'s JavaScript cpu backend cannot finish one training step in minutes; --backend wasm runs on the CPU');
    }
    if (!f.choices.includes(raw)) throw bad(`one of ${f.choices.join(', ')}`);
    return raw;
  }
  switch (f.type) {
    case 'bool':
      if (['on', 'true', '1', 'yes'].includes(raw)) return true;
      if (['off', 'false', '0', 'no'].includes(raw)) return false;
      throw bad('on or off');
    case 'int': case 'float': {
      const v = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(v)) throw bad('a number');
      if ((f.type === 'int' && !Number.isInteger(v)) || !inRange(v, f)) throw bad(`${f.type === 'int' ? 'an integer' : 'a number'} ${rangeText(f)}`.trimEnd());
      return v;
    }
    case 'list': {
      if (raw === 'none' || raw === '') return [];
      const parts = raw.split(',').map((s) => Number(s.trim()));
      if (parts.some((v) => !Number.isInteger(v) || v < 0)) throw bad('a comma-separated list of non-negative integers');
      return parts;
    }
    case 'text':
      // An empty --resume would train from scratch without a word; an empty folder or pattern is no better.
      if (raw === '') throw bad('a non-empty value');
      return raw;
  }
}

/** Greedy word wrap to `width` columns: the first line indented by `first` spaces, the others by `rest`. */
function wrap(text: string, width: number, first: number, rest = first): string[] {
  const lines = [' '.repeat(first)];
  for (const word of text.split(' ')) {
    const line = lines[lines.length - 1];
    if (line.trim() && line.length + 1 + word.length > width) lines.push(' '.repeat(rest) + word);
    else lines[lines.length - 1] = line + (line.trim() ? ' ' : '') + word;
  }
  return lines;
}

/** --help: the flags by section, each with its value, default and tiny value, its help indented under it. */
export function helpText(width = process.stdout.columns || 100): string {
  const lines = ['Usage: npx tsx train_gpt.ts [--flag value ...]', '', ...wrap('Boolean flags take on/off (a bare --flag means on). ' +
    'Defaults are the speedrun baseline; --preset tiny overrides some (shown in brackets); --preset short --describe lists the short preset.', width, 0)];
  for (const [group, title] of Object.entries(GROUPS)) {
    lines.push('', `${title}:`);
    for (const key of KEYS) {
      const f: FlagSpec = FLAGS[key];
      if (f.group !== group) continue;
      const value = 'choices' in f ? f.choices.join('|') : f.type === 'bool' ? '[on|off]'
        : 'arg' in f ? f.arg : `${f.type === 'int' ? 'N' : 'X'} ${rangeText(f)}`.trimEnd();
      const tiny = f.tiny === undefined ? '' : ` [tiny: ${fmt(f.tiny)}]`;
      lines.push(...wrap(`${flagOf(key)} ${value} (default: ${fmt(f.default)})${tiny}`, width, 2, 6), ...wrap(f.help, width, 6));
    }
  }
  lines.push('', ...wrap('--help', width, 2), ...wrap('this text', width, 6));
  return lines.join('\n');
}

/** Parses argv into the explicit overrides (validated) without applying presets. */
export function parseFlags(argv: string[]): { overrides: Partial<Config>; help: boolean } {
  // Each flag reaches parseArgs as --flag=value: it refuses `--adam-lr -1` (a value that looks like a flag),
  // and a bare boolean flag (`--parallel`) means on.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const key = KEYS.find((k) => flagOf(k) === argv[i]);
    if (key && i + 1 < argv.length && !argv[i + 1].startsWith('--')) args.push(`${argv[i]}=${argv[++i]}`);
    else args.push(key && typeof DEFAULTS[key] === 'boolean' ? `${argv[i]}=on` : argv[i]);
  }
  const options: Record<string, { type: 'string' } | { type: 'boolean' }> = { help: { type: 'boolean' } };
  for (const k of KEYS) options[kebab(k)] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args, options, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new ConfigError(`${(e as Error).message.split('\n')[0]} (see --help)`);
  }
  const overrides: Partial<Config> = {};
  for (const k of KEYS) {
    const raw = values[kebab(k)];
    if (typeof raw === 'string') (overrides as Record<string, unknown>)[k] = parseValue(k, raw);
  }
  return { overrides, help: values.help === true };
}

/** The flags that turn the preset's values into cfg, for the run log: with --preset first, they repeat the run. */
function flagsLine(cfg: Config): string {
  const base: Partial<Config> = { ...DEFAULTS, ...RECIPES[cfg.recipe], ...(cfg.preset === 'auto' ? {} : PRESETS[cfg.preset]) };
  const quote = (s: string) => /\s/.test(s) ? JSON.stringify(s) : s;
  return KEYS.filter((k) => fmt(cfg[k]) !== fmt(base[k])).map((k) => `${flagOf(k)} ${quote(fmt(cfg[k]))}`).join(' ');
}

// Options that the shaped-attention blocks (sas, sas-p) do not define: they have no value or output
// matrices, no residual skips and softmax scores. A default is switched off (and said so); a value the
// user asked for is an error.
const SAS_EXCLUDES: Partial<Config> = {
  valueEmbeds: 0, attnGate: false, skip: 'none', backout: false, blockLambdas: false, parallel: false, attnScore: 'softmax',
};

/** The channels of a token that the smear gate and the attention output gate read (the record's x[..., :12]). */
const GATE_CHANNELS = 12;

/** Defaults ← recipe ← preset ← explicit flags, then checks every combination. Returns notes to print. */
export function resolveConfig(preset: Exclude<Config['preset'], 'auto'>, overrides: Partial<Config>): { cfg: Config; notes: string[] } {
  const cfg: Config = { ...DEFAULTS, ...RECIPES[overrides.recipe ?? DEFAULTS.recipe], ...PRESETS[preset], ...overrides, preset };
  const notes: string[] = [];
  const fail = (msg: string) => { throw new ConfigError(msg); };
  if (cfg.block !== 'prenorm') {
    for (const [k, v] of Object.entries(SAS_EXCLUDES) as [Key, unknown][]) {
      if (cfg[k] === v) continue;
      if (k in overrides) fail(`--block ${cfg.block} excludes ${flagOf(k)} ${fmt(cfg[k])} (shaped-attention blocks have no value/output matrices, skips or non-softmax scores)`);
      (cfg as Record<string, unknown>)[k] = v;
    }
    notes.push(`--block ${cfg.block}: value embeddings, attention gate, U-net skip, backout, block lambdas and --parallel are off`);
    if (cfg.canon.includes('B')) fail(`--block ${cfg.block} excludes Canon B (there is no q|k|v projection to convolve)`);
    if (cfg.kvHeads !== cfg.numHeads) fail(`--block ${cfg.block} excludes grouped-query attention (--kv-heads ${cfg.kvHeads} != --num-heads ${cfg.numHeads})`);
    if (cfg.numHeads * cfg.headDim !== cfg.modelDim) fail(`--block ${cfg.block} needs --num-heads × --head-dim = --model-dim (heads read the input directly)`);
  }
  const L = cfg.numLayers;
  if (cfg.numHeads % cfg.kvHeads) fail(`--num-heads ${cfg.numHeads} must be a multiple of --kv-heads ${cfg.kvHeads}`);
  if (cfg.headDim % 4) fail(`--head-dim ${cfg.headDim} must be a multiple of 4 (rotary pairs)`);
  if (cfg.bosToken >= cfg.vocabSize) fail(`--bos-token ${cfg.bosToken} must be below --vocab-size ${cfg.vocabSize}`);
  for (const k of ['noAttnLayers', 'noMlpLayers'] as const) for (const i of cfg[k]) if (i >= L) fail(`${flagOf(k)}: layer ${i} does not exist (--num-layers ${L})`);
  if (cfg.canon !== 'none' && (!/^[ABCD]+$/.test(cfg.canon) || new Set(cfg.canon).size !== cfg.canon.length)) fail(`--canon ${JSON.stringify(cfg.canon)}: expected none or a subset of ABCD such as AC`);
  if (cfg.skip !== 'none' && cfg.skip !== 'unet') {
    const m = /^(\d+)-(\d+)$/.exec(cfg.skip);
    if (!m || +m[1] >= +m[2] || +m[2] >= L) fail(`--skip ${JSON.stringify(cfg.skip)}: expected A-B with A < B < ${L}, unet or none`);
  }
  if (cfg.backout && cfg.backoutLayer >= L - 1) fail(`--backout-layer ${cfg.backoutLayer} must be below the last layer (${L - 1})`);
  if (cfg.windowPattern.length !== L || !/^[SL]+$/.test(cfg.windowPattern)) fail(`--window-pattern ${JSON.stringify(cfg.windowPattern)}: expected ${L} letters S or L`);
  if (!cfg.windowSchedule.length || cfg.windowSchedule.some((w) => w < 1)) fail('--window-schedule: expected blocks ≥ 1, e.g. 3,7,11,13');
  if (cfg.valueEmbeds * 2 > L) fail(`--value-embeds ${cfg.valueEmbeds}: at most ${Math.floor(L / 2)} tables for ${L} layers`);
  if (cfg.smear && cfg.modelDim < GATE_CHANNELS) fail(`--smear needs --model-dim ≥ ${GATE_CHANNELS} (its gate reads ${GATE_CHANNELS} channels)`);
  if (cfg.attnGate && cfg.modelDim < GATE_CHANNELS) fail(`--attn-gate needs --model-dim ≥ ${GATE_CHANNELS} (its gate reads ${GATE_CHANNELS} channels)`);
  if (cfg.parallel && cfg.block !== 'prenorm') fail('--parallel applies to --block prenorm only');
  batchPlan(cfg, 1); // the step's tokens split into whole streams (rows); the split over GPUs is checked at launch
  if (cfg.dataLayout === 'packed' && 'deviceBatch' in overrides) notes.push(`--device-batch ${cfg.deviceBatch} applies to --data-layout rows: a packed micro-step is one stream of --stream-len ${cfg.streamLen} tokens`);
  if (cfg.fp8Head && cfg.tieEmbed) {
    // A tied head is the embedding, N(0,1) entries: divided by the weight scale 2⁻⁹ they leave e4m3's range (NaN).
    if ('fp8Head' in overrides) fail(`--fp8-head needs an untied head (--tie-embed off): the embedding's entries exceed the FP8 head's weight range ±${FP8_WEIGHT_LIMIT}`);
    cfg.fp8Head = false;
    notes.push('--tie-embed: the head runs unquantised (--fp8-head off: the embedding\'s entries exceed the FP8 weight range)');
  }
  return { cfg, notes };
}

// -----------------------------------------------------------------------------
// Backends
//
// `cuda` is the project's own backend (backend-cuda/); `tensorflow` is tfjs-node-gpu, used only where a
// user installed it (its install downloads libtensorflow 2.9 for CUDA 11.2 from outside npm); `wasm`
// (XNNPACK matmuls, ~15× the pure-JS `cpu` backend) and `cpu` run anywhere.

interface CudaModule {
  cudaAvailability(): { ok: true } | { ok: false; reason: string };
  registerCudaBackend(opts?: { matmulPrecision?: 'bf16' | 'tf32' | 'fp32'; device?: number; matmulAutotune?: boolean }): Promise<void>;
  ncclUniqueId?(): string;
  ncclInit?(opts: { uniqueId: string; worldSize: number; rank: number }): void;
  ncclAllReduce?(tensors: tf.Tensor[], op: 'sum' | 'avg'): tf.Tensor[];
  ncclAllGather?(tensors: tf.Tensor[]): tf.Tensor[];
  ncclDestroy?(): void;
}
// Imported through a variable so that a checkout without the addon still type-checks and runs.
const importOptional = (spec: string): Promise<unknown> => import(spec);

/** Whether the cuda backend may choose cuBLASLt's algorithms by timing (backend-cuda/native/matmul.cc). Two ranks may then
 * choose differently: harmless where each rank's results are all-reduced or all-gathered, not where every rank computes
 * the same Muon updates for itself (--shard-optimizer off), whose copies of the weights would drift apart by rounding. */
export function matmulAutotuneAllowed(cfg: Config, worldSize: number): boolean {
  return worldSize === 1 || cfg.shardOptimizer;
}

async function loadBackend(name: Exclude<Config['backend'], 'auto'>, cfg: Config): Promise<void> {
  if (name === 'cuda') {
    let mod: CudaModule;
    try {
      mod = (await importOptional(path.join(REPO_ROOT, 'backend-cuda', 'index.ts'))) as CudaModule;
    } catch (e) {
      throw new Error(`the cuda backend could not be loaded (${(e as Error).message.split('\n')[0]})`);
    }
    const avail = mod.cudaAvailability();
    if (!avail.ok) throw new Error(`the cuda backend is unavailable: ${avail.reason}`);
    await mod.registerCudaBackend({ matmulPrecision: cfg.matmulPrecision, device: Number(process.env.LOCAL_RANK ?? 0),
      matmulAutotune: matmulAutotuneAllowed(cfg, worldFromEnv().size) });
  } else if (name === 'tensorflow') {
    let loaded = false;
    for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
      try { await importOptional(pkg); loaded = true; break; } catch { /* try the next one */ }
    }
    if (!loaded) {
      throw new Error('the tensorflow backend needs @tensorflow/tfjs-node-gpu (or @tensorflow/tfjs-node), which is not installed. ' +
        'Install it with `npm install @tensorflow/tfjs-node-gpu` (it downloads libtensorflow 2.9 for CUDA 11.2 + cuDNN 8 from outside the npm registry).');
    }
  } else if (name === 'wasm') {
    const { registerWasmKernels } = await import('./backend-wasm/index.ts');
    registerWasmKernels();
  }
  if (!(await tf.setBackend(name))) throw new Error(`backend ${name} failed to initialise`);
  await tf.ready();
}

/** Sets the tfjs backend; `auto` takes the fastest that loads. Returns the name and why. */
export async function selectBackend(cfg: Config): Promise<{ name: string; notes: string[] }> {
  if (cfg.backend !== 'auto') {
    await loadBackend(cfg.backend, cfg);
    return { name: cfg.backend, notes: [] };
  }
  const notes: string[] = [];
  for (const name of ['cuda', 'tensorflow', 'wasm'] as const) {
    try {
      await loadBackend(name, cfg);
      return { name, notes: [...notes, `backend auto: using ${name}`] };
    } catch (e) {
      notes.push(`backend auto: ${name} skipped (${(e as Error).message.split('\n')[0]})`);
    }
  }
  throw new Error(`no backend could be loaded:\n${notes.join('\n')}`);
}

const isGpuBackend = (name: string) => name === 'cuda' || name === 'tensorflow';

// -----------------------------------------------------------------------------
// The model: named pieces, each a function of tensors
//
// Weights are stored [in, out] so a linear layer is x @ W. Every 3-D activation is flattened to 2-D
// before a matmul: tfjs returns a wrongly shaped gradient for a 3-D × 2-D matMul.

/** What each layer has, derived once from the config. */
export interface LayerPlan { attn: boolean; mlp: boolean; long: boolean; valueEmbed: number /* table, or -1 */ }

export function layerPlan(cfg: Config): LayerPlan[] {
  const L = cfg.numLayers;
  const plan = Array.from({ length: L }, (_, i) => ({
    attn: !cfg.noAttnLayers.includes(i), mlp: !cfg.noMlpLayers.includes(i), long: cfg.windowPattern[i] === 'L', valueEmbed: -1,
  }));
  // Value embeddings (@KoszarskyB, after the value-residual paper arXiv 2410.17897): table k feeds layer k
  // and layer L-n+k, so the first and last layers share tables; a layer without attention takes none.
  const n = cfg.valueEmbeds;
  for (let k = 0; k < n; k++) for (const i of [k, L - n + k]) if (plan[i].attn) plan[i].valueEmbed = k;
  return plan;
}

/** U-net skips as [from, to] pairs: the output of layer `from` is added to the input of layer `to`. */
export function skipPairs(cfg: Config, plan: LayerPlan[]): [number, number][] {
  if (cfg.skip === 'none') return [];
  if (cfg.skip === 'unet') {
    // Full U-net (older speedrun form): encoder layer i feeds decoder layer L-1-i; a null first layer is skipped.
    const L = cfg.numLayers, pairs: [number, number][] = [];
    for (let i = plan.findIndex((p) => p.attn || p.mlp); i >= 0 && i < L - 1 - i; i++) pairs.push([i, L - 1 - i]);
    return pairs;
  }
  const [a, b] = cfg.skip.split('-').map(Number);
  return [[a, b]];
}

export interface ParamInfo {
  opt: 'muon' | 'adam'; lrMul: number; split?: number[] /* Muon: column blocks orthogonalised apart */;
  bf16?: boolean /* --bf16-state: the value, its gradient and its optimiser state rounded to bf16 */;
}
/** Whether a state tensor is stored in bf16 (§5, --bf16-state; made by roundToBf16, which the cuda backend stores in
 * bf16 only, as AdamUpdate stores what it rounds): a bf16 Adam parameter (slot undefined) and both moments of every Adam
 * parameter. The gates hold bf16 values in float32 storage: their NorMuon blocks' launches write float32. */
const stateStoredInBf16 = (cfg: Config, info: ParamInfo, slot?: number) =>
  info.opt === 'adam' && (slot === undefined ? !!info.bf16 : cfg.bf16State && slot < 2);

export interface Model {
  cfg: Config;
  plan: LayerPlan[];
  skips: [number, number][];
  params: Map<string, tf.Variable>;
  info: Map<string, ParamInfo>;
}

/** Builds the parameters with the speedrun's initialisation (model.md), deterministic for a seed. */
export function createModel(cfg: Config): Model {
  const plan = layerPlan(cfg), skips = skipPairs(cfg, plan);
  const params = new Map<string, tf.Variable>(), info = new Map<string, ParamInfo>();
  const { modelDim: d, numHeads: H, kvHeads: Hk, headDim: h, vocabSize: V } = cfg;
  let seed = cfg.seed * 1000003 + 17;
  // Uniform(±√3·σ) with σ = 0.5·d^-0.5: the speedrun's "improved init scale" (@YouJiacheng, @srashedll).
  const bound = Math.sqrt(3) * 0.5 * d ** -0.5;
  const muon = (split?: number[]): ParamInfo => ({ opt: 'muon', lrMul: 1, split });
  const scalar: ParamInfo = { opt: 'adam', lrMul: cfg.scalarLrMul };
  // The record trains the gate weights with NorMuon, as matrices (record-2025-11.md §6.1).
  const gate = { ...(cfg.gateOptimizer === 'muon' ? muon() : scalar), bf16: cfg.bf16State };
  type Draw = 'zeros' | 'normal' | 'uniform' | 'canon';
  // init: how the values are drawn, the values themselves, or a Draw per column block of pinfo.split (a merged
  // projection: each block drawn with a seed of its own, as the matrix it stands for would be alone, so that merging
  // matrices changes no initial value)
  const perColumnBlock = (init: Draw | Draw[] | number[]): init is Draw[] => Array.isArray(init) && typeof init[0] === 'string';
  const add = (name: string, shape: number[], init: Draw | Draw[] | number[], pinfo: ParamInfo) => {
    const value = tf.tidy(() => {
      const draw = (how: Draw | number[], dims: number[]) => {
        seed += 1;
        if (Array.isArray(how)) return tf.tensor(how, dims);
        if (how === 'zeros') return tf.zeros(dims);
        if (how === 'normal') return tf.randomNormal(dims, 0, 1, 'float32', seed);
        const b = how === 'uniform' ? bound : 0.5; // canon: PyTorch's default conv init for fan-in 4
        return tf.randomUniform(dims, -b, b, 'float32', seed);
      };
      const drawn = () => (perColumnBlock(init)
        ? tf.concat(init.map((how, i) => draw(how, [shape[0], pinfo.split![i]])), 1) : draw(init, shape));
      // A bf16 parameter's initial values on the bf16 grid, in the storage its optimiser keeps (the gates' in float32,
      // so that no reader widens them)
      if (!pinfo.bf16) return drawn();
      return stateStoredInBf16(cfg, pinfo) ? roundToBf16(drawn()) : roundTo(drawn(), BF16);
    });
    params.set(name, tf.variable(value, true));
    value.dispose();
    info.set(name, pinfo);
  };
  const canonInit = cfg.canonInit === 'zero' ? 'zeros' : 'canon';
  const qkvDim = (H + 2 * Hk) * h;
  const hidden = cfg.mlp === 'swiglu' ? Math.round((cfg.mlpRatio * d * 2) / 3) : cfg.mlpRatio * d;

  // §5: the record stores the embeddings, value embeddings, head and gates in bf16 (with --bf16-state).
  add('embed', [V, d], 'normal', { opt: 'adam', lrMul: cfg.embedLrMul, bf16: cfg.bf16State });
  for (let k = 0; k < cfg.valueEmbeds; k++) add(`value_embed.${k}`, [V, Hk * h], 'normal', { opt: 'adam', lrMul: cfg.embedLrMul, bf16: cfg.bf16State });
  if (cfg.smear) {
    add('smear_gate', [GATE_CHANNELS, 1], 'zeros', gate);
    add('smear_lambda', [1], 'zeros', scalar);
  }
  plan.forEach((lp, i) => {
    const p = `layer.${i}.`;
    if (!lp.attn && !lp.mlp) return; // a null layer has no parameters
    if (cfg.blockLambdas) add(p + 'lambdas', [2], [cfg.lambdaInit, 0], scalar);
    if (lp.attn && cfg.canon.includes('A')) add(p + 'canon_a', [d, 4], canonInit, scalar);
    if (lp.attn && cfg.block === 'prenorm') {
      add(p + 'qkv', [d, qkvDim], 'uniform', muon([H * h, Hk * h, Hk * h]));
      add(p + 'proj', [H * h, d], 'zeros', muon());
      add(p + 'sa_lambdas', [2], [0.5, 0.5], scalar);
      if (cfg.attnGate) add(p + 'attn_gate', [GATE_CHANNELS, H], 'zeros', gate);
      if (cfg.canon.includes('B')) add(p + 'canon_b', [qkvDim, 4], canonInit, scalar);
    } else if (lp.attn) {
      // Shaped attention (arXiv 2311.01906): W_Q zero so that A = I at init; no value or output matrices. W_Q and W_K
      // as one projection [W_Q | W_K] (one matmul each way), orthogonalised apart as the baseline's q, k, v blocks are.
      add(p + 'wqk', [d, 2 * H * h], ['zeros', 'uniform'], muon([H * h, H * h]));
      add(p + 'shape', [3, H], 'zeros', scalar); // α, β, γ per head, stored as offsets from 1
      add(p + 'beta_sa', [1], [1], scalar);
    }
    if (lp.mlp) {
      if (cfg.canon.includes('C')) add(p + 'canon_c', [d, 4], canonInit, scalar);
      const up = cfg.mlp === 'swiglu' ? 2 * hidden : hidden;
      add(p + 'w1', [d, up], 'uniform', muon(cfg.mlp === 'swiglu' ? [hidden, hidden] : undefined));
      add(p + 'w2', [hidden, d], 'zeros', muon());
      if (cfg.canon.includes('D')) add(p + 'canon_d', [up, 4], canonInit, scalar);
      if (cfg.block !== 'prenorm') add(p + 'beta_ff', [1], [0.1], scalar);
    }
  });
  if (cfg.skip === 'unet') add('skip_weights', [skips.length], Array(skips.length).fill(1), scalar);
  else if (skips.length) add('skip_weight', [1], [-1.5], scalar); // σ(-1.5) ≈ 0.18 at init
  if (cfg.backout) add('backout_lambda', [1], [cfg.backoutInit], scalar);
  if (!cfg.tieEmbed) add('head', [d, V], 'zeros', { opt: 'adam', lrMul: cfg.headLrMul, bf16: cfg.bf16State });
  return { cfg, plan, skips, params, info };
}

export function disposeModel(m: Model): void {
  for (const v of m.params.values()) v.dispose();
}

export const countParams = (m: Model) => [...m.params.values()].reduce((n, v) => n + v.size, 0);

// --- Fusion hook ---------------------------------------------------------------
// A backend replaces a composite below with a fused kernel by registering a kernel of the spec's name (its
// gradient is registered with the spec, backend-cuda/ops/<op>/<op>.ts). The composite stays the CPU
// implementation and the test oracle for the fused one, and runs wherever the kernel does not support a call.
let fusedKernels = true;
/** `--fused off` runs the composites on every backend: the A/B switch for a fused kernel's speed and results. */
export function useFusedKernels(on: boolean): void { fusedKernels = on; }
const notesSaid = new Set<string>();
/** A note on stdout, once per process (a fallback from a fused kernel to its composite, say). */
function noteOnce(note: string): void {
  if (!notesSaid.has(note)) { notesSaid.add(note); console.log(`note: ${note}`); }
}
/** The fused kernel's output (R = tf.Tensor[] for a kernel of several outputs), or null where the backend has no
 * such kernel or the kernel does not support this call (said once per kernel and reason). */
function runFused<R extends tf.Tensor | tf.Tensor[] = tf.Tensor, A extends object = tf.NamedAttrMap>(
  kernel: FusedKernelSpec<A>, inputs: tf.NamedTensorMap, attrs: A): R | null {
  if (!fusedKernels || !tf.getKernel(kernel.name, tf.getBackend())) return null;
  const supported = kernel.supports(inputs, attrs);
  if (supported !== true) {
    noteOnce(`${kernel.name}: ${supported}; the composite runs instead`);
    return null;
  }
  return tf.engine().runKernel(kernel.name, inputs, attrs as unknown as tf.NamedAttrMap) as R;
}

/** RMSNorm's epsilon (also the QK-norm inside a fused 'AttentionInputs'): PyTorch's default for F.rms_norm, the
 * fp32 machine epsilon (record-2025-11.md §3). */
const RMS_EPS = 2 ** -23;

/** RMSNorm over the last axis, no learned weight. */
export function rmsNorm(x: tf.Tensor, eps = RMS_EPS): tf.Tensor {
  return runFused(rmsNormKernel, { x }, { eps }) ?? x.mul(x.square().mean(-1, true).add(eps).rsqrt());
}

/** The first `channels` of each row of rmsNorm(x) (the mean over the whole row): one pass each way through a backend's
 * fused 'RMSNorm' (attr channels), which makes none of the row's other normed channels and, backward, no zero-padded
 * gradient of a slice. */
export function rmsNormLeading(x: tf.Tensor, channels: number): tf.Tensor {
  return runFused(rmsNormKernel, { x }, { eps: RMS_EPS, channels }) ?? leadingChannels(rmsNorm(x), channels);
}

/** [rmsNorm(x), its first `channels`]: one pass each way through a backend's fused 'RMSNorm' (attr leading), whose
 * gradient adds the leading channels' gradient as it reads the normed row's (no Slice, and no zero-padded [T, d]
 * gradient of one written, then read where the projection's gradient sums it). */
export function rmsNormWithLeading(x: tf.Tensor, channels: number): [tf.Tensor, tf.Tensor] {
  const fused = runFused<tf.Tensor[], RmsNormAttrs>(rmsNormKernel, { x }, { eps: RMS_EPS, leading: channels });
  if (fused) return [fused[0], fused[1]];
  const xn = rmsNorm(x);
  return [xn, leadingChannels(xn, channels)];
}

/** x's first `channels` along the last axis. */
function leadingChannels(x: tf.Tensor, channels: number): tf.Tensor {
  return x.slice(x.shape.map(() => 0), [...x.shape.slice(0, -1), channels]);
}

/** a·x + b·z for x and z of one shape and scalars a, b (shape []): block lambdas, the value-embedding mix,
 * skips and backout. One pass each way through a backend's fused 'ScaledAdd' (the composite: 3 kernels
 * forward, 6 backward, and it keeps x·a and z·b for the backward). A constant a (tf.scalar(1)) is fine: its
 * gradient is simply not used. */
export function scaledAdd(x: tf.Tensor, z: tf.Tensor, a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return runFused(scaledAddKernel, { x, z, a, b }, {}) ?? x.mul(a).add(z.mul(b));
}

/** ab[0]·x + ab[1]·z for a parameter ab [2] (the block lambdas): a backend's fused 'ScaledAddPair' reads both from ab, and its
 * gradient writes [da, db] as one tensor summed with ab's gradient so far (no Unpack, Pack or Add of them). */
export function scaledAddPair(x: tf.Tensor, z: tf.Tensor, ab: tf.Tensor): tf.Tensor {
  const fused = runFused(scaledAddPairKernel, { x, z, ab }, {});
  if (fused) return fused;
  const [a, b] = tf.unstack(ab);
  return scaledAdd(x, z, a, b);
}

/** The table's rows at ids [..., d]: tf.gather, through a backend's 'Embedding' where it has one, whose gradient adds into
 * the table's gradient so far (a gradient accumulation's sum) instead of a zeroed table and an Add. */
export function embed(table: tf.Tensor, ids: tf.Tensor): tf.Tensor {
  return runFused(embeddingKernel, { table, ids }, {}) ?? tf.gather(table, ids);
}

/** x[..., in] @ W[in, out] through a 2-D matmul, plus `residual` (x's shape with out) if given. */
export function linear(x: tf.Tensor, w: tf.Tensor, residual?: tf.Tensor): tf.Tensor {
  const [inDim, outDim] = w.shape, outShape = [...x.shape.slice(0, -1), outDim];
  // An activation: bf16 under bf16 matmul precision where the backend has 'Linear' (the record's, §5), which takes x as it is
  if (!residual) return runFused(linearKernel, { x, w }, {}) ?? tf.matMul(x.reshape([-1, inDim]), w).reshape(outShape);
  const x2 = x.reshape([-1, inDim]);
  // residual + x·W: the add rides in the matmul's epilogue where the backend has 'MatMulAdd' (no Add kernel
  // over the residual stream, and its gradient is dy itself).
  const fused = runFused(matMulAddKernel, { a: x2, b: w, c: residual.reshape([-1, outDim]) }, { alpha: 1, beta: 1, transposeA: false, transposeB: false });
  return fused ? fused.reshape(outShape) : residual.add(tf.matMul(x2, w).reshape(outShape));
}

/**
 * Per-forward tensors shared by the layers: document ids and the masks derived from them. The masks are built once and
 * outlive the tidy scope that first builds them (trunk's per-layer scopes) until dispose(); unmemoised() gives a view
 * that builds each where it is asked for instead (for a checkpointed function, which runs again in the backward).
 */
export class ForwardContext {
  readonly B: number;
  readonly T: number;
  private masks = new Map<number, { keep: tf.Tensor; bias: tf.Tensor }>();
  private shifts = new Map<number, tf.Tensor>();
  constructor(readonly docIds: tf.Tensor2D, private readonly memoised = true) {
    [this.B, this.T] = docIds.shape;
  }
  /** The same documents with no memoised masks: each built in, and owned by, the tidy scope that asks for it. */
  unmemoised(): ForwardContext { return new ForwardContext(this.docIds, false); }
  /** Frees the memoised masks (a kernel that saved one for its gradient holds its own reference). */
  dispose(): void {
    tf.dispose([...[...this.masks.values()].flatMap((m) => [m.keep, m.bias]), ...this.shifts.values()]);
  }
  private memo<K, V>(cache: Map<K, V>, key: K, build: () => V, tensors: (v: V) => tf.Tensor[]): V {
    if (!this.memoised) return build();
    let v = cache.get(key);
    if (v === undefined) {
      v = build();
      tensors(v).forEach((t) => tf.keep(t));
      cache.set(key, v);
    }
    return v;
  }
  /** [B,1,T,T] 0/1 mask (same document, causal, within `window` tokens) and its additive −1e9 bias. */
  mask(window: number): { keep: tf.Tensor; bias: tf.Tensor } {
    return this.memo(this.masks, window, () => {
      const same = tf.equal(this.docIds.expandDims(2), this.docIds.expandDims(1)).cast('float32');
      const keep = same.mul(bandMatrix(this.T, window)).expandDims(1);
      return { keep, bias: keep.sub(1).mul(1e9) };
    }, (m) => [m.keep, m.bias]);
  }
  /** [B,T,1]: 1 where token t−s exists and is in the same document as token t. */
  sameDocShift(s: number): tf.Tensor {
    return this.memo(this.shifts, s, () => {
      const prev = tf.pad(this.docIds, [[0, 0], [s, 0]], -1).slice([0, 0], [this.B, this.T]);
      return tf.equal(this.docIds, prev).cast('float32').expandDims(2);
    }, (m) => [m]);
  }
}

// Causal sliding-window bands are constants of (T, window): built once and kept.
const bands = new Map<string, tf.Tensor2D>();
function bandMatrix(T: number, window: number): tf.Tensor2D {
  const key = `${T}:${window}`;
  let band = bands.get(key);
  if (!band) {
    const v = new Float32Array(T * T);
    for (let i = 0; i < T; i++) for (let j = Math.max(0, i - window + 1); j <= i; j++) v[i * T + j] = 1;
    band = tf.keep(tf.tensor2d(v, [T, T]));
    bands.set(key, band);
  }
  return band;
}

/** x shifted right by s along time (zeros enter), with tokens from another document zeroed unless `acrossDocs`. */
function shiftTime(x: tf.Tensor, s: number, ctx: ForwardContext, acrossDocs = false): tf.Tensor {
  const [B, T, C] = x.shape;
  const shifted = tf.pad(x, [[0, 0], [s, 0], [0, 0]]).slice([0, 0, 0], [B, T, C]);
  return acrossDocs ? shifted : shifted.mul(ctx.sameDocShift(s));
}

/**
 * f(...xs) without keeping its intermediates for the backward: xs alone are kept, and the backward runs f again on a
 * tape of its own and differentiates that (activation checkpointing, Chen et al. 2016, arXiv 1604.06174). For a cheap
 * f whose intermediates are large. Every tensor f depends on that needs a gradient must be one of xs, and any other it
 * reads must outlive the backward (ForwardContext.unmemoised(): its masks are gone by then).
 */
export function checkpoint(f: (...xs: tf.Tensor[]) => tf.Tensor, ...xs: tf.Tensor[]): tf.Tensor {
  const run = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const inputs = args.slice(0, xs.length) as tf.Tensor[], save = args[xs.length] as tf.GradSaveFunc;
    save(inputs);
    return { value: f(...inputs), gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.grads(f)(saved, dy) };
  });
  return run(...xs);
}

/** Canon layer (Allen-Zhu, Physics of LMs 4.1): h_t + Σ_k W[:,k] ⊙ h_{t−3+k}, causal, per document, over h = x or,
 * with `headNorm` (Canon B under QK-norm), x with each head of `group` channels among its first `channels` RMS-normed,
 * or with `rowNorm` (Canon A and C), rmsNorm(x). One pass each way through a backend's fused 'CanonConv', which keeps
 * only x (the composite: three masked shifts of one padded copy of h; with a norm, checkpointed: the normed copy, and
 * for the heads the split and the concatenation, are made again in the backward instead of kept). `fromProjection`: x
 * is a projection's output (Canon B and D), whose gradient only that projection's matmuls read (the cuda kernel stores
 * it in bf16 under bf16 precision, as they read it). `relu2`: relu(the result)², Canon D and the relu2 MLP's activation
 * in one op (the composite: both checkpointed, made again in the backward instead of keeping the hidden layer). */
export function canon(x: tf.Tensor, w: tf.Tensor, ctx: ForwardContext, { headNorm, rowNorm = false, fromProjection = false, relu2 = false }:
  { headNorm?: { channels: number; group: number }; rowNorm?: boolean; fromProjection?: boolean; relu2?: boolean } = {}): tf.Tensor {
  const attrs = { normChannels: headNorm?.channels ?? 0, normGroup: headNorm?.group ?? 1, eps: RMS_EPS, rowNorm, leading: 0, xFromProjection: fromProjection, relu2 };
  const fused = runFused(canonConv, { x, w, docIds: ctx.docIds }, attrs);
  if (fused) return fused;
  if (rowNorm) return checkpoint((x, w) => canon(rmsNorm(x), w, ctx.unmemoised()), x, w);
  if (relu2) return checkpoint((x, w) => reluSquared(canon(x, w, ctx.unmemoised(), { fromProjection })), x, w);
  if (headNorm) {
    const { channels, group } = headNorm, [B, T, C] = x.shape;
    return checkpoint((x, w) => {
      const [normed, rest] = tf.split(x, [channels, C - channels], -1);
      return canon(tf.concat([rmsNorm(normed.reshape([B, T, -1, group])).reshape([B, T, channels]), rest], -1), w, ctx.unmemoised());
    }, x, w);
  }
  const [B, T, C] = x.shape, taps = tf.unstack(w, 1); // taps[k] multiplies h_{t−3+k}
  const padded = tf.pad(x, [[0, 0], [3, 0], [0, 0]]); // x shifted by s is its slice from 3 − s (shiftTime's, padded once)
  let y = x.mul(taps[3].add(1)); // the residual and the current-token tap
  for (let s = 1; s <= 3; s++) y = y.add(padded.slice([0, 3 - s, 0], [B, T, C]).mul(ctx.sameDocShift(s)).mul(taps[3 - s]));
  return y;
}

/** [canon() with the row norm (Canon A), rmsNorm(x)'s first `leading` channels] (the attention gate's input): one pass
 * each way through a backend's fused 'CanonConv' (attr leading), whose z is that norm; the composite norms the leading
 * channels on their own (rmsNormLeading). On their own they took a pass over x each way, and the backward's read the
 * residual stream's gradient so far and wrote it again whole, for 12 channels. */
export function canonWithLeading(x: tf.Tensor, w: tf.Tensor, ctx: ForwardContext, leading: number): [tf.Tensor, tf.Tensor] {
  const attrs: CanonAttrs = { normChannels: 0, normGroup: 1, eps: RMS_EPS, rowNorm: true, leading, xFromProjection: false, relu2: false };
  const fused = runFused<tf.Tensor[], CanonAttrs>(canonConv, { x, w, docIds: ctx.docIds }, attrs);
  if (fused) return [fused[0]!, fused[1]!];
  return [canon(x, w, ctx, { rowNorm: true }), rmsNormLeading(x, leading)];
}

/**
 * Token smear (modded-nanogpt): x[t] += λ·σ(gate(x[t][:12]))·x[t−1], never across a row or stream start. The
 * 2025-11 record applies it along its packed stream with no document mask (record-2025-11.md §3 step 2), so a
 * BOS receives the last token of the document before it; `acrossDocs` (--smear-across-docs) does the same, to
 * compute the record's maths. Off, as in the port's earlier recipe, a document start receives nothing.
 */
export function smear(x: tf.Tensor, gateW: tf.Tensor, lambda: tf.Tensor, ctx: ForwardContext, acrossDocs: boolean): tf.Tensor {
  // one pass each way through a backend's fused 'Smear' (the gate made again per row), instead of ten over [B, T, d]
  const fused = runFused(smearKernel, { x, w: gateW, lambda, docIds: ctx.docIds }, { acrossDocs });
  if (fused) return fused;
  const gate = tf.sigmoid(linear(leadingChannels(x, gateW.shape[0]!), gateW)).mul(lambda);
  return x.add(shiftTime(x, 1, ctx, acrossDocs).mul(gate));
}

// --- Rotary position embedding with YaRN -------------------------------------------

/** Rotary frequencies and the attention scale; YaRN rescales both when the window grows. */
export interface RopeState { freqs: Float32Array; attnScale: number; version: number }

export function initRope(cfg: Config): RopeState {
  const half = cfg.headDim / 2;
  const freqs = new Float32Array(half);
  // Half-truncated RoPE (@YouJiacheng): h/4 frequencies from 1 down to 1/1024 rotate; the other half of the
  // dims are stationary (frequency 0). `full` rotates every pair over the same range.
  const n = cfg.rotary === 'half' ? half / 2 : cfg.rotary === 'full' ? half : 0;
  for (let j = 0; j < n; j++) freqs[j] = (1 / 1024) ** (n > 1 ? j / (n - 1) : 0);
  return { freqs, attnScale: cfg.attnScale, version: 0 };
}

/** YaRN (arXiv 2309.00071, as in the speedrun): interpolate slow frequencies, sharpen the softmax. */
export function yarnExtend(rope: RopeState, oldWindow: number, newWindow: number, alpha = 1, beta = 32): RopeState {
  const scaling = oldWindow / newWindow;
  const freqs = rope.freqs.map((f) => {
    const rotations = (oldWindow * f) / (2 * Math.PI);
    const w = Math.min(1, Math.max(0, (rotations - alpha) / (beta - alpha)));
    return f * (scaling + w * (1 - scaling));
  });
  return { freqs, attnScale: rope.attnScale * (0.2 * Math.log(newWindow / oldWindow) + 1), version: rope.version + 1 };
}

const ropeTables = new Map<string, { cos: tf.Tensor; sin: tf.Tensor }>();
/** cos and sin of the rotation angles [1, T, 1, h/2], made once per (T, frequencies) and kept (callers never dispose
 * them). */
export function rotaryTables(rope: RopeState, T: number): { cos: tf.Tensor; sin: tf.Tensor } {
  const key = `${T}:${rope.freqs.join(',')}`;
  let tables = ropeTables.get(key);
  if (!tables) {
    const half = rope.freqs.length, c = new Float32Array(T * half), s = new Float32Array(T * half);
    for (let t = 0; t < T; t++) for (let j = 0; j < half; j++) { c[t * half + j] = Math.cos(t * rope.freqs[j]); s[t * half + j] = Math.sin(t * rope.freqs[j]); }
    tables = { cos: tf.keep(tf.tensor4d(c, [1, T, 1, half])), sin: tf.keep(tf.tensor4d(s, [1, T, 1, half])) };
    if (ropeTables.size > 16) { for (const t of ropeTables.values()) { t.cos.dispose(); t.sin.dispose(); } ropeTables.clear(); }
    ropeTables.set(key, tables);
  }
  return tables;
}

/** Rotates dims (j, j + h/2) of x [B,T,H,h] by angle t·freq_j. A backend's fused 'Rotary' does it in one
 * pass each way (the composite: split, 4 broadcast Multiplies, Add, Sub, concat, and as many backward). */
export function rotary(x: tf.Tensor, rope: RopeState): tf.Tensor {
  if (!rope.freqs.some((f) => f !== 0)) return x;
  const { cos, sin } = rotaryTables(rope, x.shape[1]!);
  const fused = runFused(rotaryKernel, { x, cos, sin }, {});
  if (fused) return fused;
  const [x1, x2] = tf.split(x, 2, -1);
  return tf.concat([x1.mul(cos).add(x2.mul(sin)), x2.mul(cos).sub(x1.mul(sin))], -1);
}

// --- Attention ------------------------------------------------------------------------

/**
 * Attention probabilities from scores s [.., T, T] under a 0/1 mask `keep` (its additive form `bias`).
 * softmax; softpick (arXiv 2504.20966): relu(e^s − 1) / (Σ|e^s − 1| + ε), rows need not sum to 1;
 * softmax1 ("attention is off by one"): e^s / (1 + Σ e^s). Masked entries count in no sum.
 */
export function attentionProbs(s: tf.Tensor, keep: tf.Tensor, bias: tf.Tensor, kind: Config['attnScore']): tf.Tensor {
  const masked = s.add(bias);
  if (kind === 'softmax') return tf.softmax(masked);
  if (kind === 'softpick') {
    // The shift m is arbitrary (it cancels up to ε); its floor keeps e^{−m} finite in a fully masked row.
    const m = tf.maximum(masked.max(-1, true), -60);
    const d = tf.exp(masked.sub(m)).sub(tf.exp(m.neg())).mul(keep); // e^{s−m} − e^{−m}, in the shifted frame
    return tf.relu(d).div(tf.abs(d).sum(-1, true).add(1e-6));
  }
  const m = tf.maximum(masked.max(-1, true), 0); // the extra zero logit takes part in the max
  const e = tf.exp(masked.sub(m));
  return e.div(tf.exp(m.neg()).add(e.sum(-1, true)));
}

/** [B,T,Hk,h] → [B,H,T,h]: heads first, each K/V head repeated for its group of query heads. */
function headsFirst(x: tf.Tensor, H: number): tf.Tensor {
  const [B, T, Hk, h] = x.shape;
  const t = x.transpose([0, 2, 1, 3]);
  if (Hk === H) return t;
  const group = H / Hk; // query head i reads K/V head ⌊i/group⌋ (a gather: tile has no rank-5 gradient in tfjs)
  return tf.gather(t, Array.from({ length: H }, (_, i) => Math.floor(i / group)), 1);
}

/**
 * Causal attention over q [B,T,H,h], k and v [B,T,Hk,h] within `window` tokens and one document.
 * The composite materialises the T×T scores; a backend's fused 'CausalAttention' kernel need not.
 */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, ctx: ForwardContext, window: number, scale: number,
  score: Config['attnScore']): tf.Tensor {
  const fused = runFused(causalAttention, { q, k, v, docIds: ctx.docIds }, { window, scale, score });
  if (fused) return fused;
  const H = q.shape[2]!;
  const { keep, bias } = ctx.mask(window);
  const s = tf.matMul(headsFirst(q, H), headsFirst(k, H), false, true).mul(scale);
  const y = tf.matMul(attentionProbs(s, keep, bias, score), headsFirst(v, H));
  return y.transpose([0, 2, 1, 3]);
}

/**
 * The attention's q [B,T,H,h], k and v [B,T,Hk,h] from the QKV projection qkv [B,T,(H+2·Hk)·h]: split into
 * heads, QK-norm (RMSNorm over h, if qkNorm), rotary on q and k, and v ← λa·v + λb·ve (value embeddings
 * ve [B,T,Hk,h] mixed in by learned per-layer lambdas [λa, λb]; λa·v alone where ve is null). Where lambdas is
 * null, qkv [B,T,(H+Hk)·h] holds no v heads (the shaped blocks' q and k projection; ve null too) and the result is
 * [q, k]. A backend's fused 'AttentionInputs' (with ve: 'AttentionInputsVE'; without v: 'AttentionInputsQK') reads
 * qkv once and writes q, k, v once, and its gradient writes dqkv in one pass; the composite (split, reshapes, 2 norms,
 * 2 rotaries, 3–4 elementwise kernels, and as many backward plus a concat) runs elsewhere and is its oracle.
 */
export function attentionInputs(qkv: tf.Tensor, rope: RopeState, ve: tf.Tensor | null, lambdas: tf.Tensor | null,
  o: { H: number; Hk: number; h: number; qkNorm: boolean }): tf.Tensor[] {
  const { H, Hk, h } = o, [B, T] = qkv.shape;
  const { cos, sin } = rotaryTables(rope, T);
  const attrs = { numHeads: H, kvHeads: Hk, qkNorm: o.qkNorm, eps: RMS_EPS };
  const fused = !lambdas ? runFused<tf.Tensor[], typeof attrs>(attentionInputsQK, { qkv, cos, sin }, attrs)
    : ve ? runFused<tf.Tensor[], typeof attrs>(attentionInputsVE, { qkv, cos, sin, lambdas, ve }, attrs)
    : runFused<tf.Tensor[], typeof attrs>(attentionInputsKernel, { qkv, cos, sin, lambdas }, attrs);
  if (fused) return fused;
  let [q, k, v] = tf.split(qkv, lambdas ? [H * h, Hk * h, Hk * h] : [H * h, Hk * h], -1);
  q = q.reshape([B, T, H, h]); k = k.reshape([B, T, Hk, h]);
  if (o.qkNorm) { q = rmsNorm(q); k = rmsNorm(k); } // QK-norm (@Grad62304977)
  q = rotary(q, rope); k = rotary(k, rope);
  if (!lambdas) return [q, k];
  const [la, lb] = tf.unstack(lambdas);
  v = v.reshape([B, T, Hk, h]);
  return [q, k, ve ? scaledAdd(v, ve, la, lb) : v.mul(la)];
}

/** Canon B and the attention's inputs: attentionInputs() of canon() on the QKV projection's output qkv, with the q and k
 * heads normed inside the Canon layer where qkNorm (Canon B mixes the QK-normed q, k and v over time, before rotary). One
 * pass each way through a backend's fused 'CanonAttentionInputs', which keeps only qkv: the Canon layer's output is neither
 * written nor read back, forward or backward (the two ops apart wrote it and its gradient, [B,T,(H+2·Hk)·h] each way). */
export function canonAttentionInputs(qkv: tf.Tensor, w: tf.Tensor, ctx: ForwardContext, rope: RopeState, ve: tf.Tensor | null,
  lambdas: tf.Tensor, o: { H: number; Hk: number; h: number; qkNorm: boolean }): tf.Tensor[] {
  const { H, Hk, h, qkNorm } = o, { cos, sin } = rotaryTables(rope, qkv.shape[1]!);
  const attrs = { numHeads: H, kvHeads: Hk, qkNorm, eps: RMS_EPS }, inputs = { x: qkv, w, docIds: ctx.docIds, cos, sin, lambdas };
  const fused = ve ? runFused<tf.Tensor[], typeof attrs>(canonAttentionInputsVE, { ...inputs, ve }, attrs)
    : runFused<tf.Tensor[], typeof attrs>(canonAttentionInputsKernel, inputs, attrs);
  if (fused) return fused;
  const mixed = canon(qkv, w, ctx, { headNorm: qkNorm ? { channels: (H + Hk) * h, group: h } : undefined, fromProjection: true });
  return attentionInputs(mixed, rope, ve, lambdas, { H, Hk, h, qkNorm: false });
}

/** Each head's output o [B,T,H,h] scaled by σ(its gate logit g [B,T,H]): one pass each way through a backend's fused 'HeadGate'. */
export function headGate(o: tf.Tensor, g: tf.Tensor): tf.Tensor {
  return runFused(headGateKernel, { o, g }, {}) ?? o.mul(tf.sigmoid(g).expandDims(3));
}

/** attention() with its output gated (headGate): one op where the backend fuses the two ('GatedCausalAttention' runs the
 * gate in the attention's own passes, and keeps o for the backward without making it a tensor). */
export function gatedAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, g: tf.Tensor, ctx: ForwardContext, window: number,
  scale: number, score: Config['attnScore']): tf.Tensor {
  return runFused(gatedCausalAttention, { q, k, v, docIds: ctx.docIds, g }, { window, scale, score })
    ?? headGate(attention(q, k, v, ctx, window, scale, score), g);
}

/** A sublayer's input: the residual stream x and its RMS norm, made on first use (Canon A and C norm x themselves). */
class NormedInput {
  private normed?: tf.Tensor;
  private lead?: { channels: number; values: tf.Tensor };
  constructor(readonly x: tf.Tensor) {}
  get xn(): tf.Tensor { return (this.normed ??= rmsNorm(this.x)); }
  /** xn, made with its first `channels` as a second output where it is not made yet (a sublayer that reads both). */
  xnWithLeading(channels: number): tf.Tensor {
    if (this.normed) return this.normed;
    const [xn, lead] = rmsNormWithLeading(this.x, channels);
    this.lead = { channels, values: lead };
    return (this.normed = xn);
  }
  /** The first `channels` of xn as another op made them (Canon A's: normedCanon), for leading(). */
  madeLeading(channels: number, values: tf.Tensor): void {
    this.lead = { channels, values };
  }
  /** xn's first `channels`: made with xn (xnWithLeading) or by Canon A (madeLeading), else a slice of xn where the sublayer
   * made it, else normed on their own. */
  leading(channels: number): tf.Tensor {
    if (this.lead?.channels === channels) return this.lead.values;
    return this.normed ? leadingChannels(this.normed, channels) : rmsNormLeading(this.x, channels);
  }
}

/** Canon A or C on the normed input: canon() norms the residual stream x itself (rowNorm), which the block keeps anyway,
 * so no normed copy is kept for the backward (a [T, d] tensor a position a layer), nor made again there. With `leading`
 * (Canon A under the attention gate), the normed input's first channels come with it, for input.leading(). */
function normedCanon(input: NormedInput, w: tf.Tensor, ctx: ForwardContext, leading = 0): tf.Tensor {
  if (!leading) return canon(input.x, w, ctx, { rowNorm: true });
  const [y, lead] = canonWithLeading(input.x, w, ctx, leading);
  input.madeLeading(leading, lead);
  return y;
}

/** Multi-head causal self-attention of the pre-norm block, with the speedrun's extras (plus `residual`, if given). */
function attentionSublayer(m: Model, i: number, input: NormedInput, ves: tf.Tensor[], ctx: ForwardContext, sched: AttnSchedule,
  residual?: tf.Tensor): tf.Tensor {
  const { cfg } = m, P = (n: string) => m.params.get(`layer.${i}.${n}`)!;
  const { B, T } = ctx, { numHeads: H, kvHeads: Hk, headDim: h } = cfg;
  // the gate's channels come with the normed input where the projection reads it, or with Canon A's (which norms it)
  const a = cfg.canon.includes('A') ? normedCanon(input, P('canon_a'), ctx, cfg.attnGate ? GATE_CHANNELS : 0)
    : cfg.attnGate ? input.xnWithLeading(GATE_CHANNELS) : input.xn;
  const qkv = linear(a, P('qkv')), ve = m.plan[i].valueEmbed >= 0 ? ves[m.plan[i].valueEmbed] : null, heads = { H, Hk, h, qkNorm: cfg.qkNorm };
  const [q, k, v] = cfg.canon.includes('B') ? canonAttentionInputs(qkv, P('canon_b'), ctx, sched.rope, ve, P('sa_lambdas'), heads)
    : attentionInputs(qkv, sched.rope, ve, P('sa_lambdas'), heads);
  const window = m.plan[i].long ? sched.longWindow : sched.shortWindow;
  // Sparse output gate: each head's output scaled by σ(linear of 12 input channels), so heads can switch off.
  const y = cfg.attnGate
    ? gatedAttention(q, k, v, linear(input.leading(GATE_CHANNELS), P('attn_gate')), ctx, window, sched.rope.attnScale, cfg.attnScore)
    : attention(q, k, v, ctx, window, sched.rope.attnScale, cfg.attnScore);
  return linear(y.reshape([B, T, H * h]), P('proj'), residual);
}

/**
 * The causal uniform average of shaped attention, C·x: each token's mean of x [B,T,...] over the tokens it sees
 * (the `window` latest, itself included, in its document: attention()'s keys). A composite that builds no T×T tensor:
 * window sums by doubling (windowSum), divided by the window sizes (the same sums over ones: exact integers). Prefix
 * sums (tf.cumsum) less a gather at each window's start would be fewer ops, but the cuda backend has no Cumsum kernel
 * (--fused off runs this there), and a difference of two prefix sums loses the digits the prefix has grown by. A
 * backend's fused 'ShapedMix' (shapedMix()) walks the windows instead, with the mix in the walk.
 */
export function windowMean(x: tf.Tensor, ctx: ForwardContext, window: number): tf.Tensor {
  const { B, T } = ctx, x3 = x.reshape([B, T, -1]);
  return windowSum(x3, ctx, window).div(windowSum(tf.ones([B, T, 1]), ctx, window)).reshape(x.shape);
}

/**
 * Σ of x [B,T,C] over each token's window: the `window` latest tokens of its document, itself included. A block
 * holds the sums over the len latest tokens; doubling it (block + block shifted by len: shiftTime never reads
 * across a document start) gives the 2·len latest, and the blocks of window's binary digits, each shifted by
 * the digits before it, add up to the window. About 2·log2(window) shifted adds; each output is a tree of at
 * most 2·log2(window) levels of fp32 adds of the x values themselves (no difference of large partial sums), so
 * its rounding error is at most about 2·log2(window)·2⁻²⁴·Σ|x|: 2e-6 of Σ|x| for any window up to 65,536.
 */
function windowSum(x: tf.Tensor, ctx: ForwardContext, window: number): tf.Tensor {
  const w = Math.min(window, ctx.T);
  let block = x, sum: tf.Tensor | null = null, offset = 0;
  for (let len = 1; len <= w; len *= 2) {
    if (w & len) {
      const part = offset ? shiftTime(block, offset, ctx) : block;
      sum = sum ? sum.add(part) : part;
      offset += len;
    }
    if (2 * len <= w) block = block.add(shiftTime(block, len, ctx));
  }
  return sum!;
}

/**
 * Shaped attention (He & Hofmann's SAS): α·X + β·softmax(QKᵀ/√h)·X − γ·C·X per head, X [B,T,H,h] the heads' input,
 * C the causal uniform average over the same keys (the window, one document), shape [3,H] the per-head α, β, γ
 * less 1, all three times `gain` if given (the block's β_SA, folded in so that no scaled copy is kept). The softmax
 * term is attention() with X as the values; shapedMix() adds the other two: with a backend's fused kernels neither
 * builds a T×T tensor.
 */
export function shapedAttention(x: tf.Tensor, q: tf.Tensor, k: tf.Tensor, shape: tf.Tensor, ctx: ForwardContext, window: number,
  gain?: tf.Tensor): tf.Tensor {
  const [, , , h] = x.shape;
  const mixed = attention(q, k, x, ctx, window, 1 / Math.sqrt(h!), 'softmax');
  return shapedMix(x, mixed, gain ? shape.add(1).mul(gain) : shape.add(1), ctx, window);
}

/**
 * α·x + β·m − γ·C·x per head for x, m [B,T,H,h], coef [3,H] (rows α, β, γ) and C windowMean()'s average. One pass
 * each way through a backend's fused 'ShapedMix': the forward walks x's windows and writes the mix as it goes (no C·x
 * tensor), the backward walks dy's windows the other way (Cᵀ·dy) and writes dx and dm (no gradient of C·x either).
 * The composite: windowMean(), per-head products, an Add and a Sub.
 */
export function shapedMix(x: tf.Tensor, m: tf.Tensor, coef: tf.Tensor, ctx: ForwardContext, window: number): tf.Tensor {
  // x as it is, not a reshape: the attention's gradient of its values (x too) is then summed into this one's
  const fused = runFused(shapedMixKernel, { x, m, coef, docIds: ctx.docIds }, { window });
  if (fused) return fused;
  const perHead = [...x.shape.slice(0, -2).map(() => 1), coef.shape[1]!, 1];
  const [alpha, beta, gamma] = tf.unstack(coef).map((t) => t.reshape(perHead));
  return x.mul(alpha).add(m.mul(beta)).sub(windowMean(x, ctx, window).mul(gamma));
}

function shapedAttentionSublayer(m: Model, i: number, input: NormedInput, ctx: ForwardContext, sched: AttnSchedule, gain: tf.Tensor): tf.Tensor {
  const { cfg } = m, P = (n: string) => m.params.get(`layer.${i}.${n}`)!;
  const { B, T } = ctx, { numHeads: H, headDim: h } = cfg;
  const a = cfg.canon.includes('A') ? normedCanon(input, P('canon_a'), ctx) : input.xn;
  // q and k from one projection, as the baseline's qkv without v: the attention's values are the heads' input itself
  const [q, k] = attentionInputs(linear(a, P('wqk')), sched.rope, null, null, { H, Hk: H, h, qkNorm: cfg.qkNorm });
  const window = m.plan[i].long ? sched.longWindow : sched.shortWindow;
  return shapedAttention(a.reshape([B, T, H, h]), q, k, P('shape'), ctx, window, gain).reshape([B, T, H * h]);
}

/** relu(x)², the relu2 MLP's activation: one pass each way through a backend's fused 'ReluSquared'. */
export function reluSquared(x: tf.Tensor): tf.Tensor {
  return runFused(reluSquaredKernel, { x }, {}) ?? tf.relu(x).square();
}

/** SwiGLU (Shazeer 2020) over the up projection's rows [g | u]: silu(g)·u. One pass each way through a backend's fused
 * 'Swiglu' (the composite splits x, and keeps σ(g) and g·σ(g) for its backward). */
export function swiglu(x: tf.Tensor): tf.Tensor {
  const fused = runFused(swigluKernel, { x }, {});
  if (fused) return fused;
  const [g, u] = tf.split(x, 2, -1);
  return g.mul(tf.sigmoid(g)).mul(u);
}

/** The MLP: relu(x·W1)²·W2 (arXiv 2109.08668) or SwiGLU, with optional Canon C and D (plus `residual`, if given). */
function mlpSublayer(m: Model, i: number, input: NormedInput, ctx: ForwardContext, residual?: tf.Tensor): tf.Tensor {
  const { cfg } = m, P = (n: string) => m.params.get(`layer.${i}.${n}`)!;
  const a = cfg.canon.includes('C') ? normedCanon(input, P('canon_c'), ctx) : input.xn;
  const up = linear(a, P('w1')), activation = (u: tf.Tensor) => (cfg.mlp === 'relu2' ? reluSquared(u) : swiglu(u));
  // Canon D with the activation: with relu2 one op that keeps only its input; with SwiGLU checkpointed, so that the
  // conv's output, as large as the hidden layer, is made again in the backward instead of kept
  const hidden = !cfg.canon.includes('D') ? activation(up)
    : cfg.mlp === 'relu2' ? canon(up, P('canon_d'), ctx, { fromProjection: true, relu2: true })
    : checkpoint((u, w) => activation(canon(u, w, ctx.unmemoised(), { fromProjection: true })), up, P('canon_d'));
  return linear(hidden, P('w2'), residual);
}

/** Window sizes (tokens) and rotary state for one forward pass. */
export interface AttnSchedule { shortWindow: number; longWindow: number; rope: RopeState }

/** One transformer block on the residual stream x. */
function block(m: Model, i: number, x: tf.Tensor, ves: tf.Tensor[], ctx: ForwardContext, sched: AttnSchedule): tf.Tensor {
  const { cfg } = m, lp = m.plan[i];
  if (cfg.block === 'prenorm') {
    if (cfg.parallel) {
      // PaLM's parallel block: both sublayers read one normed input (one norm serves both: it has no weight).
      const input = new NormedInput(x);
      let y = x;
      if (lp.attn) y = attentionSublayer(m, i, input, ves, ctx, sched, y);
      if (lp.mlp) y = mlpSublayer(m, i, input, ctx, y);
      return y;
    }
    // The residual adds ride in the sublayers' output projections (linear's residual).
    if (lp.attn) x = attentionSublayer(m, i, new NormedInput(x), ves, ctx, sched, x);
    if (lp.mlp) x = mlpSublayer(m, i, new NormedInput(x), ctx, x);
    return x;
  }
  const P = (n: string) => m.params.get(`layer.${i}.${n}`)!;
  // x' + β_FF·MLP as one ScaledAdd (1·x' + β_FF·MLP: no scaled copy of the MLP's output kept for the backward)
  const plusMlp = (xa: tf.Tensor, mlp: () => tf.Tensor) => lp.mlp ? scaledAdd(xa, mlp(), tf.scalar(1), P('beta_ff').reshape([])) : xa;
  if (cfg.block === 'sas') {
    // SAS: x' = β_SA·ShapedAttn(norm(x)); out = x' + β_FF·MLP(norm(x')). A layer without attention keeps x' = x.
    const xa = lp.attn ? shapedAttentionSublayer(m, i, new NormedInput(x), ctx, sched, P('beta_sa')) : x;
    return plusMlp(xa, () => mlpSublayer(m, i, new NormedInput(xa), ctx));
  }
  // SAS-P: out = β_SA·ShapedAttn(norm(x)) + β_FF·MLP(norm(x)); without attention, x stands in for A = I. The MLP runs
  // first so that its backward runs last: its input gradient is then summed into the attention's (MatMulAdd), not
  // the attention's (a Reshape's gradient, which cannot sum) added to it by a separate Add.
  const input = new NormedInput(x);
  const mlp = lp.mlp ? mlpSublayer(m, i, input, ctx) : null;
  const xa = lp.attn ? shapedAttentionSublayer(m, i, input, ctx, sched, P('beta_sa')) : x;
  return plusMlp(xa, () => mlp!);
}

/**
 * Token ids [B,T] → final normed hidden states [B,T,d]. Each layer runs in its own tidy scope, so that only the layers'
 * outputs and (under a gradient) what the tape saves stay alive: a 262,144-token validation stream's intermediates of
 * all layers at once would not fit on a GPU, and in training a layer's unsaved intermediates (shaped attention's γ·X
 * and C·X, a Reshape's input: tfjs_node.ts saves only its shape) would otherwise live until the whole forward is done.
 */
export function trunk(m: Model, inputs: tf.Tensor2D, docIds: tf.Tensor2D, sched: AttnSchedule): tf.Tensor {
  const { cfg, plan } = m, ctx = new ForwardContext(docIds);
  const { B, T } = ctx, d = cfg.modelDim, p = (n: string) => m.params.get(n)!;
  const ids = inputs.reshape([-1]);
  let x = embed(p('embed'), ids).reshape([B, T, d]);
  if (cfg.smear) x = smear(x, p('smear_gate'), p('smear_lambda'), ctx, cfg.smearAcrossDocs);
  x = rmsNorm(x);
  const x0 = x;
  const ves = Array.from({ length: cfg.valueEmbeds }, (_, k) => embed(p(`value_embed.${k}`), ids).reshape([B, T, cfg.kvHeads, cfg.headDim]));
  const outputs = new Map<number, tf.Tensor>();
  let backout: tf.Tensor | null = null;
  const layer = (i: number, x: tf.Tensor): tf.Tensor => {
    m.skips.forEach(([from, to], j) => {
      if (to !== i) return;
      // Refined skip: a sigmoid gate (init σ(−1.5) ≈ 0.18); the full U-net uses plain learned weights.
      const w = cfg.skip === 'unet' ? p('skip_weights').slice([j], [1]) : tf.sigmoid(p('skip_weight'));
      x = scaledAdd(x, outputs.get(from)!, tf.scalar(1), w.reshape([]));
    });
    if (plan[i].attn || plan[i].mlp) {
      if (cfg.blockLambdas) {
        // x ← a·x + b·x0: each block re-reads the embedding; a (init 1.1) rescales the stream.
        x = scaledAddPair(x, x0, p(`layer.${i}.lambdas`));
      }
      x = block(m, i, x, ves, ctx, sched);
    }
    return x;
  };
  for (let i = 0; i < cfg.numLayers; i++) {
    const input = x;
    x = tf.tidy(() => layer(i, input));
    if (m.skips.some(([from]) => from === i)) outputs.set(i, x);
    if (cfg.backout && i === cfg.backoutLayer) backout = x;
  }
  // Backout: remove a learned share of an early layer's output that the head should not see.
  if (backout) x = scaledAdd(x, backout, tf.scalar(1), p('backout_lambda').reshape([]).neg());
  ctx.dispose();
  return rmsNorm(x);
}

/** Logit soft cap: keeps logits bounded so the head cannot grow them without limit. */
export function logitSoftcap(logits: tf.Tensor, cfg: Config): tf.Tensor {
  if (cfg.logitCap === 'sigmoid') return tf.sigmoid(logits.div(cfg.logitCapTemp)).mul(cfg.logitCapScale);
  if (cfg.logitCap === 'tanh') return tf.tanh(logits.div(cfg.logitCapScale)).mul(cfg.logitCapScale);
  return logits;
}

// --- The head in FP8 (record-2025-11.md §3.3) ---------------------------------------------------------------
// In training the record's head matmul z = x·W runs on FP8 tensor cores: x and W divided by fixed scales and rounded
// to e4m3, the logits' gradient g to e5m2; the products, summed in fp32, are scaled back. The scales bound the inputs:
// an RMS-normed x has |x_j| ≤ √d (x_s = √d/448 maps that to e4m3's largest value, 448); the summed loss has
// |g| ≤ 1 (grad_s = 1/448); W/2⁻⁹ stays in range while |W| < 0.906. Validation runs the plain head.
// The record rounds z and dx to bf16 (its activations are bf16); dW is fp32 there. The cuda backend's bf16 mode
// writes z in bf16 as the record does (the cross-entropy reads it so); dx and dW stay float32 like this port's other
// activations, and the composite (the CPU backends' emulation) keeps z in float32.

/** An FP8 format: mantissa bits, the smallest normal exponent, the largest finite value and what a value that rounds
 * past it becomes. e4m3 is e4m3fn, which has no infinity: overflow is NaN, as PyTorch's non-saturating float8_e4m3fn
 * cast (and CUDA's __NV_NOSAT) gives; e5m2 overflows to ±inf as IEEE formats do. */
export const FP8 = {
  e4m3: { mantissa: 3, minExp: -6, max: 448, overflow: NaN },
  e5m2: { mantissa: 2, minExp: -14, max: 57344, overflow: Infinity },
} as const;

export const fp8HeadScales = (d: number): Fp8MatmulAttrs => ({ xScale: Math.sqrt(d) / 448, wScale: 2 ** -9, gradScale: 1 / 448 });
/** The FP8 head's weights must stay below this in magnitude: beyond, W/2⁻⁹ rounds past e4m3's 448 (to NaN). */
const FP8_WEIGHT_LIMIT = 464 * 2 ** -9;

/**
 * x rounded to the nearest value of an FP8 format (ties to even, subnormals included); a value that rounds past the
 * largest finite one, ±inf and NaN give the format's overflow (e4m3: NaN, e5m2: ±inf; NaN stays NaN). float32 tfjs ops,
 * so every backend computes it alike: the FP8 head's emulation, and the oracle of the cuda kernels. The sign of a zero
 * is not kept.
 */
export function roundToFp8(x: tf.Tensor, format: keyof typeof FP8): tf.Tensor {
  return roundTo(x, FP8[format]);
}

/** bf16 (8 exponent bits, 7 mantissa bits): what the record stores its embeddings, head, gates and Adam moments in (§5). */
export const BF16 = { mantissa: 7, minExp: -126, max: 3.3895313892515355e38, overflow: Infinity } as const;

/**
 * x rounded to the nearest bf16 value (ties to even), kept in float32: one fused 'RoundBf16' pass where the backend
 * has it, else roundTo().
 */
export function roundToBf16(x: tf.Tensor): tf.Tensor {
  return runFused(roundBf16Kernel, { x }, {}) ?? roundTo(x, BF16);
}

/** x rounded to a floating-point format's grid in float32 tfjs ops (see roundToFp8). */
function roundTo(x: tf.Tensor, { mantissa: M, minExp, max, overflow }: { mantissa: number; minExp: number; max: number; overflow: number }): tf.Tensor {
  // past the range larger values need no grid (2¹²⁷ for bf16, whose range is float32's: the largest power of two)
  const top = Math.min(2 ** (Math.floor(Math.log2(max)) + 1), 2 ** 127);
  return tf.tidy(() => {
    const a = tf.abs(x);
    const am = tf.where(a.equal(a), tf.minimum(a, top), tf.fill(a.shape, top));  // NaN and ∞ → top: set below
    // P = 2^e ≤ am < 2^(e+1), exactly, without a logarithm (log2 lands on either side of a power of two): Rump's
    // NextPowerTwo (Rump, Ogita, Oishi 2008, alg. 3.5) in float32 round-to-nearest arithmetic: with q = 2²⁴·am,
    // (q + am) − q is the smallest power of two ≥ am, or 0 where am is itself a power of two (or 0); halved where above.
    // Values from 2⁶⁴ (bf16 only) are searched scaled by 2⁻⁶⁴, exactly, so that 2²⁴·am stays finite.
    const down = tf.where(am.greaterEqual(2 ** 64), tf.fill(a.shape, 2 ** -64), tf.onesLike(am)), ams = am.mul(down);
    const q = ams.mul(2 ** 24), ceil = q.add(ams).sub(q), pow = tf.where(ceil.equal(0), ams, ceil).div(down);
    // below 2^minExp the subnormals keep its spacing (this also covers a backend that flushes tiny values to zero)
    const P = tf.maximum(tf.where(pow.greater(am), pow.mul(0.5), pow), 2 ** minExp);
    const spacing = P.mul(2 ** -M);  // of the format's grid around a
    const r = tf.round(a.div(spacing)).mul(spacing);  // exact: spacing is a power of two; ties to even
    const mag = tf.where(r.greater(max), tf.fill(a.shape, overflow), r);  // NaN: r is NaN
    return tf.where(x.less(0), mag.neg(), mag);
  });
}

/** The FP8 head as tfjs ops: the composite of 'Fp8Matmul' (backend-cuda/ops/fp8_matmul), its gradient straight
 * through the rounding as the record's (the matmul's gradient with the quantised operands). */
export function fp8HeadComposite(x: tf.Tensor2D, w: tf.Tensor2D, { xScale, wScale, gradScale }: Fp8MatmulAttrs): tf.Tensor2D {
  const head = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, w, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const x8 = roundToFp8(x.div(xScale), 'e4m3'), w8 = roundToFp8(w.div(wScale), 'e4m3');
    save([x8, w8]);
    return {
      value: tf.matMul(x8 as tf.Tensor2D, w8 as tf.Tensor2D).mul(xScale * wScale),
      gradFunc: (dy: tf.Tensor, [x8, w8]: tf.Tensor[]) => {
        const g8 = roundToFp8(dy.div(gradScale), 'e5m2') as tf.Tensor2D;
        return [tf.matMul(g8, w8 as tf.Tensor2D, false, true).mul(gradScale * wScale), tf.matMul(x8 as tf.Tensor2D, g8, true, false).mul(xScale * gradScale)];
      },
    };
  });
  return head(x, w) as tf.Tensor2D;
}

/** x [N, d] · W [d, V] in FP8 (§3.3): the backend's 'Fp8Matmul' where it has one that takes the shapes, else the
 * emulation (said once). */
export function fp8Head(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const attrs = fp8HeadScales(x.shape[1]);
  const fused = runFused<tf.Tensor2D, Fp8MatmulAttrs>(fp8MatmulKernel, { x, w }, attrs);
  if (fused) return fused;
  if (!tf.getKernel(fp8MatmulKernel.name, tf.getBackend())) {
    noteOnce(`the ${tf.getBackend()} backend has no FP8 kernels: the head's FP8 matmul (--fp8-head) is emulated by rounding in float32 ops (the same values, slower)`);
  }
  return fp8HeadComposite(x, w, attrs);
}

/** Why an FP8 head could have made the loss non-finite, for the message that stops the run: its weights' range. */
export function fp8HeadDiagnosis(m: Model): string {
  const w = m.params.get('head');
  if (!w) return '';
  const [maxAbs, nan] = tf.tidy(() => [w.abs().max(), w.notEqual(w).any()]).map((t) => { const v = t.dataSync()[0]; t.dispose(); return v; });
  const range = `±${FP8_WEIGHT_LIMIT} (464·2⁻⁹, beyond which the e4m3 cast gives NaN)`;
  const state = nan ? 'its weights hold NaN (a non-finite update came before)'
    : maxAbs > FP8_WEIGHT_LIMIT ? `its largest weight, ${maxAbs.toPrecision(4)}, is past ${range}` : `its weights are within ${range}`;
  return `the head runs in FP8 (--fp8-head on) and ${state}; --fp8-head off runs it unquantised`;
}

/** Hidden states [.., d] → raw logits [N, V], before the soft cap (unquantised: the FP8 head is fp8HeadLoss's). */
export function rawLogits(m: Model, x: tf.Tensor): tf.Tensor2D {
  const x2 = x.reshape([-1, m.cfg.modelDim]) as tf.Tensor2D;
  if (m.cfg.tieEmbed) return tf.matMul(x2, m.params.get('embed')!, false, true);
  return tf.matMul(x2, m.params.get('head')!);
}

/** Hidden states [.., d] → capped logits [N, V]. */
export function headLogits(m: Model, x: tf.Tensor): tf.Tensor2D {
  return logitSoftcap(rawLogits(m, x), m.cfg) as tf.Tensor2D;
}

/** Cross-entropy of logits [N,V] against int32 targets [N], summed or averaged over tokens. */
export function crossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, reduction: 'sum' | 'mean'): tf.Scalar {
  const [N, V] = logits.shape;
  const picked = tf.gather(logits.reshape([-1]), targets.add(tf.range(0, N * V, V, 'int32')));
  const losses = tf.logSumExp(logits, 1).sub(picked);
  return (reduction === 'sum' ? losses.sum() : losses.mean()) as tf.Scalar;
}

export interface Batch { inputs: tf.Tensor2D; targets: tf.Tensor2D; docIds: tf.Tensor2D }

/** The training objective: summed token losses in training (as the speedrun), mean in validation. The summed loss's
 * head runs in FP8 under --fp8-head; validation's runs unquantised (record-2025-11.md §3.3). */
export function modelLoss(m: Model, batch: Batch, sched: AttnSchedule, reduction: 'sum' | 'mean'): tf.Scalar {
  const x = trunk(m, batch.inputs, batch.docIds, sched), targets = batch.targets.reshape([-1]) as tf.Tensor1D;
  if (reduction === 'sum' && m.cfg.fp8Head) return fp8HeadLoss(x.reshape([-1, m.cfg.modelDim]) as tf.Tensor2D, m.params.get('head') as tf.Tensor2D, targets, m.cfg);
  return softcapCrossEntropy(rawLogits(m, x), targets, m.cfg, reduction);
}

/** Rows of logits per chunk of the fused 'Fp8HeadLoss': its scratch is 4096 × 50,304 × 8 bytes (the float32 logits,
 * their gradient, its two FP8 layouts) = 1.6 GB, against 13 GB for the whole [32,768, V] logits, gradient and codes of
 * the two-op path, for 8 chunks' launches instead of 1. */
const HEAD_CHUNK_ROWS = 4096;

/** The training loss (summed) of hidden states x [N, d] through the FP8 head w [d, V] and the soft cap. One kernel where
 * the backend has 'Fp8HeadLoss' (the gradients computed with the loss, chunkRows rows of logits at a time: no [N, V]
 * buffer at all); else the FP8 head, then the soft-capped cross-entropy, its composite. */
export function fp8HeadLoss(x: tf.Tensor2D, w: tf.Tensor2D, targets: tf.Tensor1D, cfg: Config, chunkRows = HEAD_CHUNK_ROWS): tf.Scalar {
  const fused = runFused<tf.Scalar, Fp8HeadLossAttrs>(fp8HeadLossKernel, { x, w, targets },
    { ...fp8HeadScales(x.shape[1]), cap: cfg.logitCap, scale: cfg.logitCapScale, temp: cfg.logitCapTemp, chunkRows });
  return fused ?? softcapCrossEntropy(fp8Head(x, w), targets, cfg, 'sum');
}

/** Cross-entropy of soft-capped logits; one fused kernel ('SoftcapCrossEntropy') where the backend has it. */
export function softcapCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, cfg: Config, reduction: 'sum' | 'mean'): tf.Scalar {
  const fused = runFused(softcapCrossEntropyKernel, { logits, targets }, { cap: cfg.logitCap, scale: cfg.logitCapScale, temp: cfg.logitCapTemp, reduction });
  return (fused as tf.Scalar | null) ?? crossEntropy(logitSoftcap(logits, cfg) as tf.Tensor2D, targets, reduction);
}

// -----------------------------------------------------------------------------
// Optimisers and schedules
//
// Muon (https://kellerjordan.github.io/posts/muon/) for the hidden matrices: SGD-Nesterov momentum whose
// update is replaced by the nearest semi-orthogonal matrix; NorMuon then evens out the
// neurons' update sizes, as the 2025-11 record does (../shared/reference/record-2025-11.md §6). Adam for
// embeddings, head and scalars.

const NS5 = [3.4445, -4.775, 2.0315] as const;
// Polar Express (arXiv 2505.16932): per-iteration coefficients for 5 steps (safety 2e-2, cushion 2).
const POLAR_EXPRESS: readonly (readonly [number, number, number])[] = [
  [8.156554524902461, -22.48329292557795, 15.878769915207462],
  [4.042929935166739, -2.808917465908714, 0.5000178451051316],
  [3.8916678022926607, -2.772484153217685, 0.5060648178503393],
  [3.285753657755655, -2.3681294933425376, 0.46449024233003106],
  [2.3465413258596377, -1.7097828382687081, 0.42323551169305323],
];

/** alpha·(a @ op(b)) + beta·c over a batch: one cuBLASLt call with c in its epilogue where the backend
 * registers 'MatMulAdd' (the composite scales the product, scales c and adds: three more passes). */
export function matMulAdd(a: tf.Tensor3D, b: tf.Tensor3D, c: tf.Tensor3D, alpha: number, beta: number, transposeB = false): tf.Tensor3D {
  const fused = runFused<tf.Tensor3D, MatMulAddAttrs>(matMulAddKernel, { a, b, c }, { alpha, beta, transposeA: false, transposeB });
  if (fused) return fused;
  const product = tf.matMul(a, b, false, transposeB);
  return (alpha === 1 ? product : product.mul(alpha)).add(c.mul(beta)) as tf.Tensor3D;
}

/**
 * Approximately U·Vᵀ of each G = U·S·Vᵀ in a batch [n, r, c] with r ≤ c (wide), by 5 odd-polynomial
 * iterations X ← aX + (bA + cA²)X with A = XXᵀ, the smaller Gram matrix. One batched matmul per term
 * serves every matrix of a shape: a few large GEMMs instead of many small ones.
 */
export function orthogonalizeBatch(G: tf.Tensor3D, kind: Config['orthogonalizer'] = 'ns5'): tf.Tensor3D {
  return tf.tidy(() => {
    // Scale so every singular value is ≤ 1, where the polynomials converge.
    const norm = G.square().sum([1, 2], true).sqrt().mul(kind === 'polar' ? 1.02 : 1).add(kind === 'polar' ? 1e-6 : 1e-7);
    let X = G.div(norm) as tf.Tensor3D;
    const coeffs = kind === 'polar' ? POLAR_EXPRESS : Array(5).fill(NS5);
    for (const [a, b, c] of coeffs) {
      const A = tf.matMul(X, X, false, true) as tf.Tensor3D;
      const Bm = matMulAdd(A, A, A, c, b); // bA + cA²
      X = matMulAdd(Bm, X, X, 1, a); // aX + BX
    }
    return X;
  });
}

/** orthogonalizeBatch for one matrix of any orientation. */
export function orthogonalize(G: tf.Tensor2D, kind: Config['orthogonalizer'] = 'ns5'): tf.Tensor2D {
  return tf.tidy(() => {
    const tall = G.shape[0] > G.shape[1];
    const X = orthogonalizeBatch((tall ? G.transpose() : G).expandDims(0) as tf.Tensor3D, kind).squeeze([0]) as tf.Tensor2D;
    return tall ? X.transpose() : X;
  });
}

/** The steps before the extension (record-2025-11.md §4.3, §7: 2185 of 2225); the lr cooldown and the window
 * stages span these, the extension trains on at the lr floor with a longer window. */
export function scheduledSteps(cfg: Config): number {
  return Math.max(1, cfg.numIterations - Math.round(cfg.numIterations * cfg.extensionFrac));
}

/** Learning-rate multiplier (§7): stable, then linear down to `cooldownFloor` over the last `cooldownFrac` of the
 * scheduled steps. x stops at 0.9999, as in the record, so the extension stays just above the floor. */
export function lrScale(step: number, cfg: Config): number {
  const x = Math.min(0.9999, step / scheduledSteps(cfg));
  if (x < 1 - cfg.cooldownFrac) return 1;
  return cfg.cooldownFloor + ((1 - cfg.cooldownFloor) * (1 - x)) / cfg.cooldownFrac;
}

/** Muon momentum (§7): linear warm-up from the start value (0.85 → 0.95 over 300 steps), and back down over the
 * last `muonCooldownSteps` of the run (0.95 → 0.852 at the last of 2225 steps). */
export function muonMomentumAt(step: number, cfg: Config): number {
  const warm = Math.min(1, step / Math.max(1, cfg.muonWarmupSteps));
  const cool = cfg.muonCooldownSteps > 0 ? Math.max(0, step - (cfg.numIterations - cfg.muonCooldownSteps)) / cfg.muonCooldownSteps : 0;
  return cfg.muonMomentumStart + (warm - Math.min(1, cool)) * (cfg.muonMomentum - cfg.muonMomentumStart);
}

/** The long attention window (in blocks) at a step (§4.3): equal stages of the scheduled steps, then the extension's. */
export function longWindowBlocks(step: number, cfg: Config): number {
  const S = scheduledSteps(cfg);
  return step >= S ? cfg.extensionWindow : cfg.windowSchedule[Math.floor((step * cfg.windowSchedule.length) / S)];
}

/** The attention schedule for a long window of `longBlocks` (short: half of it) and a rotary state. FlashAttention's
 * window of W tokens is inclusive, so a query sees W + 1 keys (§3.1); the masks and kernels here count keys. */
export function attnScheduleAt(longBlocks: number, rope: RopeState, cfg: Config, shortBlocks = Math.max(1, Math.floor(longBlocks / 2))): AttnSchedule {
  return { longWindow: longBlocks * cfg.windowBlock + 1, shortWindow: shortBlocks * cfg.windowBlock + 1, rope };
}

/** The final validation's schedule after training with `longBlocks` (§4.2): the long window becomes --val-window,
 * with the rotary state, attention scale and short window unchanged; --val-yarn (2025-08) reaches it by one more
 * YaRN extension (@classiclarryd) and halves it for the short window. */
export function finalValSchedule(longBlocks: number, rope: RopeState, cfg: Config): AttnSchedule {
  if (!cfg.valYarn) return attnScheduleAt(cfg.valWindow, rope, cfg, Math.max(1, Math.floor(longBlocks / 2)));
  if (cfg.valWindow === longBlocks) return attnScheduleAt(longBlocks, rope, cfg);
  return attnScheduleAt(cfg.valWindow, yarnExtend(rope, longBlocks * cfg.windowBlock, cfg.valWindow * cfg.windowBlock), cfg);
}

/** Whether Adam steps at `step` (§6.4): every adamEvery-th step (the odd steps for 2), on the summed gradients. */
export const adamStepsAt = (step: number, cfg: Config) => (step + 1) % cfg.adamEvery === 0;

/** Cautious weight decay's λ at a step (§6.2 step 5): 1.2 × the scheduled Muon lr, so the decay scales with lr². */
export const weightDecayAt = (step: number, cfg: Config) => cfg.weightDecay * cfg.muonLr * lrScale(step, cfg);

/** Adam's hyperparameters; roundParam / roundMoments: p' / (m', v') stored rounded to bf16 (--bf16-state, §5);
 * roundGrad: the gradients rounded to bf16 before use (a bf16 parameter's). */
export interface AdamHyper {
  beta1: number; beta2: number; bc1: number; bc2: number; eps: number; lr: number; roundParam: boolean; roundMoments: boolean; roundGrad: boolean;
}

/** The gradients since Adam's last step summed as the record sums a bf16 parameter's (§6.4): each rounded to bf16, and the
 * sum, where `round` (r(r(sum) + r(g))); `sum` absent: the first step's gradient alone (rounded where `round`). */
function gradientSum(sum: tf.Tensor | undefined, g: tf.Tensor, round: boolean): tf.Tensor {
  const r = (t: tf.Tensor) => (round ? roundToBf16(t) : t);
  return sum ? r(r(sum).add(r(g))) : r(g);
}

/** Adam on one parameter → [p', m', v']: m' = β1·m + (1−β1)·g, v' = β2·v + (1−β2)·g²,
 * p' = p − lr·(m'/bc1)/(sqrt(v'/bc2) + eps), each rounded to bf16 where asked once computed. g is this step's gradient
 * plus gSum, the earlier steps' since the last Adam step where given (§6.4), each rounded to bf16 before the sum and the
 * sum after it where roundGrad: r(r(gSum) + r(g)). One fused 'AdamUpdate' kernel where the backend has it (5 reads + 3
 * writes per element instead of ~14 kernels' 32, the sum's Add and the roundings'); this composite elsewhere and as its
 * oracle. */
export function adamUpdate(p: tf.Tensor, m: tf.Tensor, v: tf.Tensor, grad: tf.Tensor, h: AdamHyper, gSum?: tf.Tensor): tf.Tensor[] {
  const fused = runFused<tf.Tensor[]>(adamUpdateKernel, gSum ? { p, m, v, g: grad, gSum } : { p, m, v, g: grad }, { ...h });
  if (fused) return fused;
  const g = gradientSum(gSum, grad, h.roundGrad);
  const m2 = m.mul(h.beta1).add(g.mul(1 - h.beta1));
  const v2 = v.mul(h.beta2).add(g.square().mul(1 - h.beta2));
  const update = m2.div(h.bc1).div(v2.div(h.bc2).sqrt().add(h.eps));
  const p2 = p.sub(update.mul(h.lr)), moment = (t: tf.Tensor) => (h.roundMoments ? roundToBf16(t) : t);
  return [h.roundParam ? roundToBf16(p2) : p2, moment(m2), moment(v2)];
}

/** Muon's momentum → [buf', nesterov]: buf' = μ·buf + (1−μ)·g, nesterov = (1−μ)·g + μ·buf', buf' then rounded to bf16
 * where roundBuf (--bf16-state: a bf16 parameter's state). One fused 'MuonMomentum' kernel where the backend has it
 * (2 reads + 2 writes instead of 6 kernels' 14). */
export function muonMomentum(buf: tf.Tensor, g: tf.Tensor, momentum: number, roundBuf: boolean): tf.Tensor[] {
  const fused = runFused<tf.Tensor[]>(muonMomentumKernel, { buf, g }, { momentum, roundBuf });
  if (fused) return fused;
  const buf2 = buf.mul(momentum).add(g.mul(1 - momentum));
  return [roundBuf ? roundToBf16(buf2) : buf2, g.mul(1 - momentum).add(buf2.mul(momentum))];
}

/** The matrices Muon orthogonalises apart in a parameter [rows, cols]: its column blocks (q, k, v of a merged
 * projection), else the whole. */
const muonBlockShapes = (shape: number[], info: ParamInfo) => (info.split ?? [shape[1]]).map((cols) => [shape[0], cols]);

/** A block's place in a list of matrices: matrix `param`'s columns [col, col + width). */
export interface BlockPlace { param: number; col: number; width: number }
const numberedInputs = (prefix: string, xs: tf.Tensor[]) => Object.fromEntries(xs.map((x, i) => [`${prefix}${i}`, x]));
const placeAttrs = (places: BlockPlace[]): MuonGatherAttrs =>
  ({ params: places.map((b) => b.param), cols: places.map((b) => b.col), widths: places.map((b) => b.width) });

/**
 * The blocks at `places` of the matrices xs, each turned wide (transposed where it has more rows than columns: Muon
 * orthogonalises [r, c] with r ≤ c), stacked → [n, r, c]. One 'MuonGather' launch where the backend has it, instead of
 * a Slice or SplitV, a Transpose and a copy into the stack for each block.
 */
export function gatherBlocks(xs: tf.Tensor2D[], places: BlockPlace[]): tf.Tensor3D {
  const fused = runFused<tf.Tensor3D, MuonGatherAttrs>(muonGatherKernel, numberedInputs('x', xs), placeAttrs(places));
  if (fused) return fused;
  return tf.tidy(() => tf.stack(places.map(({ param, col, width }) => {
    const x = xs[param], [rows, cols] = x.shape;
    const block = col === 0 && width === cols ? x : x.slice([0, col], [rows, width]);
    return rows > width ? block.transpose() : block;
  })) as tf.Tensor3D);
}

/**
 * Muon's momentum of every parameter (muonMomentum, the gradient rounded to bf16 first where roundBf16[k]: a bf16
 * parameter's, §5) with the Nesterov updates' blocks gathered as gatherBlocks gathers them, one stacked tensor for each
 * group of places → { stacked, bufs }. One 'MuonMomentumGather' launch for every parameter where the backend has it
 * (the gradients and buffers read once, the updates written only stacked), instead of a MuonMomentum (and RoundBf16)
 * per parameter and the gathers.
 */
export function momentumBlocks(grads: tf.Tensor2D[], bufs: tf.Tensor2D[], places: BlockPlace[][], momentum: number, roundBf16: boolean[]): { stacked: tf.Tensor3D[]; bufs: tf.Tensor2D[] } {
  const fused = runFused<tf.Tensor[], MuonMomentumGatherAttrs>(muonMomentumGatherKernel, { ...numberedInputs('g', grads), ...numberedInputs('b', bufs) },
    { ...placeAttrs(places.flat()), groupSizes: places.map((g) => g.length), momentum, roundBf16 });
  if (fused) return { stacked: fused.slice(0, places.length) as tf.Tensor3D[], bufs: fused.slice(places.length) as tf.Tensor2D[] };
  return tf.tidy(() => {
    const updated = grads.map((g, k) => muonMomentum(bufs[k], roundBf16[k] ? roundToBf16(g) : g, momentum, roundBf16[k]));
    const nesterovs = updated.map(([, nesterov]) => nesterov as tf.Tensor2D);
    return { stacked: places.map((group) => gatherBlocks(nesterovs, group)), bufs: updated.map(([buf]) => buf as tf.Tensor2D) };
  });
}

/**
 * Each parameter plus `rates[k]` times its blocks' updates, turned back from wide (updates[g] [n, r, c] holds group g's
 * blocks, at places[g]; each column of a parameter is in one block), then rounded to bf16 where roundBf16[k] (a bf16
 * parameter, §5). One 'MuonApply' launch where the backend has it; the composite unstacks, transposes and concatenates
 * the updates, then adds each parameter's with a ScaledAdd (1·p + rate·update: the float32 value of a Multiply and
 * an Add).
 */
export function applyBlockUpdates(params: tf.Tensor2D[], updates: tf.Tensor3D[], places: BlockPlace[][], rates: number[], roundBf16: boolean[]): tf.Tensor2D[] {
  const fused = runFused<tf.Tensor2D[], MuonApplyAttrs>(muonApplyKernel, { ...numberedInputs('p', params), ...numberedInputs('u', updates) },
    { ...placeAttrs(places.flat()), groupSizes: places.map((g) => g.length), rates, roundBf16 });
  if (fused) return fused;
  return tf.tidy(() => {
    const parts = params.map(() => [] as { col: number; update: tf.Tensor }[]);
    updates.forEach((u, g) => tf.unstack(u).forEach((slot, i) => {
      const { param, col, width } = places[g][i];
      parts[param].push({ col, update: params[param].shape[0] > width ? slot.transpose() : slot });
    }));
    // the scalars once per distinct rate (the lr multipliers), as tfjs stores them: float32
    const one = tf.scalar(1), scalars = new Map<number, tf.Scalar>();
    const scalar = (rate: number) => scalars.get(rate) ?? scalars.set(rate, tf.scalar(rate)).get(rate)!;
    return params.map((p, k) => {
      const inOrder = parts[k].sort((a, b) => a.col - b.col).map((b) => b.update);
      const updated = scaledAdd(p, inOrder.length === 1 ? inOrder[0] : tf.concat(inOrder, 1), one, scalar(rates[k]));
      return (roundBf16[k] ? roundToBf16(updated) : updated) as tf.Tensor2D;
    });
  });
}

/**
 * NorMuon's normalisation (§6.2 step 4) of orthogonalised updates O [n, r, c] turned wide (r ≤ c), with their
 * mean squares per neuron v (decayed by beta2, no bias correction) → [O', v']: O divided by √v' per neuron, then
 * rescaled to O's Frobenius norm. A neuron is a column, a row of a square matrix: the record's rule "one value per
 * row if rows ≥ cols" on our [in, out] blocks, which gives its axes (input channels of q, k, v, o and the gates,
 * hidden units of the MLP).
 */
export function normuonNormalize(O: tf.Tensor3D, v: tf.Tensor3D, beta2: number): [tf.Tensor3D, tf.Tensor3D] {
  const v2 = v.mul(beta2).add(O.square().mean(O.shape[1] === O.shape[2] ? 2 : 1, true).mul(1 - beta2)) as tf.Tensor3D;
  const scaled = O.div(v2.maximum(1e-10).sqrt());
  const norm = (x: tf.Tensor) => x.square().sum([1, 2], true).sqrt();
  return [scaled.mul(norm(O).div(norm(scaled).maximum(1e-10))) as tf.Tensor3D, v2];
}
/**
 * NorMuon's update of a batch of orthogonalised wide updates O [n, r, c] → [U, v']: normuonNormalize, then cautious
 * weight decay (§6.2 step 5: + decay·W on the entries where the update and the weight W agree in sign), then each
 * matrix's shape scale [n]. One fused 'NorMuonUpdate' (four small kernels) where the backend has it, instead of ~16.
 */
export function normuonUpdate(O: tf.Tensor3D, v: tf.Tensor3D, W: tf.Tensor3D, scale: tf.Tensor1D, beta2: number, decay: number): [tf.Tensor3D, tf.Tensor3D] {
  const fused = runFused<tf.Tensor[]>(normuonUpdateKernel, { o: O, v, w: W, scale }, { beta2, decay });
  if (fused) return fused as [tf.Tensor3D, tf.Tensor3D];
  const [U, v2] = normuonNormalize(O, v, beta2);
  return [decayAndScale(U, () => W, scale, decay), v2];
}

/** Cautious weight decay (§6.2 step 5: + decay·W only on the entries where the update U and the weight W agree in
 * sign), then each matrix's shape scale [n]. */
function decayAndScale(U: tf.Tensor3D, weights: () => tf.Tensor3D, scale: tf.Tensor1D, decay: number): tf.Tensor3D {
  const W = decay > 0 ? weights() : null;
  const decayed = W ? U.add(W.mul(U.mul(W).greaterEqual(0)).mul(decay)) : U;
  return decayed.mul(scale.reshape([-1, 1, 1]));
}
/** The shape of NorMuon's per-neuron state of a block [r, c], as normuonNormalize sees it turned wide. */
const neuronShape = ([r, c]: number[]) => r === c ? [r, 1] : [1, Math.max(r, c)];

export interface OptimizerState {
  step: number; // Adam's bias-correction count
  // Muon: [momentum, NorMuon's per-neuron mean square of each block]; Adam: [m, v, the gradient sum between its steps]
  slots: Map<string, tf.Variable[]>;
}

export function createOptimizerState(m: Model): OptimizerState {
  const { cfg } = m, slots = new Map<string, tf.Variable[]>();
  for (const [name, v] of m.params) {
    const info = m.info.get(name)!;
    const shapes = info.opt === 'adam' ? [v.shape, v.shape, ...(cfg.adamEvery > 1 ? [v.shape] : [])]
      : [v.shape, ...(cfg.optimizer === 'normuon' ? muonBlockShapes(v.shape, info).map(neuronShape) : [])];
    slots.set(name, shapes.map((shape, i) => tf.tidy(() => {
      const zeros = tf.zeros(shape);
      return tf.variable(stateStoredInBf16(cfg, info, i) ? roundToBf16(zeros) : zeros, false);
    })));
  }
  return { step: 0, slots };
}

export function disposeOptimizerState(st: OptimizerState): void {
  for (const vs of st.slots.values()) for (const v of vs) v.dispose();
}

/** A Muon block: one matrix of a parameter (q, k, v of a merged projection are three), the parameter's columns
 * [col, col + width). */
interface MuonBlock { name: string; col: number; width: number; bf16?: boolean; neurons?: tf.Variable }
/** Each block's place among the parameters `names` (the order of a call's list of them). */
const placesAmong = (names: string[], blocks: MuonBlock[]): BlockPlace[] =>
  blocks.map((b) => ({ param: names.indexOf(b.name), col: b.col, width: b.width }));
/** The Muon blocks of one shape, orthogonalised as one batch; `update` [n, r, c] and `neurons` (NorMuon) are theirs. */
interface MuonGroup { blocks: MuonBlock[]; update: tf.Tensor3D; neurons: tf.Tensor3D | null }

/**
 * One optimiser step on every parameter from its (accumulated, averaged) gradient: Adam's updates, Muon's momentum,
 * then each Muon group's update (muonUpdates) applied.
 */
export function optimizerStep(m: Model, st: OptimizerState, grads: Map<string, tf.Tensor>, step: number): void {
  const groups = muonUpdates(m, st, grads, step, null);
  applyMuonUpdates(m, groups, step);
}

/**
 * The optimiser step shared by `collective`'s ranks: each rank orthogonalises only its share of the Muon blocks (block
 * k of a shape group on rank k mod size), the ranks exchange their updates (and NorMuon's per-neuron state) by one
 * all-gather, and every rank applies them all. The same updates as optimizerStep's, for 1/size of its
 * orthogonalisation work (the record's sharded optimiser); each rank sends only its blocks (an all-reduce of the whole
 * group, every other rank adding zeros, sent each rank's share of zeros too: twice the bytes through NCCL's ring).
 */
export async function shardedOptimizerStep(m: Model, st: OptimizerState, grads: Map<string, tf.Tensor>, step: number, collective: Collective): Promise<void> {
  const groups = muonUpdates(m, st, grads, step, { rank: collective.rank, size: collective.size });
  const owned = groups.flatMap((g) => (g.neurons ? [g.update, g.neurons] : [g.update]));
  const gathered = await collective.allGather(owned);
  tf.dispose(owned);
  // [size, per, ...]: rank r's j-th block is the group's block r + j·size; in block order, without the padding
  const inBlockOrder = (t: tf.Tensor, blocks: number) => tf.tidy(() => {
    const [size, per, rows, cols] = t.shape;
    return t.transpose([1, 0, 2, 3]).reshape([size * per, rows, cols]).slice([0, 0, 0], [blocks, rows, cols]) as tf.Tensor3D;
  });
  let at = 0;
  for (const g of groups) {
    g.update = inBlockOrder(gathered[at++], g.blocks.length);
    if (g.neurons) g.neurons = inBlockOrder(gathered[at++], g.blocks.length);
  }
  tf.dispose(gathered);
  applyMuonUpdates(m, groups, step);
}

/**
 * Adam's updates (applied) and Muon's momentum (stored), then Muon's updates by shape group, returned unapplied
 * (tensors the caller owns). With a `shard`, only blocks k ≡ rank (mod size) of a group are computed, and a group's
 * update and neuron state hold those blocks in order, padded with zeros to ⌈blocks/size⌉ (the same shape on every
 * rank, for the all-gather).
 */
function muonUpdates(m: Model, st: OptimizerState, grads: Map<string, tf.Tensor>, step: number, shard: { rank: number; size: number } | null): MuonGroup[] {
  const { cfg } = m, lr = lrScale(step, cfg), mom = muonMomentumAt(step, cfg), decay = weightDecayAt(step, cfg);
  const adamSteps = adamStepsAt(step, cfg);
  if (adamSteps) st.step += 1;
  const bc1 = 1 - cfg.adamBeta1 ** st.step, bc2 = 1 - cfg.adamBeta2 ** st.step;
  const groups: MuonGroup[] = [];
  tf.tidy(() => {
    // Adam's updates, applied; each Muon parameter's blocks, collected
    const blocks: (MuonBlock & { scale: number; wide: number[] })[] = [], muonNames: string[] = [];
    // --bf16-state (§5): what the record keeps in bf16 is rounded to it wherever it is written: a bf16 parameter's
    // gradient, optimiser state and value (the Adam and momentum kernels round what they write), and every Adam moment.
    for (const [name, p] of m.params) {
      const info = m.info.get(name)!, slots = st.slots.get(name)!;
      if (!grads.get(name)) throw new Error(`no gradient for parameter ${name}`);
      if (info.opt === 'muon') {
        const [, ...neurons] = slots, rows = p.shape[0]!;
        let col = 0;
        muonBlockShapes(p.shape, info).forEach(([, width], index) => {
          // Scale max(1, out/in)^0.5 (weights are [in, out] here) keeps the update's RMS shape-independent; it is
          // the record's √max(1, rows/cols) on its [out, in] matrices, and its lr_mul 2 on c_fc ([in, out] there).
          blocks.push({ name, col, width, scale: Math.sqrt(Math.max(1, width / rows)), wide: rows > width ? [width, rows] : [rows, width],
            neurons: neurons[index], bf16: info.bf16 });
          col += width;
        });
        muonNames.push(name);
        continue;
      }
      const [mv, vv, gradSum] = slots, g = grads.get(name)!, first = step % cfg.adamEvery === 0;
      // Adam steps only every adamEvery-th step, on the sum of the gradients since its last step (§6.4), a bf16
      // parameter's each rounded to bf16 (r(r(sum) + r(g))). The first step after an Adam step keeps its gradient as
      // the sum, unrounded: the Adam step's kernel rounds and adds it (no zeroed sum to add to, no Add or rounding
      // passes over the embedding-sized tables: those were the cost); a step between (adamEvery > 2) sums as the kernel.
      if (!adamSteps) { gradSum.assign(first ? g : gradientSum(gradSum, g, !!info.bf16)); continue; }
      // The record adds eps to √v before the bias correction (§6.3): lr·(√bc2/bc1)·m/(√v + eps), which is the
      // kernel's formula with eps/√bc2 in place of eps.
      const [newP, newM, newV] = adamUpdate(p, mv, vv, g,
        { beta1: cfg.adamBeta1, beta2: cfg.adamBeta2, bc1, bc2, eps: cfg.adamEps / Math.sqrt(bc2), lr: cfg.adamLr * info.lrMul * lr,
          roundParam: !!info.bf16, roundMoments: cfg.bf16State, roundGrad: !!info.bf16 }, first ? undefined : gradSum);
      p.assign(newP);
      mv.assign(newM);
      vv.assign(newV);
    }
    // Muon: every block (q, k, v of a merged projection are separate matrices) turned wide, grouped by shape and
    // orthogonalised as one batch; the momentum of every parameter first, its Nesterov updates gathered by group.
    const byShape = new Map<string, typeof blocks>();
    for (const b of blocks) {
      const key = b.wide.join('x');
      byShape.set(key, [...(byShape.get(key) ?? []), b]);
    }
    const shapeGroups = [...byShape.values()], out: tf.Tensor[] = [];
    if (muonNames.length === 0) return out;
    const momentum = momentumBlocks(muonNames.map((n) => grads.get(n)! as tf.Tensor2D), muonNames.map((n) => st.slots.get(n)![0] as tf.Variable<tf.Rank.R2>),
      shapeGroups.map((group) => placesAmong(muonNames, group)), mom,
      muonNames.map((n) => !!m.info.get(n)!.bf16));
    muonNames.forEach((n, k) => st.slots.get(n)![0].assign(momentum.bufs[k]));
    shapeGroups.forEach((group, gi) => {
      const owned = group.map((_, k) => k).filter((k) => !shard || k % shard.size === shard.rank), mine = owned.map((k) => group[k]);
      let U: tf.Tensor3D | null = null, V: tf.Tensor3D | null = null;
      if (mine.length > 0) {
        const nesterov = owned.length === group.length ? momentum.stacked[gi] : tf.gather(momentum.stacked[gi], owned);
        U = orthogonalizeBatch(nesterov, cfg.orthogonalizer);
        // the weights, stacked only where the update reads them (plain Muon without decay does not): the blocks'
        // parameters once each, and each block's place among them
        const names = [...new Set(mine.map((b) => b.name))];
        const places = placesAmong(names, mine);
        const W = () => gatherBlocks(names.map((n) => m.params.get(n)! as tf.Variable<tf.Rank.R2>), places), scales = tf.tensor1d(mine.map((b) => b.scale));
        if (cfg.optimizer === 'normuon') {
          const [normed, neurons] = normuonUpdate(U, tf.stack(mine.map((b) => b.neurons!)) as tf.Tensor3D, W(), scales, cfg.normuonBeta2, decay);
          U = normed;
          const half = mine.map((b) => !!b.bf16); // a bf16 parameter's state is rounded to bf16 (--bf16-state)
          V = half.every(Boolean) ? roundToBf16(neurons) as tf.Tensor3D : !half.some(Boolean) ? neurons
            : tf.stack(tf.unstack(neurons).map((v, i) => (half[i] ? roundToBf16(v) : v))) as tf.Tensor3D;
        } else {
          U = decayAndScale(U, W, scales, decay);
        }
      }
      // A shard's part of the group: its own blocks, then zeros up to ⌈blocks/size⌉ (a rank may own one fewer, or none).
      const padded = (t: tf.Tensor3D | null, like: { shape: number[] }): tf.Tensor3D => {
        const per = shard ? Math.ceil(group.length / shard.size) : group.length;
        if (t && t.shape[0] === per) return t;
        const zeros = tf.zeros([per - (t ? t.shape[0] : 0), like.shape[0]!, like.shape[1]!]) as tf.Tensor3D;
        return t ? tf.concat([t, zeros]) : zeros;
      };
      const update = padded(U, { shape: group[0].wide }), neurons = cfg.optimizer === 'normuon' ? padded(V, group[0].neurons!) : null;
      groups.push({ blocks: group.map(({ name, col, width, bf16, neurons: n }) => ({ name, col, width, bf16, neurons: n })), update, neurons });
      out.push(update, ...(neurons ? [neurons] : []));
    });
    return out; // kept: the groups hold them
  });
  return groups;
}

/** Stores each group's NorMuon state and applies its update to the weights (at the step's learning rate); disposes
 * the groups' tensors. */
function applyMuonUpdates(m: Model, groups: MuonGroup[], step: number): void {
  const { cfg } = m, lr = lrScale(step, cfg);
  tf.tidy(() => {
    for (const { blocks, neurons } of groups) if (neurons) tf.unstack(neurons).forEach((v, i) => blocks[i].neurons!.assign(v));
    const names = [...new Set(groups.flatMap((g) => g.blocks.map((b) => b.name)))];
    const places = groups.map((g) => placesAmong(names, g.blocks));
    // p − η·update (η the Muon lr at this step times the parameter's multiplier), rounded to bf16 for a bf16 parameter
    const updated = applyBlockUpdates(names.map((n) => m.params.get(n)! as tf.Variable<tf.Rank.R2>), groups.map((g) => g.update), places,
      names.map((n) => -cfg.muonLr * lr * m.info.get(n)!.lrMul), names.map((n) => !!m.info.get(n)!.bf16));
    names.forEach((n, k) => m.params.get(n)!.assign(updated[k]));
  });
  tf.dispose(groups.flatMap((g) => (g.neurons ? [g.update, g.neurons] : [g.update])));
}

// -----------------------------------------------------------------------------
// Data
//
// Shards hold uint16 GPT-2 tokens (data/shard.ts), read in order. Two layouts of a training step's tokens:
// - packed (the 2025-11 record, record-2025-11.md §8.2): each micro-batch is one stream of whole documents, each
//   from its BOS and cut at --seq-len, the stream's last document cut where the stream ends; the rest of a cut
//   document is never used. A step's streams are built one after another from the same documents on any number
//   of ranks: every rank builds every stream's boundaries and keeps its own.
// - rows: B rows of T tokens, each from a document start (a document longer than T is cut); every rank computes
//   every rank's row starts the same way, so ranks never overlap.
// Attention stays inside one document either way (documentIds). Validation reads contiguous slices: packed,
// streams of --val-stream-len tokens; rows, rows of --seq-len.

/** Per-row document index (cumulative count of BOS tokens) for tokens [B*T]; attention stays inside one. In a
 * packed stream every segment starts at a BOS, so these are its segments; tokens before a row's first BOS are one. */
export function documentIds(tokens: ArrayLike<number>, B: number, T: number, bos: number): Int32Array {
  const ids = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let doc = 0;
    for (let t = 0; t < T; t++) {
      if (tokens[b * T + t] === bos && t > 0) doc++;
      ids[b * T + t] = doc;
    }
  }
  return ids;
}

export interface HostBatch { inputs: Int32Array; targets: Int32Array; B: number; T: number }
/** Where a loader continues: the shard, and the position from which its next document start is sought. */
export interface LoaderState { file: number; pos: number }
/** A rank's training micro-batches, one per next(); state() between steps is where a resumed run continues. */
export interface BatchLoader { next(): Promise<HostBatch>; state(): LoaderState; readonly wrapped: boolean }

/** The training shards one after another, each with the positions of its document starts; the next one is read ahead. */
abstract class ShardLoader implements BatchLoader {
  protected tokens: Uint16Array = new Uint16Array(0);
  protected bosPos = new Int32Array(0);
  protected file = -1;
  protected pos = 0;
  private prefetch: { file: number; data: Promise<Uint16Array> } | null = null;
  private pendingStart: LoaderState | null; // where the first call to next() begins
  wrapped = false; // set once the loader has gone past the last shard back to the first

  constructor(readonly files: string[], readonly worldSize: number, readonly rank: number, readonly bos: number,
    start: LoaderState, readonly vocabSize: number) {
    if (!files.length) throw new Error('no training shards given');
    if (rank < 0 || rank >= worldSize) throw new Error(`rank ${rank} is outside world size ${worldSize}`);
    this.pendingStart = start;
  }

  abstract next(): Promise<HostBatch>;

  private async open(file: number): Promise<void> {
    const name = this.files[file];
    this.tokens = this.prefetch?.file === file ? await this.prefetch.data : await readShard(name);
    checkTokenIds(this.tokens, this.vocabSize, name);
    const pos: number[] = [];
    for (let i = 0; i < this.tokens.length; i++) if (this.tokens[i] === this.bos) pos.push(i);
    if (!pos.length) throw new Error(`${name}: no document-start token ${this.bos} in ${this.tokens.length} tokens (wrong --bos-token?)`);
    this.bosPos = Int32Array.from(pos);
    this.file = file;
    this.pos = 0;
    const next = (file + 1) % this.files.length;
    this.prefetch = next === file ? null : { file: next, data: readShard(this.files[next]) };
    this.prefetch?.data.catch(() => { /* reported when the shard is opened */ });
  }

  /** Opens the shard of the start position on the first call. */
  protected async begin(): Promise<void> {
    if (!this.pendingStart) return;
    await this.open(this.pendingStart.file);
    this.pos = this.pendingStart.pos;
    this.pendingStart = null;
  }

  /** Opens the next shard (after the last, the first: `wrapped`). */
  protected async nextShard(): Promise<void> {
    const nextFile = (this.file + 1) % this.files.length;
    if (nextFile === 0) this.wrapped = true;
    await this.open(nextFile);
  }

  // Before the first next(), the position it will start from: a checkpoint taken then must resume there.
  state(): LoaderState { return this.pendingStart ? { ...this.pendingStart } : { file: this.file, pos: this.pos }; }

  /** Index into bosPos of the first document start at or after `from` (bosPos.length if none). */
  protected nextDoc(from: number): number {
    let lo = 0, hi = this.bosPos.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.bosPos[mid] < from) lo = mid + 1; else hi = mid; }
    return lo;
  }
}

/** BOS-aligned training rows for one rank (--data-layout rows): B rows of T tokens a micro-step. */
export class TrainLoader extends ShardLoader {
  constructor(files: string[], readonly T: number, readonly B: number, worldSize: number, rank: number, bos: number,
    start: LoaderState = { file: 0, pos: 0 }, vocabSize = 0x10000) {
    super(files, worldSize, rank, bos, start, vocabSize);
  }

  /** The next B sequences of this rank, T+1 tokens each, as inputs and shifted targets. */
  async next(): Promise<HostBatch> {
    const { T, B, worldSize, rank } = this;
    await this.begin();
    const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
    let emptyShards = 0; // shards opened in a row without a sequence; a small shard may be read several times a step
    for (let n = 0; n < worldSize * B;) {
      const tokens = this.tokens;
      const d = this.nextDoc(this.pos), start = d < this.bosPos.length ? this.bosPos[d] : -1;
      if (start < 0 || start + T + 1 > tokens.length) {
        if (++emptyShards > this.files.length) throw new Error(`no shard holds a document start followed by ${T + 1} tokens`);
        await this.nextShard();
        continue;
      }
      const row = n - rank * B;
      if (row >= 0 && row < B) {
        for (let t = 0; t < T; t++) { inputs[row * T + t] = tokens[start + t]; targets[row * T + t] = tokens[start + t + 1]; }
      }
      this.pos = start + T; // the next sequence starts at the first document start from here on
      n++;
      emptyShards = 0;
    }
    return { inputs, targets, B, T };
  }
}

/**
 * Packed training streams for one rank (--data-layout packed, record-2025-11.md §8.2–8.3). A step is `streams`
 * streams of L input tokens, built one after another; each holds exactly L + 1 tokens: segments [b, e) from the
 * next unused document's BOS b with e = min(the next BOS (or the shard's end), b + cut, b + L + 1 − tokens so far).
 * Inputs are its first L tokens, targets its last L: at a cut the target is the next document's BOS. The next
 * stream starts at the next document. Stream k of a step goes to rank k mod W at micro-step ⌊k / W⌋, so the step's
 * streams are the same on any number of ranks W. When the shard runs out of documents before the step is complete,
 * the step is discarded and built again from the start of the next shard: as the record does with its 8 streams
 * of a step on 8 GPUs, whatever W.
 */
export class PackedLoader extends ShardLoader {
  private queue: HostBatch[] = []; // this rank's streams of the current step, in micro-step order

  constructor(files: string[], readonly L: number, readonly cut: number, readonly streams: number, worldSize: number, rank: number,
    bos: number, start: LoaderState = { file: 0, pos: 0 }, vocabSize = 0x10000) {
    super(files, worldSize, rank, bos, start, vocabSize);
    if (streams % worldSize) throw new Error(`${streams} streams a step do not split over ${worldSize} ranks`);
  }

  async next(): Promise<HostBatch> {
    if (!this.queue.length) await this.buildStep();
    return this.queue.shift()!;
  }

  // A step is built whole: a checkpoint between its micro-steps could not say where to continue.
  override state(): LoaderState {
    if (this.queue.length) throw new Error('the loader is inside a step: its state is only defined between steps');
    return super.state();
  }

  private async buildStep(): Promise<void> {
    await this.begin();
    for (let emptyShards = 0; ; emptyShards++) {
      const segments = this.packStep();
      if (segments) {
        for (let k = this.rank; k < this.streams; k += this.worldSize) this.queue.push(this.gather(segments[k]));
        return;
      }
      if (emptyShards >= this.files.length) {
        throw new Error(`no shard holds the ${this.streams} stream(s) of ${this.L + 1} tokens of one step (documents cut at ${this.cut})`);
      }
      await this.nextShard();
    }
  }

  /** The segments [start, end) of every stream of the next step in this shard, or null if the shard runs out. */
  private packStep(): [number, number][][] | null {
    const { bosPos, L, cut } = this, n = bosPos.length;
    let d = this.nextDoc(this.pos);
    const step: [number, number][][] = [];
    for (let k = 0; k < this.streams; k++) {
      const segments: [number, number][] = [];
      for (let have = 0; have < L + 1; d++) {
        if (d >= n) return null;
        const b = bosPos[d], e = Math.min(d + 1 < n ? bosPos[d + 1] : this.tokens.length, b + cut, b + L + 1 - have);
        segments.push([b, e]);
        have += e - b;
      }
      step.push(segments);
    }
    this.pos = d < n ? bosPos[d] : this.tokens.length;
    return step;
  }

  /** One stream's L + 1 tokens from its segments, as inputs (the first L) and targets (the last L). */
  private gather(segments: [number, number][]): HostBatch {
    const stream = new Int32Array(this.L + 1);
    let at = 0;
    for (const [b, e] of segments) { stream.set(this.tokens.subarray(b, e), at); at += e - b; }
    return { inputs: stream.slice(0, this.L), targets: stream.slice(1), B: 1, T: this.L };
  }
}

/** A rank's validation batches: `steps` of them, each `span` tokens, and a note to print once (if any). */
export interface ValData { steps: number; span: number; batch(s: number): HostBatch; note?: string }

/** Contiguous validation batches of the shard `file` holds: step s, rank r reads B rows of T tokens at (s·W + r)·B·T. */
export function valBatches(tokens: Uint16Array, valTokens: number, T: number, B: number, worldSize: number, rank: number, file: string): ValData {
  const span = B * T;
  const steps = Math.floor(Math.min(valTokens, tokens.length - 1) / (worldSize * span));
  if (steps < 1) throw new Error(`${file}: the validation shard (${tokens.length} tokens) is smaller than one validation batch (${worldSize * span + 1} tokens)`);
  return {
    steps, span,
    batch(s: number): HostBatch {
      const off = (s * worldSize + rank) * span;
      return { inputs: Int32Array.from(tokens.subarray(off, off + span)), targets: Int32Array.from(tokens.subarray(off + 1, off + span + 1)), B, T };
    },
  };
}

/**
 * Validation streams (--data-layout packed, record-2025-11.md §8.4): stream c is tokens c·L … c·L + L − 1 of the
 * first `valTokens` (clamped to the shard), targets shifted by one; rank r takes stream s·W + r at step s. Not
 * BOS-aligned and no document is cut: attention segments split at every BOS. Where the tokens hold fewer than W
 * streams, each rank gets one stream of the longest length that fits, and the note says so.
 */
export function valStreams(tokens: Uint16Array, valTokens: number, L: number, worldSize: number, rank: number, file: string): ValData {
  const usable = Math.min(valTokens, tokens.length - 1);
  let note: string | undefined;
  if (usable < worldSize * L) {
    const fits = Math.floor(usable / worldSize);
    if (fits < 1) throw new Error(`${file}: the validation shard (${tokens.length} tokens) is smaller than one validation token per rank and its target (${worldSize + 1} tokens)`);
    note = `val: ${usable < tokens.length - 1 ? `--val-tokens ${valTokens}` : `the validation shard ${file} (${tokens.length} tokens)`} holds fewer than ` +
      `${worldSize} stream(s) of --val-stream-len ${L} tokens and their targets: validating on ${worldSize} stream(s) of ${fits} tokens`;
    L = fits;
  }
  const inner = valBatches(tokens, usable, L, 1, worldSize, rank, file);
  return note ? { ...inner, note } : inner;
}

/** Entropy (nats) of the token distribution: the best loss of a model that ignores context. */
export function unigramEntropy(tokens: ArrayLike<number>): number {
  const counts = new Map<number, number>();
  for (let i = 0; i < tokens.length; i++) counts.set(tokens[i], (counts.get(tokens[i]) ?? 0) + 1);
  let H = 0;
  for (const c of counts.values()) { const p = c / tokens.length; H -= p * Math.log(p); }
  return H;
}

/** Host batch → device tensors. */
export function toDevice(hb: HostBatch, bos: number): Batch {
  return {
    inputs: tf.tensor2d(hb.inputs, [hb.B, hb.T], 'int32'),
    targets: tf.tensor2d(hb.targets, [hb.B, hb.T], 'int32'),
    docIds: tf.tensor2d(documentIds(hb.inputs, hb.B, hb.T, bos), [hb.B, hb.T], 'int32'),
  };
}

export function disposeBatch(b: Batch): void { b.inputs.dispose(); b.targets.dispose(); b.docIds.dispose(); }

/** Resolves shard globs (`*` only) inside a folder, sorted. */
export function globShards(dir: string, pattern: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const re = new RegExp('^' + pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
  return fs.readdirSync(dir).filter((f) => re.test(f)).sort().map((f) => path.join(dir, f));
}

// -----------------------------------------------------------------------------
// Logs and checkpoints
//
// The log format is the speedrun's (../shared/reference/speedrun.md), so its tools parse ours: the script's
// source, a line of 100 '=', versions and the GPU listing, another line of '=', then one line per step.
// log_format.ts holds the format, its writers and its readers, so stats.ts reads exactly what this writes.

function gpuListing(): string {
  const r = spawnSync('nvidia-smi', [], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 ? r.stdout.trimEnd() : 'nvidia-smi: not available (no NVIDIA GPU listed)';
}

/** One new file per run under logDir; it is never overwritten (opened with O_EXCL). */
export class RunLog {
  readonly file: string;
  closed = false; // the closing line is written: the peak memory of a finished run, or why it stopped
  constructor(dir: string, runId: string, versions: string) {
    fs.mkdirSync(dir, { recursive: true });
    this.file = path.join(dir, `${runId}.txt`);
    const source = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8');
    fs.writeFileSync(this.file, logHeader(source, versions, gpuListing()), { flag: 'wx' });
  }
  write(line: string): void { fs.appendFileSync(this.file, line + '\n'); }
  close(line: string): void { this.write(line); this.closed = true; }
}

// Version 2 adds a SHA-256 of everything after it, so a flipped byte is found on load instead of trained on.
const CKPT_MAGIC = 'TSGPT-CKPT-2\n';
const CKPT_MAGIC_V1 = 'TSGPT-CKPT-1\n';
const CKPT_HASH_BYTES = 32;

/** What a checkpoint holds besides the tensors. */
export interface CheckpointMeta { step: number; loader: LoaderState; config: Config; trainMs: number /* timed training so far */ }

/** Bytes of the parameters and optimiser state: what a checkpoint of this model needs on disk, near enough. */
export function checkpointBytes(m: Model, st: OptimizerState): number {
  let n = countParams(m);
  for (const vs of st.slots.values()) for (const v of vs) n += v.size;
  return 4 * n;
}

/** Writes parameters, optimiser state, loader position and config into one file, atomically, with a checksum. */
export function saveCheckpoint(file: string, m: Model, st: OptimizerState, meta: CheckpointMeta): void {
  const entries: { name: string; shape: number[]; offset: number }[] = [];
  const blobs: Float32Array[] = [];
  let offset = 0;
  const put = (name: string, t: tf.Tensor) => {
    const data = t.dataSync() as Float32Array;
    entries.push({ name, shape: t.shape, offset });
    blobs.push(data);
    offset += data.byteLength;
  };
  for (const [name, v] of m.params) put(`param/${name}`, v);
  for (const [name, vs] of st.slots) vs.forEach((v, i) => put(`slot${i}/${name}`, v));
  const header = Buffer.from(JSON.stringify({ ...meta, optStep: st.step, entries }));
  const bodyAt = CKPT_MAGIC.length + CKPT_HASH_BYTES;
  const out = Buffer.alloc(bodyAt + 4 + header.length + offset);
  out.write(CKPT_MAGIC, 'latin1');
  let at = out.writeUInt32LE(header.length, bodyAt);
  at += header.copy(out, at);
  for (const b of blobs) at += Buffer.from(b.buffer, b.byteOffset, b.byteLength).copy(out, at);
  createHash('sha256').update(out.subarray(bodyAt)).digest().copy(out, CKPT_MAGIC.length);
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    writeFileAtomic(file, out);
  } catch (e) {
    // A full disk reports ENOSPC from a write, which names no file.
    throw new TrainingError(`cannot write checkpoint ${file}: ${(e as Error).message}`);
  }
}

/** A checkpoint's bytes, checked (magic, checksum, header), where its tensors start, and the error for a corrupt one.
 * `flag` names the option that gave the file, for errors. */
export function readCheckpoint(file: string, flag = '--resume'): { buf: Buffer; base: number; header: CheckpointHeader; corrupt: (what: string) => ConfigError } {
  if (!fs.existsSync(file)) throw new ConfigError(`${flag} ${file}: no such file`);
  if (fs.statSync(file).isDirectory()) {
    const ckpts = fs.readdirSync(file).filter((f) => f.endsWith('.ckpt')).map((f) => path.join(file, f));
    const newest = ckpts.sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
    throw new ConfigError(`${flag} ${file}: a folder, not a checkpoint file${newest ? ` (its newest checkpoint is ${newest})` : ' (it holds no .ckpt file)'}`);
  }
  const buf = fs.readFileSync(file);
  const magic = buf.toString('latin1', 0, CKPT_MAGIC.length);
  if (magic === CKPT_MAGIC_V1) throw new ConfigError(`${flag} ${file}: a checkpoint of an older version of this trainer (format 1, without checksum); it cannot be resumed`);
  if (magic !== CKPT_MAGIC) throw new ConfigError(`${flag} ${file}: not a checkpoint of this trainer`);
  const corrupt = (what: string) => new ConfigError(`${flag} ${file}: truncated or corrupt checkpoint (${what})`);
  const bodyAt = CKPT_MAGIC.length + CKPT_HASH_BYTES;
  if (buf.length < bodyAt + 4) throw corrupt('no header');
  if (!createHash('sha256').update(buf.subarray(bodyAt)).digest().equals(buf.subarray(CKPT_MAGIC.length, bodyAt))) throw corrupt('checksum mismatch');
  const len = buf.readUInt32LE(bodyAt), base = bodyAt + 4 + len;
  try {
    if (base > buf.length) throw new Error();
    return { buf, base, header: JSON.parse(buf.toString('utf8', bodyAt + 4, base)), corrupt };
  } catch {
    throw corrupt('unreadable header');
  }
}

type CheckpointHeader = CheckpointMeta & { optStep: number; entries: { name: string; shape: number[]; offset: number }[] };

/**
 * Restores a checkpoint into a model built with the same shape; returns what it holds besides the tensors.
 * `check` sees that before any tensor is restored (to refuse a changed configuration by name, say).
 */
export function loadCheckpoint(file: string, m: Model, st: OptimizerState, check?: (meta: CheckpointMeta) => void, flag = '--resume'): CheckpointMeta {
  const { buf, base, header, corrupt } = readCheckpoint(file, flag);
  const meta: CheckpointMeta = { step: header.step, loader: header.loader, config: header.config, trainMs: header.trainMs };
  check?.(meta);
  // each tensor and whether it is stored in bf16 (its saved values are bf16 ones: rounding them again stores them so)
  const targets = new Map<string, { v: tf.Variable; bf16: boolean }>();
  for (const [name, v] of m.params) targets.set(`param/${name}`, { v, bf16: stateStoredInBf16(m.cfg, m.info.get(name)!) });
  for (const [name, vs] of st.slots) vs.forEach((v, i) => targets.set(`slot${i}/${name}`, { v, bf16: stateStoredInBf16(m.cfg, m.info.get(name)!, i) }));
  if (header.entries.length !== targets.size) throw new ConfigError(`${flag} ${file}: it holds ${header.entries.length} tensors, this model has ${targets.size} (different flags?)`);
  for (const e of header.entries) {
    const { v, bf16 } = targets.get(e.name) ?? {};
    if (!v || v.shape.join() !== e.shape.join()) throw new ConfigError(`${flag} ${file}: tensor ${e.name} [${e.shape}] does not fit this model (different flags?)`);
    const n = e.shape.reduce((a, b) => a * b, 1);
    if (base + e.offset + n * 4 > buf.length) throw corrupt(`tensor ${e.name} runs past the end of the file`);
    const data = new Float32Array(buf.buffer.slice(buf.byteOffset + base + e.offset, buf.byteOffset + base + e.offset + n * 4));
    tf.tidy(() => v.assign(bf16 ? roundToBf16(tf.tensor(data, e.shape)) : tf.tensor(data, e.shape)));
  }
  st.step = header.optStep;
  return meta;
}

/** This run's checkpoints in `dir` beyond the newest `keep` (0: keep all), oldest first; other runs' files are not touched. */
export function checkpointsToPrune(dir: string, runId: string, keep: number): string[] {
  if (keep === 0) return [];
  const pattern = new RegExp(`^${runId}_step(\\d+)\\.ckpt$`);
  const ours = fs.readdirSync(dir).flatMap((f) => { const m = pattern.exec(f); return m ? [{ file: path.join(dir, f), step: Number(m[1]) }] : []; });
  return ours.sort((a, b) => a.step - b.step).slice(0, Math.max(0, ours.length - keep)).map((c) => c.file);
}

/**
 * Checks at the start that checkpoints can be written to `dir`, rather than at the first save: the folder
 * can be made, a file written in it, and its file system has room for one checkpoint of `bytes`.
 */
export function checkCheckpointDir(dir: string, bytes: number): void {
  const flag = `--checkpoint-dir ${dir}`;
  try {
    fs.mkdirSync(dir, { recursive: true });
    const probe = path.join(dir, `.write-probe-${process.pid}`);
    fs.writeFileSync(probe, '');
    fs.rmSync(probe);
  } catch (e) {
    throw new ConfigError(`${flag}: not writable (${(e as Error).message})`);
  }
  const { bavail, bsize } = fs.statfsSync(dir);
  if (bavail * bsize < bytes) {
    throw new ConfigError(`${flag}: ${(bavail * bsize / 2 ** 20).toFixed(0)} MiB free, a checkpoint of this model needs ${(bytes / 2 ** 20).toFixed(0)} MiB`);
  }
}

// -----------------------------------------------------------------------------
// Distributed data parallel
//
// One process per GPU, like torchrun: `--gpus N` starts N workers with RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR and MASTER_PORT set (an external launcher may set them instead). The workers meet over TCP
// at rank 0 (the rendezvous, also the CPU collective: gradients summed at rank 0 in rank order), and on
// the cuda backend average gradients with NCCL, whose unique id rank 0 creates and shares over that TCP link.

export interface World { size: number; rank: number; localRank: number }

/** Averages tensors across ranks; `size` 1 is the identity. Every rank calls in the same order. */
export interface Collective {
  readonly size: number;
  readonly rank: number;
  allReduceMean(tensors: tf.Tensor[]): Promise<tf.Tensor[]>;
  /** Every rank's tensors (the same shapes on every rank), stacked in rank order: out[i] is [size, ...tensors[i].shape]. */
  allGather(tensors: tf.Tensor[]): Promise<tf.Tensor[]>;
  /** Rank 0's string, on every rank. */
  broadcast(value: string): Promise<string>;
  close(): void;
}

export const soloCollective: Collective = {
  size: 1, rank: 0,
  allReduceMean: async (tensors) => tensors.map((t) => t.clone()),
  allGather: async (tensors) => tensors.map((t) => t.expandDims(0)),
  broadcast: async (value) => value,
  close: () => {},
};

/** Length-prefixed frames over a socket, read in order. */
class FrameSocket {
  private buffered = Buffer.alloc(0);
  private frames: Buffer[] = [];
  private waiting: { resolve: (b: Buffer) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | null = null;
  constructor(readonly socket: net.Socket, public peer: string) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 4 && this.buffered.length >= 4 + this.buffered.readUInt32LE(0)) {
        const n = this.buffered.readUInt32LE(0);
        const frame = Buffer.from(this.buffered.subarray(4, 4 + n));
        this.buffered = this.buffered.subarray(4 + n);
        const w = this.waiting.shift();
        if (w) w.resolve(frame); else this.frames.push(frame);
      }
    });
    const fail = (why: string) => {
      this.failure ??= new TrainingError(`${this.peer} ${why}: a worker stopped`);
      for (const w of this.waiting.splice(0)) w.reject(this.failure);
    };
    socket.on('close', () => fail('closed the connection'));
    socket.on('error', (e) => fail(`connection error (${e.message})`));
  }
  send(payload: Buffer): void {
    const head = Buffer.alloc(4);
    head.writeUInt32LE(payload.length);
    this.socket.write(Buffer.concat([head, payload]));
  }
  /** The next frame; fails when the peer goes away, or sends nothing for `timeoutMs`. */
  recv(timeoutMs = Infinity): Promise<Buffer> {
    const f = this.frames.shift();
    if (f) return Promise.resolve(f);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = Number.isFinite(timeoutMs) ? setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        reject(new TrainingError(`${this.peer} sent nothing for ${timeoutMs / 1000}s (--collective-timeout): it stopped or hangs`));
      }, timeoutMs) : undefined;
      const waiter = { resolve: (b: Buffer) => { clearTimeout(timer); resolve(b); }, reject: (e: Error) => { clearTimeout(timer); reject(e); } };
      this.waiting.push(waiter);
    });
  }
}

const f32Bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Rendezvous at rank 0 over TCP; all-reduce sums at rank 0 in rank order, so results are deterministic. */
export async function tcpCollective(world: World, addr: string, port: number, timeoutMs = 120_000, waitMs = Infinity): Promise<Collective> {
  const peers: FrameSocket[] = []; // rank 0: index r-1 holds rank r; others: [rank 0]
  if (world.size === 1) {
    // Nothing to meet: the reductions below are identities.
  } else if (world.rank === 0) {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, addr, () => resolve()); });
    const joined = new Map<number, FrameSocket>();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new TrainingError(`rendezvous: ${world.size - 1 - joined.size} rank(s) did not join ${addr}:${port} within ${timeoutMs / 1000}s`)), timeoutMs);
      server.on('connection', async (socket) => {
        const peer = new FrameSocket(socket, 'a worker');
        const r = (await peer.recv()).readUInt32LE(0);
        peer.peer = `rank ${r}`;
        joined.set(r, peer);
        if (joined.size === world.size - 1) { clearTimeout(timer); resolve(); }
      });
    });
    server.close();
    for (let r = 1; r < world.size; r++) peers.push(joined.get(r)!);
  } else {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(port, addr, () => resolve(s));
          s.once('error', reject);
        });
        const peer = new FrameSocket(socket, 'rank 0');
        const hello = Buffer.alloc(4);
        hello.writeUInt32LE(world.rank);
        peer.send(hello);
        peers.push(peer);
        break;
      } catch (e) {
        if (Date.now() > deadline) throw new TrainingError(`rendezvous: rank 0 at ${addr}:${port} unreachable (${(e as Error).message})`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  const flatten = async (tensors: tf.Tensor[]): Promise<Float32Array> => {
    const flat = new Float32Array(tensors.reduce((n, t) => n + t.size, 0));
    let at = 0;
    for (const t of tensors) { flat.set(await t.data() as Float32Array, at); at += t.size; }
    return flat;
  };
  // Rank 0 receives every other rank's values (in rank order), makes the result and sends it back.
  const viaRankZero = async (flat: Float32Array, combine: (parts: Float32Array[]) => Float32Array): Promise<Float32Array> => {
    if (world.rank !== 0) {
      peers[0].send(f32Bytes(flat));
      const r = await peers[0].recv(waitMs);
      return new Float32Array(r.buffer.slice(r.byteOffset, r.byteOffset + r.length));
    }
    const parts = (await Promise.all(peers.map((p) => p.recv(waitMs)))).map((part, k) => {
      if (part.length !== flat.byteLength) {
        throw new TrainingError(`collective: rank ${k + 1} sent ${part.length / 4} values where rank 0 has ${flat.length}: the ranks' tensors differ`);
      }
      return new Float32Array(part.buffer, part.byteOffset, part.length / 4);
    });
    const result = combine([flat, ...parts]);
    for (const p of peers) p.send(f32Bytes(result));
    return result;
  };
  const allReduceMean = async (tensors: tf.Tensor[]): Promise<tf.Tensor[]> => {
    const result = await viaRankZero(await flatten(tensors), ([sum, ...others]) => {
      for (const v of others) for (let i = 0; i < sum.length; i++) sum[i] += v[i];
      for (let i = 0; i < sum.length; i++) sum[i] /= world.size;
      return sum;
    });
    let at = 0;
    return tensors.map((t) => { const out = tf.tensor(result.subarray(at, at + t.size), t.shape); at += t.size; return out; });
  };
  const allGather = async (tensors: tf.Tensor[]): Promise<tf.Tensor[]> => {
    const flat = await flatten(tensors), n = flat.length;
    const all = await viaRankZero(flat, (parts) => { // rank r's values at r·n
      const joined = new Float32Array(parts.length * n);
      parts.forEach((v, r) => joined.set(v, r * n));
      return joined;
    });
    let at = 0;
    return tensors.map((t) => {
      const out = new Float32Array(world.size * t.size);
      for (let r = 0; r < world.size; r++) out.set(all.subarray(r * n + at, r * n + at + t.size), r * t.size);
      at += t.size;
      return tf.tensor(out, [world.size, ...t.shape]);
    });
  };
  return {
    size: world.size, rank: world.rank,
    allReduceMean,
    allGather,
    async broadcast(value) {
      if (world.rank === 0) { for (const p of peers) p.send(Buffer.from(value)); return value; }
      return (await peers[0].recv()).toString();
    },
    close() { for (const p of peers) p.socket.destroy(); },
  };
}

/** NCCL's all-reduce and all-gather on the cuda backend; the TCP collective carries the unique id. */
async function ncclCollective(tcp: Collective): Promise<Collective> {
  const cuda = (await importOptional(path.join(REPO_ROOT, 'backend-cuda', 'index.ts'))) as CudaModule;
  if (!cuda.ncclUniqueId || !cuda.ncclInit || !cuda.ncclAllReduce || !cuda.ncclAllGather) throw new Error('this build of the cuda backend has no NCCL bindings');
  const uniqueId = await tcp.broadcast(tcp.rank === 0 ? cuda.ncclUniqueId() : '');
  cuda.ncclInit({ uniqueId, worldSize: tcp.size, rank: tcp.rank });
  return {
    size: tcp.size, rank: tcp.rank,
    allReduceMean: async (tensors) => cuda.ncclAllReduce!(tensors, 'avg'),
    allGather: async (tensors) => cuda.ncclAllGather!(tensors),
    broadcast: (value) => tcp.broadcast(value),
    close() { cuda.ncclDestroy?.(); tcp.close(); },
  };
}

/** The collective for this process: solo, TCP (CPU backends) or NCCL (cuda). */
export async function createCollective(world: World, backend: string, kind: Config['collective'] = 'auto', waitMs = Infinity): Promise<Collective> {
  if (world.size === 1 && kind === 'auto') return soloCollective;
  if (kind === 'nccl' && backend !== 'cuda') throw new ConfigError(`--collective nccl needs --backend cuda (the backend is ${backend})`);
  const tcp = await tcpCollective(world, process.env.MASTER_ADDR ?? '127.0.0.1', Number(process.env.MASTER_PORT ?? 29500), undefined, waitMs);
  return kind === 'nccl' || (kind === 'auto' && backend === 'cuda') ? ncclCollective(tcp) : tcp;
}

/** This process's place, from the environment a launcher sets (RANK, WORLD_SIZE, LOCAL_RANK). */
export function worldFromEnv(env: NodeJS.ProcessEnv = process.env): World & { launched: boolean } {
  const num = (k: string, def: number) => {
    if (env[k] === undefined) return def;
    const v = Number(env[k]);
    if (!Number.isInteger(v) || v < 0) throw new ConfigError(`environment ${k}=${JSON.stringify(env[k])}: expected a non-negative integer`);
    return v;
  };
  const size = num('WORLD_SIZE', 1), rank = num('RANK', 0);
  if (size < 1 || rank >= size) throw new ConfigError(`environment RANK=${rank} is outside WORLD_SIZE=${size}`);
  return { size, rank, localRank: num('LOCAL_RANK', rank), launched: env.WORLD_SIZE !== undefined };
}

/** GPUs this process may use: CUDA_VISIBLE_DEVICES, else nvidia-smi's listing. */
export function visibleGpuCount(): number {
  const cvd = process.env.CUDA_VISIBLE_DEVICES;
  if (cvd !== undefined) return cvd.trim() === '' ? 0 : cvd.split(',').length;
  const r = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 ? r.stdout.split('\n').filter((l) => l.startsWith('GPU ')).length : 0;
}

/**
 * A SIGINT handler: `first` on the first signal, `again` on a later one at least a second after it (the user's "stop
 * now"). Signals within that second are the same Ctrl-C: tsx sends its child the signal once more when the child is
 * slow to answer (30 ms, easily missed on a busy machine), and the launcher then took it for a second Ctrl-C and
 * killed the rank before it could save.
 */
export function ctrlCHandler(first: () => void, again: () => void): () => void {
  let firstAt: number | null = null;
  return () => {
    const now = performance.now();
    if (firstAt === null) {
      firstAt = now;
      first();
    } else if (now - firstAt >= 1000) again();
  };
}

/** Starts `n` workers of `script` (this one by default) with the same flags; returns the exit code of the run. */
export async function launch(n: number, argv: string[], onStart?: (pids: number[]) => void, script = fileURLToPath(import.meta.url)): Promise<number> {
  const port = await new Promise<number>((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
  });
  const workers = Array.from({ length: n }, (_, rank) => spawn(process.execPath, [...process.execArgv, script, ...argv], {
    env: { ...process.env, RANK: String(rank), WORLD_SIZE: String(n), LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) },
    // An IPC channel that closes when the launcher dies, however it dies (SIGKILL cannot be caught): the worker then stops.
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    detached: true, // its own process group: a Ctrl-C reaches the launcher only, which passes it on once
  }));
  onStart?.(workers.map((w) => w.pid!));
  let interrupted = false;
  const onSigint = ctrlCHandler(() => {
    interrupted = true;
    for (const w of workers) w.kill('SIGINT');
  }, () => { for (const w of workers) w.kill('SIGKILL'); });
  process.on('SIGINT', onSigint);
  try {
    return await new Promise<number>((resolve) => {
      let running = n, failed = false, killTimer: NodeJS.Timeout | undefined;
      workers.forEach((w, rank) => w.on('exit', (code, signal) => {
        running--;
        const status = code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1);
        if (status !== 0 && !failed && !interrupted) {
          failed = true;
          if (n > 1) console.error(`launcher: rank ${rank} failed (${signal ?? `exit code ${code}`}); stopping the other ranks`);
          for (const other of workers) if (other !== w && other.exitCode === null) other.kill('SIGTERM');
          // A stopped (SIGSTOP) or hung worker ignores SIGTERM; the launcher stays until every worker is gone.
          killTimer = setTimeout(() => { for (const other of workers) if (other.exitCode === null && other.signalCode === null) other.kill('SIGKILL'); }, 10_000);
          resolve(status);
        }
        if (running === 0) { clearTimeout(killTimer); resolve(interrupted ? 130 : 0); }
      }));
    });
  } finally {
    process.off('SIGINT', onSigint);
  }
}

// -----------------------------------------------------------------------------
// Training

export class TrainingError extends Error {}
export class InterruptedError extends TrainingError {}

/** Rotary state after `step` steps: YaRN applied at every growth of the long window so far. */
export function ropeAt(step: number, cfg: Config): RopeState {
  let rope = initRope(cfg), blocks = longWindowBlocks(0, cfg);
  for (let s = 1; s <= step; s++) {
    const nb = longWindowBlocks(s, cfg);
    if (nb !== blocks) { rope = yarnExtend(rope, blocks * cfg.windowBlock, nb * cfg.windowBlock); blocks = nb; }
  }
  return rope;
}

/**
 * Forward and backward over `accum` micro-batches, gradients averaged across ranks, one optimiser step.
 * Returns [mean token loss, stop] averaged over ranks: `stop` > 0 when any rank asked to stop, so that
 * every rank stops after the same step.
 */
export async function trainStep(m: Model, st: OptimizerState, loader: BatchLoader, sched: AttnSchedule, accum: number, step: number,
  collective: Collective = soloCollective, stop = false): Promise<tf.Tensor1D> {
  const nameOf = new Map([...m.params].map(([name, v]) => [v.name, name]));
  const grads = new Map<string, tf.Tensor>();
  let lossSum: tf.Scalar = tf.scalar(0);
  for (let a = 0; a < accum; a++) {
    const hb = await loader.next();
    // The micro-steps after the first start each parameter's gradient at its sum so far (tfjs_node.ts's
    // variableGradsSummed): the backward's kernels add into it (the weights' in their GEMM's epilogue) instead of an Add
    // over every parameter after each micro-step (269M floats read twice and written once, 7 times a step).
    const sums = new Map([...grads].map(([name, t]) => [m.params.get(name)!, t]));
    const { value, grads: g } = tf.tidy(() => {
      const batch = toDevice(hb, m.cfg.bosToken);
      // Summed token loss scaled by 1/accum (the speedrun's convention, record-2025-11.md §8.3): gradients add up over
      // micro-steps and average over ranks to (1/streams a step)·Σ ∇(summed loss of a stream), on any number of ranks.
      const loss = () => modelLoss(m, batch, sched, 'sum').div(accum) as tf.Scalar;
      return sums.size ? variableGradsSummed(loss, sums) : tf.variableGrads(loss);
    });
    for (const [vname, gi] of Object.entries(g)) grads.set(nameOf.get(vname)!, gi);  // the sums handed over are freed
    const next = tf.tidy(() => lossSum.add(value.div(hb.B * hb.T)) as tf.Scalar); // value is sum/accum: this adds up to the mean
    lossSum.dispose(); value.dispose();
    lossSum = next;
  }
  const names = [...grads.keys()];
  let tensors = [...names.map((n) => grads.get(n)!), tf.tidy(() => tf.stack([lossSum, tf.scalar(stop ? 1 : 0)]))];
  lossSum.dispose();
  if (collective !== soloCollective) {
    const reduced = await collective.allReduceMean(tensors);
    tf.dispose(tensors);
    tensors = reduced;
  }
  const stats = tensors.pop() as tf.Tensor1D;
  const averaged = new Map(names.map((n, i) => [n, tensors[i]]));
  if (collective.size > 1 && m.cfg.shardOptimizer) await shardedOptimizerStep(m, st, averaged, step, collective);
  else optimizerStep(m, st, averaged, step);
  tf.dispose(tensors);
  return stats;
}

/**
 * Mean token loss of a batch, with no gradient: the trunk on the whole batch (each layer's intermediates freed as
 * it goes), then the head and cross-entropy `headRows` tokens at a time, summed. A 262,144-token validation
 * stream's logits at once would take 53 GB (and more elements than an int32 index reaches).
 */
export function evalLoss(m: Model, batch: Batch, sched: AttnSchedule, headRows: number): tf.Scalar {
  const d = m.cfg.modelDim;
  const x = trunk(m, batch.inputs, batch.docIds, sched).reshape([-1, d]), targets = batch.targets.reshape([-1]);
  const N = x.shape[0];
  let sum: tf.Scalar = tf.scalar(0);
  for (let r = 0; r < N; r += headRows) {
    const n = Math.min(headRows, N - r);
    const next = tf.tidy(() => sum.add(softcapCrossEntropy(rawLogits(m, x.slice([r, 0], [n, d])), targets.slice(r, n) as tf.Tensor1D, m.cfg, 'sum')) as tf.Scalar);
    sum.dispose();
    sum = next;
  }
  return sum.div(N);
}

/**
 * Mean validation loss: the mean token loss of each val batch (a packed stream, or B rows), averaged over a
 * rank's batches and over ranks (record-2025-11.md §8.4). `headRows`: evalLoss's slice of the head.
 */
export async function evaluate(m: Model, val: ValData, sched: AttnSchedule, collective: Collective = soloCollective, headRows = val.span): Promise<number> {
  let total: tf.Scalar = tf.scalar(0);
  for (let s = 0; s < val.steps; s++) {
    const next = tf.tidy(() => total.add(evalLoss(m, toDevice(val.batch(s), m.cfg.bosToken), sched, headRows)) as tf.Scalar);
    total.dispose();
    total = next; // accumulated on the device: one read at the end
  }
  const [mean] = await collective.allReduceMean([total]); // every rank's slices weigh the same
  const sum = (await mean.data())[0];
  tf.dispose([total, mean]);
  return sum / val.steps;
}

export interface TrainResult { finalValLoss: number; trainMs: number; steps: number; logFile: string | null; unigramEntropy: number; tokensPerSecond: number }

interface DataFiles { train: string[]; val: string; label: string; tokenizer?: CorpusTokenizer /* the built-in corpus's */ }

/** Finds the training and validation shards of the configured corpus (building the built-in one if needed). */
export async function resolveData(cfg: Config, say: (s: string) => void): Promise<DataFiles> {
  const dataDir = path.resolve(REPO_ROOT, cfg.dataDir);
  const fineweb = { train: globShards(dataDir, cfg.trainFiles), val: globShards(dataDir, cfg.valFiles) };
  let corpus = cfg.corpus;
  if (corpus === 'auto') {
    corpus = fineweb.train.length && fineweb.val.length ? 'fineweb' : cfg.vocabSize >= 50257 ? 'builtin-gpt2' : 'builtin-bytes';
    if (corpus !== 'fineweb') say(`corpus auto: no FineWeb shards in ${dataDir} (npx tsx data/cached_fineweb10B.ts 8 downloads them); using ${corpus}`);
  }
  if (corpus === 'fineweb') {
    if (!fineweb.train.length || !fineweb.val.length) {
      throw new ConfigError(`--corpus fineweb: no ${!fineweb.train.length ? cfg.trainFiles : cfg.valFiles} in ${dataDir}; download shards with \`npx tsx data/cached_fineweb10B.ts 8\``);
    }
    if (cfg.vocabSize < 50257 || cfg.bosToken !== GPT2_BOS) throw new ConfigError(`FineWeb holds GPT-2 tokens: it needs --vocab-size ≥ 50257 and --bos-token ${GPT2_BOS}`);
    return { train: fineweb.train, val: fineweb.val[0], label: `fineweb (${dataDir})` };
  }
  const tokenizer: CorpusTokenizer = corpus === 'builtin-gpt2' ? 'gpt2' : 'bytes';
  const c = await ensureBuiltinCorpus(tokenizer, { log: say });
  if (c.vocabSize > cfg.vocabSize || c.bosToken !== cfg.bosToken) {
    throw new ConfigError(`--corpus ${corpus} has ${c.vocabSize} token ids with document start ${c.bosToken}: set --vocab-size ≥ ${c.vocabSize} and --bos-token ${c.bosToken}`);
  }
  return { train: c.trainFiles, val: c.valFile, label: `${corpus} (${c.trainTokens} train / ${c.valTokens} val tokens)`, tokenizer };
}

// Flags that change where files go, what is printed, and how the same computation is split over devices and
// micro-steps or run by the backend: a resumed run may change them. Every other flag changes the maths.
const RESUME_FREE: ReadonlySet<Key> = new Set<Key>(['preset', 'backend', 'matmulPrecision', 'fused', 'gpus', 'collective', 'shardOptimizer', 'deviceBatch',
  'valEvery', 'warmupSteps', 'printEvery', 'logDir', 'saveCheckpoint', 'checkpointEvery', 'checkpointDir', 'keepCheckpoints', 'resume',
  'resumeAllowConfigChange']);

/** The settings of `cfg` that differ from the checkpoint's and change the maths, as `--flag new (checkpoint: old)`. */
export function resumeConfigChanges(saved: Config, cfg: Config): string[] {
  return KEYS.filter((k) => !RESUME_FREE.has(k) && fmt(saved[k]) !== fmt(cfg[k])).map((k) => `${flagOf(k)} ${fmt(cfg[k])} (checkpoint: ${fmt(saved[k])})`);
}

/**
 * How each of `size` ranks computes its share of a step: `accum` micro-steps of `rows` × `T` tokens (packed: one
 * stream, rows 1). The global batch must split evenly. Rows: the largest device batch up to --device-batch that
 * divides the rank's rows (with a note where that is below --device-batch), the rest by accumulation.
 */
export function batchPlan(cfg: Config, size: number): { accum: number; rows: number; T: number; note?: string } {
  if (cfg.dataLayout === 'packed') {
    const perRank = cfg.batchTokens / (cfg.streamLen * size);
    if (!Number.isInteger(perRank)) throw new ConfigError(`--batch-tokens ${cfg.batchTokens} must be a multiple of --stream-len${size > 1 ? ` × GPUs = ${cfg.streamLen * size}` : ` ${cfg.streamLen}`}`);
    return { accum: perRank, rows: 1, T: cfg.streamLen };
  }
  const perRank = cfg.batchTokens / (cfg.seqLen * size);
  if (!Number.isInteger(perRank)) throw new ConfigError(`--batch-tokens ${cfg.batchTokens} must be a multiple of --seq-len${size > 1 ? ` × GPUs = ${cfg.seqLen * size}` : ` ${cfg.seqLen}`}`);
  let rows = Math.min(cfg.deviceBatch, perRank);
  while (perRank % rows) rows--;
  const note = rows === cfg.deviceBatch ? undefined
    : `device batch: ${rows} sequences per micro-step (the largest divisor of the ${perRank} sequences per rank up to --device-batch ${cfg.deviceBatch})`;
  return { accum: perRank / rows, rows, T: cfg.seqLen, note };
}

/** The training loader of cfg's layout for one rank, from `start`; rows: cfg.deviceBatch rows a micro-step. */
export function createLoader(cfg: Config, files: string[], world: { size: number; rank: number }, start?: LoaderState): BatchLoader {
  return cfg.dataLayout === 'packed'
    ? new PackedLoader(files, cfg.streamLen, cfg.seqLen, cfg.batchTokens / cfg.streamLen, world.size, world.rank, cfg.bosToken, start, cfg.vocabSize)
    : new TrainLoader(files, cfg.seqLen, cfg.deviceBatch, world.size, world.rank, cfg.bosToken, start, cfg.vocabSize);
}

/** The validation batches of cfg's layout for one rank. */
export function validationData(cfg: Config, tokens: Uint16Array, world: { size: number; rank: number }, file: string): ValData {
  return cfg.dataLayout === 'packed'
    ? valStreams(tokens, cfg.valTokens, cfg.valStreamLen, world.size, world.rank, file)
    : valBatches(tokens, cfg.valTokens, cfg.seqLen, cfg.deviceBatch, world.size, world.rank, file);
}

/** A step's data layout in words, for --describe. */
export function layoutText(cfg: Config): string {
  return cfg.dataLayout === 'packed'
    ? `packed: ${cfg.batchTokens} tokens a step = ${cfg.batchTokens / cfg.streamLen} stream(s) of ${cfg.streamLen} tokens, one per micro-step (batch 1), ` +
      `of documents from their BOS, each cut at --seq-len ${cfg.seqLen}; validation: streams of ${cfg.valStreamLen} consecutive tokens`
    : `rows: ${cfg.batchTokens} tokens a step = ${cfg.batchTokens / cfg.seqLen} rows of ${cfg.seqLen} tokens from a document start, ` +
      `up to ${cfg.deviceBatch} per micro-step; validation: rows of ${cfg.seqLen} consecutive tokens`;
}

// A loss at or above ln(vocab), a uniform prediction's, this many steps in: the run has learnt nothing or diverged
// with a finite loss (a huge learning rate leaves one far above it, or pinned at it without a logit cap).
const DIVERGENCE_GRACE_STEPS = 10;

interface TrainOptions {
  backend: string; collective?: Collective; say?: (s: string) => void; header?: string[]; interrupt?: { requested: boolean };
  sampleTokens?: number; // on the built-in corpus, end by printing this many sampled tokens
}

/** Trains with a resolved config on the current backend; rank 0 writes the log, which always ends with a closing line. */
export async function train(config: Config, opts: TrainOptions): Promise<TrainResult> {
  let log: RunLog | null = null;
  try {
    return await trainLogged(config, opts, (l) => { log = l; });
  } catch (e) {
    // Diverged and interrupted runs close their log themselves; any other error is said here.
    const open = log as RunLog | null;
    if (open && !open.closed) open.close(stoppedLine(`error: ${(e as Error).message.split('\n')[0]}`));
    throw e;
  }
}

async function trainLogged(config: Config, opts: TrainOptions, onLog: (log: RunLog) => void): Promise<TrainResult> {
  let cfg = config;
  useFusedKernels(cfg.fused);
  const collective = opts.collective ?? soloCollective;
  const world = { size: collective.size, rank: collective.rank };
  const lead = world.rank === 0;
  const say = opts.say ?? ((s: string) => { if (lead) console.log(s); });
  const N = cfg.numIterations;
  // The global batch is fixed; each rank accumulates gradients over its share's micro-steps (8 on 1 GPU for the speedrun).
  const plan = batchPlan(cfg, world.size), accum = plan.accum;
  if (plan.note) {
    say(plan.note);
    cfg = { ...cfg, deviceBatch: plan.rows };
  }
  const data = await resolveData(cfg, say);
  const valTokens = readShardSync(data.val);
  checkTokenIds(valTokens, cfg.vocabSize, data.val);
  const val = validationData(cfg, valTokens, world, data.val);
  if (val.note) say(val.note);
  const unigram = unigramEntropy(valTokens.subarray(1, val.steps * world.size * val.span + 1));

  const m = createModel(cfg);
  const st = createOptimizerState(m);
  let startStep = 0, loaderStart: LoaderState = { file: 0, pos: 0 }, priorTrainMs = 0;
  if (cfg.resume) {
    const file = path.resolve(cfg.resume);
    ({ step: startStep, loader: loaderStart, trainMs: priorTrainMs } = loadCheckpoint(file, m, st, (saved) => {
      const changes = resumeConfigChanges(saved.config, cfg);
      if (changes.length && !cfg.resumeAllowConfigChange) {
        throw new ConfigError(`--resume ${cfg.resume}: the checkpoint was trained with other settings: ${changes.join(', ')}; ` +
          'give the checkpoint\'s values, or --resume-allow-config-change to change them');
      }
      if (changes.length) say(`resume: changed from the checkpoint: ${changes.join(', ')}`);
      // Past N the loop would never meet its last step; at N there is nothing to train.
      if (saved.step >= N) throw new ConfigError(`--resume ${cfg.resume}: the checkpoint is at step ${saved.step}, ${saved.step > N ? 'past' : 'at'} --num-iterations ${N}: nothing left to train`);
    }));
    say(`resumed from ${cfg.resume} at step ${startStep}`);
  }
  const checkpointDir = path.resolve(REPO_ROOT, cfg.checkpointDir);
  if (lead && (cfg.saveCheckpoint || cfg.checkpointEvery > 0)) {
    checkCheckpointDir(checkpointDir, checkpointBytes(m, st));
    const stale = removeStaleTempFiles(checkpointDir);
    if (stale.length) say(`removed ${stale.length} temp file(s) of interrupted checkpoint writes from ${cfg.checkpointDir}`);
  }
  if (world.size > 1) {
    // Every rank builds the same parameters from the seed; checked once, since a mismatch would go unnoticed.
    const own = tf.tidy(() => tf.addN([...m.params.values()].map((v, i) => v.sum().mul(i + 1))));
    const [mean] = await collective.allReduceMean([own]);
    const [a, b] = [(await own.data())[0], (await mean.data())[0]];
    tf.dispose([own, mean]);
    if (Math.abs(a - b) > 1e-5 * Math.max(1, Math.abs(a))) throw new TrainingError(`rank ${world.rank}: parameters differ across ranks at the start (checksum ${a} vs mean ${b})`);
  }
  say(`model: ${(countParams(m) / 1e6).toFixed(2)}M parameters, ${cfg.numLayers} layers, d ${cfg.modelDim}; data: ${data.label}`);
  const micro = cfg.dataLayout === 'packed' ? `one packed stream of ${plan.T} tokens (documents cut at ${cfg.seqLen})` : `${plan.rows} × ${plan.T}`;
  say(`batch: ${cfg.batchTokens} tokens/step = ${accum} micro-step(s) × ${world.size} rank(s) × ${micro}; ` +
    `val: ${val.steps} step(s) of ${val.span} tokens a rank; unigram entropy of val: ${unigram.toFixed(4)} nats`);

  const runId = randomUUID();
  const log = lead ? new RunLog(path.resolve(REPO_ROOT, cfg.logDir), runId, [
    `node ${process.version}, tfjs-core ${tf.version_core}, backend ${opts.backend}, ${os.type()} ${os.release()}, ${os.cpus().length} CPUs`,
    ...(opts.header ?? []),
    `config: ${JSON.stringify(cfg)}`,
    `flags: ${flagsLine(cfg)}`,
  ].join('\n')) : null;
  if (log) { onLog(log); say(`log: ${path.relative(process.cwd(), log.file)}`); }
  const logLine = (s: string) => log?.write(s);
  if (cfg.resume) logLine(resumedLine(startStep, priorTrainMs, path.resolve(cfg.resume)));

  // Warm-up (untimed, as the rules allow): real steps through every window size, then restore the state.
  if (cfg.warmupSteps > 0 && !cfg.resume) {
    const t = performance.now();
    const snapshot = [...m.params.values()].map((v) => tf.keep(v.clone()));
    const warmLoader = createLoader(cfg, data.train, world);
    for (let w = 0; w < cfg.warmupSteps; w++) {
      const blocks = cfg.windowSchedule[w % cfg.windowSchedule.length];
      const stats = await trainStep(m, st, warmLoader, attnScheduleAt(blocks, initRope(cfg), cfg), accum, w, collective);
      await stats.data();
      stats.dispose();
    }
    [...m.params.values()].forEach((v, i) => { v.assign(snapshot[i]); snapshot[i].dispose(); });
    disposeOptimizerState(st);
    Object.assign(st, createOptimizerState(m));
    say(`warm-up: ${cfg.warmupSteps} step(s) in ${((performance.now() - t) / 1000).toFixed(1)}s, state restored`);
  }

  const loader = createLoader(cfg, data.train, world, loaderStart);
  // The top of step s holds the window and rotary state that step s−1 trained with (the validation at s uses them).
  const lastTrained = Math.max(0, startStep - 1);
  let longBlocks = longWindowBlocks(lastTrained, cfg), rope = ropeAt(lastTrained, cfg);
  // train_time carries the run before a resume: a log's times are the whole run's (the `resumed:` line says so).
  let trainMs = priorTrainMs, lastLoss = NaN, peakBytes = 0, finalValLoss = NaN;
  let pending: { step: number; stats: tf.Tensor1D } | null = null;
  let stopAgreed = false; // a rank asked to stop: every rank stops after the same step
  // The loss of step s is read after step s+1 is queued, so a GPU backend never waits on the host.
  const flushLoss = async () => {
    if (!pending) return;
    const { step, stats } = pending;
    pending = null;
    const [loss, stop] = await stats.data();
    stats.dispose();
    lastLoss = loss;
    if (stop > 0) stopAgreed = true;
    if (!bar && (step % cfg.printEvery === 0 || step === N)) {
      say(`step ${step}/${N} train_loss ${loss.toFixed(4)} ${((trainMs - priorTrainMs + performance.now() - t0) / (step - startStep)).toFixed(1)} ms/step`);
    }
    checkLoss('train', loss, step);
  };
  const uniformLoss = Math.log(cfg.vocabSize);
  /** Stops the run, closing the log, on a loss that is not finite, or not below a uniform prediction's after the grace steps. */
  const checkLoss = (kind: 'train' | 'validation', loss: number, step: number) => {
    let why: string;
    if (!Number.isFinite(loss)) {
      // The training loss's head may run in FP8, whose casts overflow to NaN: say so, with its weights' range.
      const fp8 = kind === 'train' && cfg.fp8Head ? fp8HeadDiagnosis(m) : '';
      why = `${kind} loss is ${loss} at step ${step}${fp8 ? `; ${fp8}` : ''}`;
    }
    // float32 losses pinned at ln(vocab) read a hair below the float64 value
    else if (step >= DIVERGENCE_GRACE_STEPS && loss >= uniformLoss * (1 - 1e-4)) {
      why = `${kind} loss is ${loss.toFixed(4)} at step ${step}, not below ${uniformLoss.toFixed(4)} = ln(--vocab-size ${cfg.vocabSize}), a uniform prediction's`;
    } else return;
    log?.close(stoppedLine(why));
    throw new TrainingError(`${why}: the run diverged (try a lower learning rate)${log ? `; log: ${log.file}` : ''}`);
  };
  // On a terminal: a progress bar showing the latest train and val losses; otherwise plain lines.
  const bar = lead && process.stdout.isTTY ? new cliProgress.SingleBar({
    format: 'step {value}/{total} [{bar}] loss {loss} | val {val} | {avg} ms/step | eta {eta_formatted}', hideCursor: true,
  }, cliProgress.Presets.shades_classic) : null;
  bar?.start(N, startStep, { loss: '-', val: '-', avg: '-' });
  const save = (step: number, trainedMs: number) => {
    const file = path.join(checkpointDir, `${runId}_step${step}.ckpt`);
    saveCheckpoint(file, m, st, { step, loader: loader.state(), config: cfg, trainMs: trainedMs });
    for (const old of checkpointsToPrune(checkpointDir, runId, cfg.keepCheckpoints)) fs.rmSync(old, { force: true });
    return file;
  };

  let t0 = performance.now();
  try {
    for (let step = startStep; ; step++) {
      const last = step === N;
      if (last || (cfg.valEvery > 0 && step % cfg.valEvery === 0)) {
        await flushLoss(); // also waits for queued device work, so the clock below is honest
        trainMs += performance.now() - t0;
        const sched = last ? finalValSchedule(longBlocks, rope, cfg) : attnScheduleAt(longBlocks, rope, cfg);
        // The head in slices of a training micro-batch's tokens, whose logits a training step holds anyway.
        const loss = await evaluate(m, val, sched, collective, plan.rows * plan.T);
        checkLoss('validation', loss, step);
        finalValLoss = loss;
        logLine(valLine(step, N, loss, trainMs));
        if (bar) bar.update({ val: loss.toFixed(4) }); else say(valLine(step, N, loss, trainMs));
        t0 = performance.now();
      }
      if (last) break;
      // Let the event loop run between steps: on the CPU backends a step never waits on anything else, so a
      // SIGINT handler (and a launcher's disconnect) would otherwise wait for the end of the run.
      await new Promise((resolve) => setImmediate(resolve));
      if (process.env.TSGPT_FAIL_AT === `${world.rank}:${step}`) throw new Error(`fault injected at rank ${world.rank}, step ${step} (TSGPT_FAIL_AT)`);
      if (stopAgreed || (world.size === 1 && opts.interrupt?.requested)) {
        await flushLoss();
        trainMs += performance.now() - t0;
        const where = `interrupted at step ${step}/${N} (train_time ${Math.round(trainMs)}ms)`;
        log?.close(where);
        bar?.stop();
        say(`${where}${lead && cfg.saveCheckpoint ? `; checkpoint: ${save(step, trainMs)}` : ''}${log ? `; log: ${log.file}` : ''}`);
        throw new InterruptedError(where);
      }
      const blocks = longWindowBlocks(step, cfg);
      if (blocks !== longBlocks) {
        rope = yarnExtend(rope, longBlocks * cfg.windowBlock, blocks * cfg.windowBlock);
        longBlocks = blocks;
      }
      const stats = await trainStep(m, st, loader, attnScheduleAt(longBlocks, rope, cfg), accum, step, collective, opts.interrupt?.requested);
      await flushLoss();
      pending = { step: step + 1, stats };
      const approxMs = trainMs + performance.now() - t0;
      logLine(stepLine(step + 1, N, approxMs));
      peakBytes = Math.max(peakBytes, tf.memory().numBytes);
      bar?.update(step + 1, { loss: Number.isNaN(lastLoss) ? '-' : lastLoss.toFixed(4), avg: ((approxMs - priorTrainMs) / (step + 1 - startStep)).toFixed(1) });
      if (lead && cfg.checkpointEvery > 0 && (step + 1) % cfg.checkpointEvery === 0 && step + 1 < N) say(`checkpoint: ${save(step + 1, approxMs)}`);
    }
  } finally {
    bar?.stop();
    pending?.stats.dispose();
    if (loader.wrapped) say('note: the training data was used more than once (the loader wrapped around)');
  }
  if (lead && cfg.saveCheckpoint) say(`checkpoint: ${save(N, trainMs)}`);
  const mem = tf.memory() as tf.MemoryInfo & { peakBytes?: number; poolBytes?: number };
  const reserved = mem.poolBytes ?? process.resourceUsage().maxRSS * 1024;
  log?.close(peakMemoryLine(mem.peakBytes ?? peakBytes, reserved));
  const steps = N - startStep;
  const tokensPerSecond = (steps * cfg.batchTokens) / ((trainMs - priorTrainMs) / 1000);
  say(`final val_loss ${finalValLoss.toFixed(4)} (${finalValLoss < unigram ? 'below' : 'NOT below'} the val unigram entropy ${unigram.toFixed(4)}), ` +
    `train time ${(trainMs / 1000).toFixed(1)}s, ${Math.round(tokensPerSecond)} tokens/s${log ? `, log ${path.relative(process.cwd(), log.file)}` : ''}`);
  if (lead && opts.sampleTokens && data.tokenizer) {
    // A look at what the model learnt (sample.ts does the same from a checkpoint). The run is finished and logged:
    // a sample that cannot be made (its tokenizer missing, say) is noted, never a failed run.
    try {
      const codec = await loadCodec(data.tokenizer);
      const text = await generate(m, N, codec, { prompt: '', tokens: opts.sampleTokens, temperature: 0.8, topK: 40, seed: cfg.seed });
      say(`sample (${opts.sampleTokens} tokens at most, temperature 0.8; more with npx tsx sample.ts): ${JSON.stringify(text)}`);
    } catch (e) {
      say(`note: no sample: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  disposeOptimizerState(st);
  disposeModel(m);
  return { finalValLoss, trainMs, steps, logFile: log?.file ?? null, unigramEntropy: unigram, tokensPerSecond };
}

// -----------------------------------------------------------------------------
// Sampling: text from the model, at the end of a run on the built-in corpus and in sample.ts

export interface SampleOptions {
  prompt: string;
  tokens: number;
  temperature: number; // 0: always the most likely token
  topK: number; // 0: all tokens
  seed: number;
}

/** GPT-2 tokens for a model with GPT-2's vocabulary, else bytes (the built-in byte-level corpus). */
export const tokenizerOf = (cfg: Config): CorpusTokenizer => (cfg.vocabSize >= 50257 ? 'gpt2' : 'bytes');

/** A small seeded generator (mulberry32): the same seed gives the same text. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The attention windows and rotary state of the final validation after `steps` trained steps, as train() uses them. */
function finalSchedule(cfg: Config, steps: number): AttnSchedule {
  const last = Math.max(0, steps - 1);
  const blocks = longWindowBlocks(last, cfg), rope = ropeAt(last, cfg);
  if (cfg.valWindow === blocks) return attnScheduleAt(blocks, rope, cfg);
  return attnScheduleAt(cfg.valWindow, yarnExtend(rope, blocks * cfg.windowBlock, cfg.valWindow * cfg.windowBlock), cfg);
}

/** Picks the next token from logits: temperature, then the top k, then a draw; padding ids past the vocabulary never. */
function pick(logits: Float32Array, vocab: number, o: SampleOptions, rand: () => number): number {
  const ids = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => logits[b] - logits[a]);
  if (o.temperature === 0) return ids[0];
  const kept = o.topK > 0 ? ids.slice(0, o.topK) : ids;
  const top = logits[kept[0]];
  const weights = kept.map((i) => Math.exp((logits[i] - top) / o.temperature));
  let r = rand() * weights.reduce((a, b) => a + b, 0);
  for (let j = 0; j < kept.length; j++) if ((r -= weights[j]) <= 0) return kept[j];
  return kept[kept.length - 1];
}

/** Continues `prompt` by `tokens` tokens; returns the continuation only. The context is the last seqLen tokens. */
export async function generate(m: Model, steps: number, codec: CorpusCodec, o: SampleOptions): Promise<string> {
  const cfg = m.cfg;
  const sched = finalSchedule(cfg, steps);
  const rand = seededRandom(o.seed);
  const context = [cfg.bosToken, ...Array.from(codec.encode(o.prompt))];
  const out: number[] = [];
  for (let n = 0; n < o.tokens; n++) {
    const window = context.slice(-cfg.seqLen);
    const logits = tf.tidy(() => {
      const inputs = Int32Array.from(window);
      const b = toDevice({ inputs, targets: inputs, B: 1, T: window.length }, cfg.bosToken);
      return headLogits(m, trunk(m, b.inputs, b.docIds, sched)).slice([window.length - 1, 0], [1, -1]);
    });
    const next = pick((await logits.data()) as Float32Array, codec.vocabSize, o, rand);
    logits.dispose();
    if (next === cfg.bosToken) break; // the end of a document
    context.push(next);
    out.push(next);
  }
  return codec.decode(out);
}

// -----------------------------------------------------------------------------
// Command line

/** The schedules at one step: what --describe shows (record-2025-11.md §4, §7). */
export interface StepDescription {
  step: number; lr: number; muonMomentum: number; weightDecay: number;
  window: [number, number]; windowKeys: [number, number]; attnScale: number; adamSteps: boolean;
}

/** The steps where a schedule changes piece (plus the first and the last): --describe's default. */
function scheduleChanges(cfg: Config): number[] {
  const N = cfg.numIterations, S = scheduledSteps(cfg);
  const piece = (s: number) => [longWindowBlocks(s, cfg), lrScale(s, cfg) === 1, s < cfg.muonWarmupSteps, s > N - cfg.muonCooldownSteps, s >= S].join();
  return Array.from({ length: N }, (_, s) => s).filter((s) => s === 0 || s === N - 1 || piece(s) !== piece(s - 1));
}

/** --describe: the resolved config, the schedules at `steps` and the final validation's windows and scale. */
export function describeRun(cfg: Config, steps = cfg.steps.length ? cfg.steps : scheduleChanges(cfg)) {
  const windows = (sched: AttnSchedule) => ({
    window: [sched.shortWindow, sched.longWindow].map((w) => (w - 1) / cfg.windowBlock) as [number, number],
    windowKeys: [sched.shortWindow, sched.longWindow] as [number, number], attnScale: sched.rope.attnScale,
  });
  const last = cfg.numIterations - 1;
  const packed = cfg.dataLayout === 'packed';
  return {
    config: cfg,
    // The batch's layout (record-2025-11.md §8): per micro-step, `streams` streams of `tokens` (packed) or rows.
    data: {
      layout: cfg.dataLayout, batchTokens: cfg.batchTokens, text: layoutText(cfg),
      ...(packed ? { streams: cfg.batchTokens / cfg.streamLen, streamLen: cfg.streamLen, documentCut: cfg.seqLen, valStreamLen: cfg.valStreamLen }
        : { rows: cfg.batchTokens / cfg.seqLen, seqLen: cfg.seqLen, deviceBatch: cfg.deviceBatch }),
    },
    steps: steps.map((step): StepDescription => ({
      step, lr: lrScale(step, cfg), muonMomentum: muonMomentumAt(step, cfg), weightDecay: weightDecayAt(step, cfg),
      ...windows(attnScheduleAt(longWindowBlocks(step, cfg), ropeAt(step, cfg), cfg)), adamSteps: adamStepsAt(step, cfg),
    })),
    finalValidation: { step: cfg.numIterations, ...windows(finalValSchedule(longWindowBlocks(last, cfg), ropeAt(last, cfg), cfg)) },
  };
}

/** describeRun as text: the flags by section, then one line a step. */
export function describeText(d: ReturnType<typeof describeRun>): string {
  const lines: string[] = [];
  for (const [group, title] of Object.entries(GROUPS)) {
    lines.push(`${title}:`, ...KEYS.filter((k) => FLAGS[k].group === group).map((k) => `  ${flagOf(k)} ${fmt(d.config[k])}`));
  }
  const f = (x: number, digits: number) => x.toFixed(digits);
  lines.push('', `data: ${d.data.text}`);
  lines.push('', 'step   lr       momentum  wd λ       window S,L (blocks)  keys S,L     α         Adam steps');
  for (const s of d.steps) {
    lines.push(`${String(s.step).padEnd(6)} ${f(s.lr, 5)}  ${f(s.muonMomentum, 5)}   ${f(s.weightDecay, 6)}   ${s.window.join(',').padEnd(20)} ` +
      `${s.windowKeys.join(',').padEnd(12)} ${f(s.attnScale, 6)}  ${s.adamSteps ? 'yes' : 'no'}`);
  }
  const v = d.finalValidation;
  lines.push(`final validation (step ${v.step}): window S,L ${v.window.join(',')} blocks (${v.windowKeys.join(',')} keys), α ${f(v.attnScale, 6)}`);
  return lines.join('\n');
}

/**
 * How many processes a run without a launcher starts: `--gpus`, else every visible GPU for the speedrun on cuda.
 * The short preset is one GPU's run (many of them, one after another, make an ablation).
 */
export function defaultGpus(overrides: Partial<Config>, base: Config): number {
  if (overrides.gpus) return overrides.gpus;
  if (base.preset === 'tiny' || base.preset === 'short' || !['auto', 'cuda'].includes(base.backend)) return 1;
  const count = visibleGpuCount();
  if (count <= 1) return 1;
  return base.preset === 'speedrun' || hasFinewebShards(base) ? count : 1;
}

const hasFinewebShards = (base: Config) => {
  const dataDir = path.resolve(REPO_ROOT, base.dataDir);
  return globShards(dataDir, base.trainFiles).length > 0 && globShards(dataDir, base.valFiles).length > 0;
};

/** --preset auto: the speedrun on a GPU backend with FineWeb shards, else tiny; and why. */
function autoPreset(gpuBackend: boolean, base: Config): { preset: 'speedrun' | 'tiny'; why: string } {
  const fineweb = hasFinewebShards(base);
  return {
    preset: gpuBackend && fineweb ? 'speedrun' : 'tiny',
    why: `${gpuBackend ? 'GPU backend' : 'no GPU backend'}, ${fineweb ? 'FineWeb shards found' : `no FineWeb shards in ${base.dataDir}`}`,
  };
}

/**
 * Whether this process is the child of the `tsx` command (`npx tsx train_gpt.ts`). On Ctrl-C that parent waits
 * 30 ms for its child's signal handler to answer, then kills it; a training step is longer. So under tsx the
 * trainer runs as a worker of the launcher, whose event loop is free to answer and which passes the signal on.
 */
const underTsxCli = () => process.execArgv.some((a) => /[\\/]tsx[\\/]dist[\\/]preflight\.cjs$/.test(a));

/**
 * What to do about an error, where we know: out of device memory (the activations scale with the device batch,
 * the global batch does not). The wasm backend runs out of its 4 GiB heap as `table index is out of bounds`
 * or `Aborted()`.
 */
export function errorHint(message: string): string {
  return /out of (device )?memory|table index is out of bounds|^Aborted\(/i.test(message)
    ? ' (out of memory? lower --device-batch with --data-layout rows (gradient accumulation keeps the global batch), or --stream-len with packed (other streams))' : '';
}

/** Parses flags, launches workers or picks backend and preset and trains. Returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const t = performance.now();
  const interrupt = { requested: false };
  const onSigint = ctrlCHandler(() => {
    interrupt.requested = true;
    console.error('\ninterrupt: stopping after this step (Ctrl-C again to stop now)');
  }, () => process.exit(130)); // a second Ctrl-C stops at once
  // A worker of our launcher (an IPC channel) stops as on Ctrl-C when the launcher is gone, and for good if that stalls.
  const onLauncherGone = () => {
    console.error(`rank ${process.env.RANK}: the launcher is gone; stopping after this step`);
    interrupt.requested = true;
    setTimeout(() => process.exit(1), 60_000).unref();
  };
  let collective: Collective = soloCollective;
  try {
    const { overrides, help } = parseFlags(argv);
    if (help) { console.log(helpText()); return 0; }
    if (overrides.describe) {
      // No backend to choose by: auto describes the speedrun.
      const { cfg, notes } = resolveConfig(overrides.preset && overrides.preset !== 'auto' ? overrides.preset : 'speedrun', overrides);
      const d = describeRun(cfg);
      console.log(cfg.json ? JSON.stringify(d, null, 2) : [...notes, describeText(d)].join('\n'));
      return 0;
    }
    const base = { ...DEFAULTS, ...overrides } as Config;
    const world = worldFromEnv();
    if (!world.launched) {
      const n = defaultGpus(overrides, base);
      if (n > 1 || underTsxCli()) {
        const gpus = visibleGpuCount();
        const wantsGpu = base.backend === 'cuda' || base.backend === 'tensorflow' || (base.backend === 'auto' && gpus > 0);
        if (wantsGpu && n > 1 && n > gpus) throw new ConfigError(`--gpus ${n}: only ${gpus} GPU(s) visible`); // one rank: the backend says why it cannot load
        // Check the flags here, once, rather than in n workers that would each fail.
        const preset = overrides.preset && overrides.preset !== 'auto' ? overrides.preset : autoPreset(wantsGpu, base).preset;
        batchPlan(resolveConfig(preset, overrides).cfg, n);
        if (n > 1) console.log(`launcher: starting ${n} ranks${wantsGpu ? ', one per GPU' : ' (CPU workers)'}`);
        return await launch(n, argv);
      }
    } else if (overrides.gpus && overrides.gpus !== world.size) {
      throw new ConfigError(`--gpus ${overrides.gpus} disagrees with the launcher's WORLD_SIZE=${world.size}`);
    }
    const say = (s: string) => { if (world.rank === 0) console.log(s); };
    const backend = await selectBackend(base);
    backend.notes.forEach(say);
    let preset = overrides.preset ?? 'auto';
    if (preset === 'auto') {
      const auto = autoPreset(isGpuBackend(backend.name), base);
      preset = auto.preset;
      say(`preset auto: ${preset} (${auto.why})`);
    }
    const { cfg, notes } = resolveConfig(preset, overrides);
    notes.forEach(say);
    collective = await createCollective(world, backend.name, cfg.collective, cfg.collectiveTimeout * 1000);
    process.on('SIGINT', onSigint);
    if (world.launched && process.connected) process.on('disconnect', onLauncherGone);
    await train(cfg, { backend: backend.name, collective, interrupt, sampleTokens: 100, header: [`preset ${cfg.preset}; world size ${world.size}; wall time to start ${((performance.now() - t) / 1000).toFixed(1)}s`] });
    return 0;
  } catch (e) {
    const err = e as Error;
    if (err instanceof ConfigError) { console.error(`error: ${err.message}`); return 2; }
    if (err instanceof InterruptedError) { console.error(`stopped: ${err.message}`); return 130; }
    if (err instanceof TrainingError) { console.error(`stopped: ${err.message}`); return 1; }
    console.error(`error: ${err.message}${errorHint(err.message)}`);
    if (process.env.TSGPT_DEBUG) console.error(err.stack);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('disconnect', onLauncherGone);
    collective.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
