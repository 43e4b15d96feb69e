// bench/step.ts (the training-step benchmark) on a CPU backend with the tiny preset, so CI runs it:
// its JSON holds consistent numbers, its FLOP count matches a hand count of the model, 2 ranks run through
// the launcher, a variant's model flags after --, and bad flags or an existing --out file are clear errors.
import '../tfjs_node.ts'; // gradients, chained ops and the cpu backend
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createModel, resolveConfig } from '../train_gpt.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bench = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'bench/step.ts', ...args], { cwd: root, encoding: 'utf8', timeout: 300_000 });

describe('bench/step.ts', () => {
  it('runs the tiny preset on wasm for 2 steps and writes consistent JSON', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-step-test-'));
    try {
      const out = path.join(dir, 'r.json');
      const r = bench(['--preset', 'tiny', '--backend', 'wasm', '--steps', '2', '--warmup', '1', '--collective', 'tcp', '--out', out]);
      assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /ms\/step \(median of 2\), \d+ tokens\/s per GPU/);
      const j = JSON.parse(fs.readFileSync(out, 'utf8'));
      const { cfg } = resolveConfig('tiny', {});
      assert.equal(j.backend, 'wasm');
      assert.equal(j.steps, 2);
      assert.equal(j.stepMs.length, 2);
      // One GPU's share of the tiny batch (2048 / 8 tokens) is less than one packed stream: one stream a step.
      assert.equal(j.dataLayout, 'packed');
      assert.equal(j.tokensPerStep, cfg.streamLen);
      assert.ok(j.msPerStep > 0 && j.stepMs.every((t: number) => t > 0));
      assert.ok(Math.abs(j.tokensPerSecond - j.tokensPerStep / (j.msPerStep / 1000)) < 1e-6 * j.tokensPerSecond);
      // FLOPs per token by hand: every 2-D weight other than the embedding tables and the head is a hidden matmul.
      tf.setBackend('cpu');
      const m = createModel(cfg);
      let hidden = 0;
      for (const [name, v] of m.params) if (v.rank === 2 && !/^(embed|value_embed\.\d+|head)$/.test(name) && !/(smear_gate|attn_gate|canon_)/.test(name)) hidden += v.size;
      const head = m.params.get('head')!.size;
      const attnLayers = cfg.numLayers - cfg.noAttnLayers.length;
      tf.dispose([...m.params.values()]);
      assert.equal(j.matmulParams, hidden);
      assert.equal(j.headParams, head);
      assert.equal(j.flopsPerToken, 6 * (hidden + head) + 12 * attnLayers * cfg.numHeads * cfg.headDim * cfg.seqLen);
      assert.equal(j.mfu, null, 'no MFU on a CPU backend');
      assert.equal(j.collective, 'tcp');
      assert.ok(j.allReduceMsPerStep > 0, 'the all-reduce of each timed step is timed');
      assert.match(r.stdout, /all-reduce \(tcp, one rank\): [\d.]+ ms per step/);
      assert.ok(j.peakMemoryBytes > 0);
      // never overwrites
      const again = bench(['--preset', 'tiny', '--backend', 'wasm', '--steps', '1', '--warmup', '0', '--out', out]);
      assert.equal(again.status, 2);
      assert.match(again.stderr, /--out .*r\.json exists; results are never overwritten/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs 2 ranks through the launcher (--gpus 2): rank 0 alone reports, per GPU, with the all-reduce time', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-step-test-'));
    try {
      const out = path.join(dir, 'r.json');
      const r = bench(['--preset', 'tiny', '--backend', 'wasm', '--gpus', '2', '--steps', '2', '--warmup', '1', '--out', out]);
      assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
      assert.equal(r.stdout.match(/ms\/step \(median of 2\)/g)?.length, 1, 'one report, from rank 0');
      assert.match(r.stdout, /all-reduce \(tcp, 2 ranks\): [\d.]+ ms per step/);
      const j = JSON.parse(fs.readFileSync(out, 'utf8'));
      const { cfg } = resolveConfig('tiny', {});
      assert.equal(j.gpus, 2);
      assert.equal(j.tokensPerStep, cfg.streamLen, 'tokens per step are per rank');
      assert.equal(j.collective, 'tcp');
      assert.ok(j.allReduceMsPerStep > 0);
      assert.deepEqual(fs.readdirSync(dir), ['r.json'], 'one result file');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('trains a variant given as train_gpt.ts flags after --, and says so', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-step-test-'));
    try {
      const out = path.join(dir, 'r.json');
      const r = bench(['--preset', 'tiny', '--backend', 'wasm', '--steps', '1', '--warmup', '0', '--out', out, '--', '--canon', 'AC', '--mlp', 'swiglu']);
      assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /model flags --canon AC --mlp swiglu/);
      assert.deepEqual(JSON.parse(fs.readFileSync(out, 'utf8')).modelFlags, ['--canon', 'AC', '--mlp', 'swiglu']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--gpus over the visible GPUs is a clear error', () => {
    const r = bench(['--gpus', '64']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^bench\/step\.ts: --gpus 64: only \d+ GPU\(s\) visible\n$/);
  });

  it('rejects bad flags with a one-line reason and the usage', () => {
    for (const [args, re] of [[['--steps', '0'], /--steps 0: expected an integer ≥ 1/], [['--backend', 'tpu'], /--backend tpu: expected one of cuda, tensorflow, wasm(?!,)/],
      [['--gpus', '0'], /--gpus 0: expected an integer ≥ 1/], [['--bogus'], /Unknown option '--bogus'/],
      [['--', '--bogus'], /after --: .*--bogus/]] as const) {
      const r = bench([...args]);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, re);
      assert.match(r.stderr, /usage: npm run bench/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
    // a model flag's bad value: train_gpt.ts's own message, as the trainer gives it
    const r = bench(['--', '--canon', 'XY']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--canon "XY": expected none or a subset of ABCD/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });
});
