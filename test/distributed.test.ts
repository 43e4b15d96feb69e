// Data parallelism on CPU backends: the TCP collective, the launcher (`--gpus N`), equal results for
// 1, 2 and 4 ranks at the same global batch, and the whole run stopping when a worker fails or on Ctrl-C.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as net from 'node:net';
import * as tf from '@tensorflow/tfjs-core';
import * as T from '../train_gpt.ts';
import { randomInt, tfSeed } from './seed.ts';

await tf.setBackend('cpu');
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'tsgpt-dist-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

const freePort = () => new Promise<number>((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
});

test('the TCP collective averages tensors across ranks (in rank order) and broadcasts from rank 0', async () => {
  const port = await freePort(), size = 3;
  const collectives = await Promise.all(Array.from({ length: size }, (_, rank) => T.tcpCollective({ size, rank, localRank: rank }, '127.0.0.1', port)));
  const inputs = collectives.map(() => [tf.randomNormal([3, 5], 0, 1, 'float32', tfSeed()), tf.randomNormal([7], 0, 1, 'float32', tfSeed())]);
  const outputs = await Promise.all(collectives.map((c, r) => c.allReduceMean(inputs[r])));
  for (let i = 0; i < 2; i++) {
    const expect = tf.addN(inputs.map((ts) => ts[i])).div(size);
    for (const out of outputs) {
      assert.deepEqual(out[i].shape, inputs[0][i].shape);
      assert.ok(tf.max(tf.abs(out[i].sub(expect))).dataSync()[0] < 1e-6);
    }
  }
  const got = await Promise.all(collectives.map((c) => c.broadcast(c.rank === 0 ? 'id-from-rank-0' : 'ignored')));
  assert.deepEqual(got, Array(size).fill('id-from-rank-0'));
  collectives.forEach((c) => c.close());
});

test('the TCP all-gather stacks every rank\'s tensors in rank order, and names a rank whose tensors differ', async (t) => {
  const port = await freePort(), size = 3;
  const collectives = await Promise.all(Array.from({ length: size }, (_, rank) => T.tcpCollective({ size, rank, localRank: rank }, '127.0.0.1', port)));
  t.after(() => collectives.forEach((c) => c.close()));
  const inputs = collectives.map(() => [tf.randomNormal([3, 5], 0, 1, 'float32', tfSeed()), tf.randomNormal([2, 1, 4], 0, 1, 'float32', tfSeed())]);
  const outputs = await Promise.all(collectives.map((c, r) => c.allGather(inputs[r])));
  for (const out of outputs)
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(out[i].shape, [size, ...inputs[0][i].shape]);
      assert.deepEqual(out[i].dataSync(), tf.stack(inputs.map((ts) => ts[i])).dataSync(), `tensor ${i}, rank order`);
    }
  const [solo] = await T.soloCollective.allGather([inputs[0][0]]);
  assert.deepEqual(solo.shape, [1, 3, 5]);
  assert.deepEqual(solo.dataSync(), inputs[0][0].dataSync());
  const wrong = collectives.map((c) => c.allGather([tf.ones([c.rank === 2 ? 4 : 3])]));
  wrong.slice(1).forEach((p) => p.catch(() => {})); // the other ranks fail when the sockets close after the test
  await assert.rejects(wrong[0], /rank 2 sent 4 values where rank 0 has 3: the ranks' tensors differ/);
});

test('the sharded optimiser step: each of 3 ranks orthogonalises every third Muon block of a shape, sends only those, and after the exchange every rank holds the whole step\'s weights and state, bit for bit', async (t) => {
  const port = await freePort(), size = 3;
  const connected = await Promise.all(Array.from({ length: size }, (_, rank) => T.tcpCollective({ size, rank, localRank: rank }, '127.0.0.1', port)));
  // Each rank's collective, counting the values it hands over: the step's exchange is one all-gather of its own blocks.
  const sent = connected.map(() => ({ gathered: 0, reduced: 0 }));
  const count = (ts: tf.Tensor[]) => ts.reduce((n, x) => n + x.size, 0);
  const collectives: T.Collective[] = connected.map((c, r) => ({
    ...c,
    allGather: (ts) => { sent[r].gathered += count(ts); return c.allGather(ts); },
    allReduceMean: (ts) => { sent[r].reduced += count(ts); return c.allReduceMean(ts); },
  }));
  // 4 layers of d 16: q, k, v, o and the MLP's two matrices (turned wide, [16, 64]) give shape groups of 2 to 16 blocks,
  // so a rank holds none, one or several of a group.
  const micro = { vocabSize: 64, bosToken: 63, numLayers: 4, modelDim: 16, numHeads: 2, headDim: 8, kvHeads: 2, noAttnLayers: [0], noMlpLayers: [],
    skip: 'none', valueEmbeds: 1, backout: false, seqLen: 8, windowBlock: 4, windowSchedule: [2], windowPattern: 'SLSL', valWindow: 2 };
  t.after(() => connected.forEach((c) => c.close())); // also when an assertion fails: open sockets would hold the run
  for (const optimizer of ['normuon', 'muon'] as const) {
    const cfg = T.resolveConfig('tiny', { ...micro, optimizer, weightDecay: 0.5 }).cfg;
    const models = Array.from({ length: size + 1 }, () => T.createModel(cfg)); // [the whole step's, rank 0's, 1's, 2's]
    const states = models.map((m) => T.createOptimizerState(m));
    // What an all-reduce of whole groups sent from each rank a step: every Muon weight's update and NorMuon state.
    const muonNames = [...models[0].params.keys()].filter((n) => models[0].info.get(n)!.opt === 'muon');
    const wholeGroups = muonNames.reduce((n, name) => n + count(states[0].slots.get(name)!), 0);
    sent.forEach((c) => { c.gathered = 0; c.reduced = 0; });
    for (const step of [0, 1, 2]) {
      const grads = new Map([...models[0].params].map(([n, v]) => [n, tf.randomNormal(v.shape, 0, 0.1, 'float32', tfSeed())]));
      T.optimizerStep(models[0], states[0], grads, step);
      await Promise.all(collectives.map((c, r) => T.shardedOptimizerStep(models[r + 1], states[r + 1], grads, step, c)));
      tf.dispose([...grads.values()]);
    }
    for (const [r, c] of sent.entries()) {
      assert.equal(c.reduced, 0, `${optimizer}: rank ${r} all-reduces nothing`);
      // a third of the blocks, plus the padding of groups that do not split evenly (8 MLP blocks: 3 a rank)
      assert.ok(c.gathered > 0 && c.gathered <= 0.4 * 3 * wholeGroups, `${optimizer}: rank ${r} sent ${c.gathered / 3} values a step, the whole groups are ${wholeGroups}`);
    }
    for (let r = 1; r <= size; r++) {
      for (const [name, p] of models[0].params) {
        assert.deepEqual(models[r].params.get(name)!.dataSync(), p.dataSync(), `${optimizer}: rank ${r - 1}'s ${name}`);
        states[0].slots.get(name)!.forEach((slot, k) => assert.deepEqual(states[r].slots.get(name)![k].dataSync(), slot.dataSync(), `${optimizer}: rank ${r - 1}'s ${name} slot ${k}`));
      }
    }
    const moved = T.createModel(cfg);
    assert.ok([...moved.params].some(([n, v]) => v.dataSync()[0] !== models[0].params.get(n)!.dataSync()[0]), 'the steps moved the weights');
    [...models, moved].forEach((m) => T.disposeModel(m));
    states.forEach((st) => T.disposeOptimizerState(st));
  }
});

test('a one-rank TCP collective (what --collective tcp|nccl builds for one process) reduces to the identity', async () => {
  const c = await T.tcpCollective({ size: 1, rank: 0, localRank: 0 }, '127.0.0.1', await freePort());
  const x = tf.randomNormal([4, 3], 0, 1, 'float32', tfSeed());
  const [y] = await c.allReduceMean([x]);
  assert.deepEqual(y.dataSync(), x.dataSync());
  assert.equal(await c.broadcast('only'), 'only');
  c.close();
  await assert.rejects(T.createCollective({ size: 1, rank: 0, localRank: 0 }, 'wasm', 'nccl'), /--collective nccl needs --backend cuda/);
});

test('a rank that disconnects makes the others fail instead of hanging', async () => {
  const port = await freePort();
  const [c0, c1] = await Promise.all([0, 1].map((rank) => T.tcpCollective({ size: 2, rank, localRank: rank }, '127.0.0.1', port)));
  c1.close();
  await assert.rejects(c0.allReduceMean([tf.ones([2])]), /rank 1 closed the connection/);
  c0.close();
});

test('worldFromEnv reads RANK/WORLD_SIZE/LOCAL_RANK and rejects bad values', () => {
  assert.deepEqual(T.worldFromEnv({}), { size: 1, rank: 0, localRank: 0, launched: false });
  assert.deepEqual(T.worldFromEnv({ WORLD_SIZE: '4', RANK: '2', LOCAL_RANK: '0' }), { size: 4, rank: 2, localRank: 0, launched: true });
  assert.throws(() => T.worldFromEnv({ WORLD_SIZE: '2', RANK: '2' }), /RANK=2 is outside WORLD_SIZE=2/);
  assert.throws(() => T.worldFromEnv({ WORLD_SIZE: 'x' }), /WORLD_SIZE/);
});

interface Run { code: number | null; out: string }
function run(args: string[], env: Record<string, string> = {}, onOutput?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'train_gpt.ts', ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    let out = '';
    const take = (d: Buffer) => { out += d.toString(); onOutput?.(out, child); };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('exit', (code) => resolve({ code, out }));
  });
}

// A micro model: 4 packed streams of 64 tokens = 256 tokens per step (4 micro-steps on 1 rank, 1 on 4), documents cut at 32.
const MICRO = ['--preset', 'tiny', '--backend', 'wasm', '--model-dim', '32', '--num-heads', '2', '--head-dim', '16', '--kv-heads', '2',
  '--num-layers', '2', '--window-pattern', 'SL', '--skip', 'none', '--backout', 'off', '--seq-len', '32', '--window-block', '8',
  '--batch-tokens', '256', '--stream-len', '64', '--val-tokens', '512', '--val-stream-len', '128', '--warmup-steps', '0', '--val-every', '0', '--seed', String(randomInt(0, 1e6))];

test('1 rank with accumulation, 2 ranks and 4 ranks at the same global batch end with the same parameters', { timeout: 240_000 }, async () => {
  const params: Float32Array[][] = [], valLosses: number[] = [];
  for (const gpus of [1, 2, 4]) {
    const dir = join(scratch, `ckpt${gpus}`);
    const r = await run([...MICRO, '--num-iterations', '3', '--gpus', String(gpus), '--save-checkpoint', '--checkpoint-dir', dir, '--log-dir', join(scratch, 'logs')]);
    assert.equal(r.code, 0, r.out);
    if (gpus > 1) assert.match(r.out, new RegExp(`launcher: starting ${gpus} ranks`));
    valLosses.push(Number(/final val_loss (\d+\.\d+)/.exec(r.out)?.[1]));
    const files = readdirSync(dir);
    assert.equal(files.length, 1, `one checkpoint from rank 0 only: ${files}`);
    const args = T.parseFlags(MICRO).overrides;
    const m = T.createModel(T.resolveConfig('tiny', args).cfg);
    const st = T.createOptimizerState(m);
    assert.equal(T.loadCheckpoint(join(dir, files[0]), m, st).step, 3);
    params.push([...m.params.values()].map((v) => v.dataSync() as Float32Array));
    T.disposeOptimizerState(st);
    T.disposeModel(m);
  }
  const init = T.createModel(T.resolveConfig('tiny', T.parseFlags(MICRO).overrides).cfg);
  const moved = [...init.params.values()].some((v, i) => Math.abs(v.dataSync()[0] - params[0][i][0]) > 1e-4);
  assert.ok(moved, 'training moved the parameters');
  // The validation loss is averaged over ranks' slices: the same number however many ranks share it.
  assert.ok(valLosses.every((v) => Number.isFinite(v) && Math.abs(v - valLosses[0]) < 2e-4), `val losses ${valLosses}`);
  for (const k of [1, 2]) {
    params[k].forEach((p, i) => {
      let worst = 0;
      for (let j = 0; j < p.length; j++) worst = Math.max(worst, Math.abs(p[j] - params[0][i][j]));
      assert.ok(worst < 2e-4, `${[1, 2, 4][k]} ranks: parameter ${i} differs from 1 rank by ${worst}`);
    });
  }
});

test('a worker that fails stops every worker; the launcher exits non-zero naming the rank', { timeout: 120_000 }, async () => {
  const r = await run([...MICRO, '--num-iterations', '50', '--gpus', '2', '--log-dir', join(scratch, 'logs')], { TSGPT_FAIL_AT: '1:2' });
  assert.notEqual(r.code, 0);
  assert.match(r.out, /fault injected at rank 1, step 2/);
  assert.match(r.out, /launcher: rank \d failed/);
});

test('Ctrl-C stops every worker after the same step; the launcher exits 130', { timeout: 120_000 }, async () => {
  let sent = false;
  const r = await run([...MICRO, '--num-iterations', '400', '--gpus', '2', '--print-every', '1', '--log-dir', join(scratch, 'logs')], {}, (out, child) => {
    if (!sent && /step 2\/400 train_loss/.test(out)) { sent = true; child.kill('SIGINT'); }
  });
  assert.ok(sent, r.out);
  assert.equal(r.code, 130, r.out);
  assert.match(r.out, /interrupted at step \d+\/400/);
});

test('more GPUs than visible is a clear error', async () => {
  const r = await run([...MICRO, '--backend', 'cuda', '--gpus', '3'], { CUDA_VISIBLE_DEVICES: '0' });
  assert.equal(r.code, 2, r.out);
  assert.match(r.out, /--gpus 3: only 1 GPU\(s\) visible/);
});

test('matmul autotuning is off only where every rank computes the same Muon updates itself (several ranks, --shard-optimizer off)', () => {
  const { cfg } = T.resolveConfig('speedrun', {});
  assert.equal(cfg.shardOptimizer, true, 'the speedrun shards its optimiser by default');
  assert.equal(T.matmulAutotuneAllowed(cfg, 1), true);
  assert.equal(T.matmulAutotuneAllowed(cfg, 8), true);
  assert.equal(T.matmulAutotuneAllowed({ ...cfg, shardOptimizer: false }, 1), true);
  assert.equal(T.matmulAutotuneAllowed({ ...cfg, shardOptimizer: false }, 2), false);
});
