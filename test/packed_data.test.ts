// The 2025-11 record's data layout in train_gpt.ts (../shared/reference/record-2025-11.md §8.2–8.4): packed
// training streams (PackedLoader) with their properties read back from the streams themselves, the same streams
// for 1, 2 and 8 ranks, the shard-end discard, resuming, validation streams (valStreams) and the loss of a
// step (§8.3); the smear across documents (§3); and short whole runs under both layouts.
//
// Synthetic shards make every token name its own position: token = shard·SPAN + position, except at document
// starts, which hold BOS. A segment of a stream is then readable as the shard positions it came from.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { GPT2_BOS, writeShard } from '../data/shard.ts';
import * as T from '../train_gpt.ts';
import { randomInt, tfSeed } from './seed.ts';

await tf.setBackend('cpu');
const REPO = fileURLToPath(new URL('..', import.meta.url));
const BOS = GPT2_BOS;
const SPAN = 12_000; // tokens per synthetic shard at most; 4 shards stay below BOS = 50256

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'packed-data-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Shard { file: string; tokens: Uint16Array; shard: number; bos: number[] }

/** n tokens: a short prefix without BOS, then documents of random length in [2, maxDoc]. */
function syntheticShard(dir: string, shard: number, n: number, maxDoc: number): Shard {
  assert.ok(n <= SPAN);
  const tokens = new Uint16Array(n);
  for (let i = 0; i < n; i++) tokens[i] = shard * SPAN + i;
  const bos: number[] = [];
  for (let s = randomInt(0, 3); s < n - 1; s += randomInt(2, maxDoc)) { tokens[s] = BOS; bos.push(s); }
  const file = join(dir, `shard_${shard}.bin`);
  writeShard(file, tokens);
  return { file, tokens, shard, bos };
}

/** A stream's segments read back from its tokens: [shard, start, length] each, start the position of its BOS. */
function segmentsOf(hb: T.HostBatch, shards: Shard[]): [Shard, number, number][] {
  assert.equal(hb.B, 1, 'a packed micro-batch is one stream');
  const stream = [...hb.inputs, hb.targets[hb.T - 1]];
  assert.deepEqual(Array.from(hb.targets.subarray(0, hb.T - 1)), Array.from(hb.inputs.subarray(1)), 'targets are the inputs shifted by one');
  const out: [Shard, number, number][] = [];
  for (let i = 0; i < stream.length;) {
    assert.equal(stream[i], BOS, `the segment at stream position ${i} starts with a BOS`);
    let j = i + 1;
    while (j < stream.length && stream[j] !== BOS) j++;
    if (j - i === 1) {
      // A lone BOS names no position: only the last token of a stream can be one (documents hold ≥ 2 tokens).
      assert.equal(j, stream.length, 'a one-token segment ends the stream');
      out.push([out.at(-1)![0], -1, 1]);
    } else {
      const sh = shards[Math.floor(stream[i + 1] / SPAN)], start = (stream[i + 1] % SPAN) - 1;
      for (let k = i + 1; k < j; k++) assert.equal(stream[k], sh.tokens[start + k - i], 'a segment is consecutive tokens of one shard');
      assert.equal(sh.tokens[start], BOS, 'a segment starts at a document start');
      out.push([sh, start, j - i]);
    }
    i = j;
  }
  return out;
}

interface Doc { shard: Shard; doc: number; cut: boolean /* fewer tokens than the document holds */ }

/**
 * Asserts §8.2 on one step's streams (in step order): L + 1 tokens a stream, segments of whole documents or their
 * first `cut` tokens (a shorter piece only where the stream ends), documents one after another, the targets the
 * true next tokens except at a cut, where they are the next document's BOS. Returns the documents in order.
 */
function checkStep(streams: T.HostBatch[], shards: Shard[], L: number, cut: number, what: string): Doc[] {
  const docs: Doc[] = [];
  for (const [k, hb] of streams.entries()) {
    assert.equal(hb.T, L);
    const segs = segmentsOf(hb, shards);
    assert.equal(segs.reduce((n, [, , len]) => n + len, 0), L + 1, `${what} stream ${k}: exactly L + 1 tokens`);
    let at = 0; // stream position of the segment
    for (const [i, [sh, start, len]] of segs.entries()) {
      const doc = start < 0 ? docs.at(-1)!.doc + 1 : sh.bos.indexOf(start);
      assert.ok(doc >= 0 && doc < sh.bos.length, 'a document of the shard');
      // Documents one after another: the next one of the shard (any one, at the first document of a shard).
      if (docs.length && docs.at(-1)!.shard === sh) assert.equal(doc, docs.at(-1)!.doc + 1, `${what} stream ${k} segment ${i}: the next document`);
      const end = sh.bos[doc + 1] ?? sh.tokens.length, docLen = end - sh.bos[doc], last = i === segs.length - 1;
      assert.ok(len <= cut, `${what}: at most ${cut} tokens of a document`);
      assert.ok(len === Math.min(docLen, cut) || last, `${what} stream ${k} segment ${i}: ${len} tokens of a document of ${docLen}, cut at ${cut}, before the stream's end`);
      docs.push({ shard: sh, doc, cut: len < docLen });
      at += len;
      if (last) continue;
      // The target of the segment's last token: the next document's BOS; the true next token too unless cut.
      assert.equal(hb.targets[at - 1], BOS, `${what} stream ${k}: the target after a segment is the next document's BOS`);
      if (len < docLen) assert.notEqual(sh.tokens[sh.bos[doc] + len], BOS, 'at a cut the true next token is no BOS');
    }
  }
  return docs;
}

test('§8.2: every segment starts at a BOS and is one document\'s first ≤ cut tokens, documents in order, L + 1 tokens a stream; the same streams for 1, 2 and 8 ranks', async (t) => {
  const dir = tempDir(t);
  const L = 48, cut = 12, streams = 8, steps = 6;
  const shards = [0, 1, 2].map((i) => syntheticShard(dir, i, randomInt(900, 1400), 3 * cut));
  const files = shards.map((s) => s.file);
  const byRanks = new Map<number, T.HostBatch[][]>(); // world size → per step, the streams in step order
  for (const W of [1, 2, 8]) {
    const loaders = Array.from({ length: W }, (_, r) => new T.PackedLoader(files, L, cut, streams, W, r, BOS));
    const all: T.HostBatch[][] = [];
    for (let s = 0; s < steps; s++) {
      const step: T.HostBatch[] = Array(streams);
      for (let a = 0; a < streams / W; a++) for (let r = 0; r < W; r++) step[a * W + r] = await loaders[r].next(); // stream a·W + r: rank r, micro-step a
      all.push(step);
      for (const l of loaders) assert.deepEqual(l.state(), loaders[0].state(), 'every rank is at the same place');
    }
    byRanks.set(W, all);
  }
  let docs: Doc[] = [];
  for (let s = 0; s < steps; s++) {
    for (const W of [2, 8]) assert.deepEqual(byRanks.get(W)![s], byRanks.get(1)![s], `step ${s}: ${W} ranks hold the 1-rank streams`);
    const stepDocs = checkStep(byRanks.get(1)![s], shards, L, cut, `step ${s}`);
    if (docs.length && stepDocs[0].shard === docs.at(-1)!.shard) assert.equal(stepDocs[0].doc, docs.at(-1)!.doc + 1, `step ${s} starts at the next document`);
    docs.push(...stepDocs);
  }
  // Else the test would not test cutting: documents longer than the cut, and streams ending inside a document.
  assert.ok(docs.filter((d) => d.cut).length > steps * streams, `cuts at ${cut} occurred`);
  assert.ok(docs.at(-1)!.shard !== shards[0], 'the test went past the first shard');
});

test('§8.2: at a shard\'s end the step is discarded and built again from the next shard\'s first document, for any number of ranks', async (t) => {
  const dir = tempDir(t);
  const L = 40, cut = 10, streams = 4;
  // Shard 0 holds a little more than one step's documents (at most 10 tokens each are used): step 2 cannot fit.
  const shards = [syntheticShard(dir, 0, 260, 12), syntheticShard(dir, 1, 2000, 12)];
  const files = shards.map((s) => s.file);
  for (const W of [1, 4]) {
    const loaders = Array.from({ length: W }, (_, r) => new T.PackedLoader(files, L, cut, streams, W, r, BOS));
    const step = async () => {
      const out: T.HostBatch[] = Array(streams);
      for (let a = 0; a < streams / W; a++) for (let r = 0; r < W; r++) out[a * W + r] = await loaders[r].next();
      return out;
    };
    const first = checkStep(await step(), shards, L, cut, `W=${W} step 0`);
    assert.ok(first.every((d) => d.shard === shards[0]));
    const second = checkStep(await step(), shards, L, cut, `W=${W} step 1`);
    assert.ok(second.every((d) => d.shard === shards[1]), `W=${W}: the step that does not fit in shard 0 comes whole from shard 1`);
    assert.equal(second[0].doc, 0, 'from the first document of the next shard');
    assert.ok(shards[0].bos.length - 1 > first.at(-1)!.doc, 'shard 0 had documents left, too few for a step: they were discarded');
    assert.equal(loaders[0].wrapped, false);
  }
  // One shard, read again and again: `wrapped` is set; a shard that cannot hold one step is an error, not a loop.
  const loop = new T.PackedLoader([shards[0].file], L, cut, streams, 1, 0, BOS);
  for (let s = 0; s < 3 * streams; s++) await loop.next();
  assert.equal(loop.wrapped, true);
  await assert.rejects(new T.PackedLoader([shards[0].file], L, cut, 64, 1, 0, BOS).next(), /no shard holds the 64 stream\(s\) of 41 tokens of one step \(documents cut at 10\)/);
  assert.throws(() => new T.PackedLoader(files, L, cut, 6, 4, 0, BOS), /6 streams a step do not split over 4 ranks/);
});

test('resuming a packed loader from state() continues identically, across shard changes and discards; state() mid-step is refused; a checkpoint keeps it', async (t) => {
  const dir = tempDir(t);
  const L = 32, cut = 8, streams = 4, W = 2;
  const files = [0, 1, 2].map((i) => syntheticShard(dir, i, randomInt(300, 500), 20).file);
  const original = [0, 1].map((r) => new T.PackedLoader(files, L, cut, streams, W, r, BOS));
  assert.deepEqual(original[0].state(), { file: 0, pos: 0 }, 'before the first step, the start');
  const step = async (ls: T.PackedLoader[]) => { const out = []; for (let a = 0; a < streams / W; a++) for (const l of ls) out.push(await l.next()); return out; };
  let resumes = 0;
  for (let s = 0; s < 30; s++) {
    const before = original[0].state();
    if (s % 4 === 1) {
      const resumed = [0, 1].map((r) => new T.PackedLoader(files, L, cut, streams, W, r, BOS, before));
      assert.deepEqual(await step(resumed), await step(original), `step ${s}: the resumed loaders give the same streams`);
      assert.deepEqual(resumed[1].state(), original[0].state());
      resumes++;
    } else {
      await step(original);
    }
  }
  assert.ok(resumes > 5 && original[0].wrapped, 'resume points spread over every shard, the test wrapped around');
  await original[0].next();
  assert.throws(() => original[0].state(), /inside a step/);

  // Through a checkpoint file: the loader position comes back as saved.
  const { cfg } = T.resolveConfig('tiny', { modelDim: 16, numHeads: 2, headDim: 8, kvHeads: 2, numLayers: 2, windowPattern: 'SL', skip: 'none', backout: false, valueEmbeds: 0 });
  const m = T.createModel(cfg), st = T.createOptimizerState(m);
  const at = original[1].state(); // rank 1 is between steps
  assert.ok(at.pos > 0);
  const file = join(dir, 'ckpt', 'run_step9.ckpt');
  T.saveCheckpoint(file, m, st, { step: 9, loader: at, config: cfg, trainMs: 1 });
  const meta = T.loadCheckpoint(file, m, st);
  assert.deepEqual(meta.loader, at);
  const fromCkpt = [0, 1].map((r) => new T.PackedLoader(files, L, cut, streams, W, r, BOS, meta.loader));
  const fresh = [0, 1].map((r) => new T.PackedLoader(files, L, cut, streams, W, r, BOS, at));
  assert.deepEqual(await step(fromCkpt), await step(fresh));
  T.disposeOptimizerState(st);
  T.disposeModel(m);
});

test('§8.4 validation streams: consecutive tokens, rank r takes stream s·W + r, segments split at every BOS and no document cut; a short shard gives the longest stream that fits, said once', () => {
  const n = randomInt(3000, 4000);
  const tokens = Uint16Array.from({ length: n }, () => randomInt(0, 900));
  // Documents of up to 300 tokens (longer than any --seq-len here), not starting at position 0.
  for (let s = randomInt(5, 40); s < n; s += randomInt(2, 300)) tokens[s] = BOS;
  const L = 256;
  for (const W of [1, 2, 4]) {
    for (let r = 0; r < W; r++) {
      const v = T.valStreams(tokens, 1e9, L, W, r, 'val.bin');
      assert.equal(v.note, undefined);
      assert.equal(v.span, L);
      assert.equal(v.steps, Math.floor((n - 1) / (W * L)), `W=${W}: every stream that fits, a multiple of W`);
      for (let s = 0; s < v.steps; s++) {
        const hb = v.batch(s), c = s * W + r;
        assert.deepEqual([hb.B, hb.T], [1, L]);
        assert.deepEqual(Array.from(hb.inputs), Array.from(tokens.subarray(c * L, c * L + L)), `stream ${c}: inputs`);
        assert.deepEqual(Array.from(hb.targets), Array.from(tokens.subarray(c * L + 1, c * L + L + 1)), `stream ${c}: targets`);
        // Attention segments: tokens before the first BOS are one; each BOS starts the next; nothing else splits.
        const ids = T.documentIds(hb.inputs, 1, L, BOS);
        for (let i = 1; i < L; i++) assert.equal(ids[i], ids[i - 1] + (hb.inputs[i] === BOS ? 1 : 0), `stream ${c} position ${i}`);
      }
    }
  }
  // --val-tokens limits the streams; fewer tokens than W streams: one stream a rank of the longest length that fits.
  assert.equal(T.valStreams(tokens, 3 * L + 5, L, 1, 0, 'val.bin').steps, 3);
  const short = tokens.subarray(0, 1000);
  const v = T.valStreams(short, 1e9, L, 8, 3, 'val.bin');
  assert.deepEqual([v.steps, v.span], [1, 124]); // ⌊999 / 8⌋
  assert.deepEqual(Array.from(v.batch(0).inputs), Array.from(short.subarray(3 * 124, 4 * 124)));
  assert.match(v.note!, /^val: the validation shard val\.bin \(1000 tokens\) holds fewer than 8 stream\(s\) of --val-stream-len 256 tokens and their targets: validating on 8 stream\(s\) of 124 tokens$/);
  assert.match(T.valStreams(tokens, 600, L, 4, 0, 'val.bin').note!, /^val: --val-tokens 600 holds fewer than 4 stream\(s\) .*: validating on 4 stream\(s\) of 150 tokens$/);
  assert.throws(() => T.valStreams(tokens.subarray(0, 4), 1e9, L, 4, 0, 'val.bin'), /val\.bin: the validation shard \(4 tokens\) is smaller than one validation token per rank/);
});

/** A micro model on the cpu backend with random weights (zero-initialised projections would hide everything). */
function microModel(over: Partial<T.Config> = {}): T.Model {
  const { cfg } = T.resolveConfig('tiny', {
    vocabSize: 64, bosToken: 63, numLayers: 3, modelDim: 16, numHeads: 2, headDim: 8, kvHeads: 2, windowBlock: 4, windowSchedule: [2],
    windowPattern: 'SLS', valWindow: 2, skip: '0-2', backoutLayer: 1, valueEmbeds: 1, seqLen: 8, streamLen: 24, batchTokens: 96,
    fp8Head: false, // the weights perturbed below leave the FP8 head's range (its tests are test/fp8_head.test.ts)
    ...over,
  });
  const m = T.createModel(cfg);
  for (const v of m.params.values()) tf.tidy(() => v.assign(v.add(tf.randomNormal(v.shape, 0, 0.3, 'float32', tfSeed()))));
  return m;
}

const streamOf = (n: number) => {
  const inputs = Int32Array.from({ length: n }, () => randomInt(0, 61));
  for (let i = 0; i < n; i += randomInt(3, 9)) inputs[i] = 63;
  return { inputs, targets: Int32Array.from({ length: n }, () => randomInt(0, 61)), B: 1, T: n };
};

test('validation loss: the trunk freeing each layer and the head in slices give the mean token loss of the whole stream, and leak no tensor', () => {
  const m = microModel();
  const sched = T.attnScheduleAt(2, T.initRope(m.cfg), m.cfg);
  const hb = streamOf(61);
  const batch = T.toDevice(hb, 63);
  const want = tf.tidy(() => T.modelLoss(m, batch, sched, 'mean').dataSync()[0]);
  const before = tf.memory().numTensors;
  for (const rows of [61, 16, 7]) {
    const got = tf.tidy(() => T.evalLoss(m, batch, sched, rows).dataSync()[0]);
    assert.ok(Math.abs(got - want) < 1e-5 * want, `head in slices of ${rows}: ${got} vs ${want}`);
  }
  assert.equal(tf.memory().numTensors, before, 'no tensor outlives evalLoss');
  T.disposeBatch(batch);
  T.disposeModel(m);
});

test('§8.3: a step\'s gradient is (1/micro-steps)·Σ ∇(summed loss of each stream) and its loss the per-token mean', async (t) => {
  const dir = tempDir(t);
  const m = microModel();
  const cfg = m.cfg, sched = T.attnScheduleAt(2, T.initRope(cfg), cfg);
  const shard = join(dir, 'train.bin'), tokens = Array.from({ length: 3000 }, () => randomInt(0, 61));
  for (let s = 0; s < tokens.length; s += randomInt(2, 20)) tokens[s] = 63; // documents of 2 to 20 tokens, some cut at 8
  writeShard(shard, tokens);
  const streams = cfg.batchTokens / cfg.streamLen; // 4
  const batches: T.HostBatch[] = [];
  const probe = T.createLoader(cfg, [shard], { size: 1, rank: 0 });
  for (let k = 0; k < streams; k++) batches.push(await probe.next());
  // The reference, before the step changes the weights.
  let wantLoss = 0;
  const wantGrads = new Map<string, tf.Tensor>();
  for (const hb of batches) {
    const batch = T.toDevice(hb, 63);
    const { value, grads } = tf.variableGrads(() => T.modelLoss(m, batch, sched, 'sum'));
    wantLoss += value.dataSync()[0] / (hb.T * streams);
    for (const [name, g] of Object.entries(grads)) {
      const prev = wantGrads.get(name);
      wantGrads.set(name, prev ? prev.add(g.div(streams)) : g.div(streams));
    }
    tf.dispose([value, ...Object.values(grads)]);
    T.disposeBatch(batch);
  }
  // The step's all-reduce sees the gradients it is about to apply (one rank: it returns them unchanged).
  let seen: Float32Array[] = [];
  const recorder: T.Collective = { ...T.soloCollective, async allReduceMean(ts) { seen = ts.map((x) => x.dataSync() as Float32Array); return ts.map((x) => x.clone()); } };
  const st = T.createOptimizerState(m);
  const stats = await T.trainStep(m, st, T.createLoader(cfg, [shard], { size: 1, rank: 0 }), sched, streams, 0, recorder);
  const [loss] = await stats.data();
  assert.ok(Math.abs(loss - wantLoss) < 1e-5 * wantLoss, `train loss ${loss}, per-token mean ${wantLoss}`);
  const want = [...wantGrads.values()].map((g) => g.dataSync());
  assert.equal(seen.length, want.length + 1, 'the gradients and the loss statistics');
  want.forEach((w, i) => {
    let err = 0, norm = 0;
    for (let j = 0; j < w.length; j++) { err = Math.max(err, Math.abs(seen[i][j] - w[j])); norm = Math.max(norm, Math.abs(w[j])); }
    assert.ok(err <= 1e-4 * norm + 1e-7, `gradient ${i}: off by ${err} (largest entry ${norm})`);
  });
  tf.dispose([stats, ...wantGrads.values()]);
  T.disposeOptimizerState(st);
  T.disposeModel(m);
});

test('the smear crosses a document start with --smear-across-docs (the 2025-11 default), never with it off (2025-08\'s)', () => {
  assert.equal(T.resolveConfig('speedrun', {}).cfg.smearAcrossDocs, true);
  assert.equal(T.resolveConfig('speedrun', { recipe: '2025-08' }).cfg.smearAcrossDocs, false);
  assert.equal(T.resolveConfig('speedrun', { recipe: '2025-08' }).cfg.dataLayout, 'rows');
  assert.equal(T.resolveConfig('tiny', {}).cfg.dataLayout, 'packed');
  const n = 20, start = 9; // a second document starts at position 9
  const inputs = Int32Array.from({ length: n }, (_, i) => (i === 0 || i === start ? 63 : randomInt(0, 61)));
  const changed = Int32Array.from(inputs);
  changed[start - 1] = (changed[start - 1] + 1 + randomInt(0, 59)) % 62; // the first document's last token
  for (const across of [true, false]) {
    // Only the embedding, the smear and one MLP: a change reaches another position through the smear alone.
    const m = microModel({ smearAcrossDocs: across, numLayers: 2, noAttnLayers: [0, 1], skip: 'none', backout: false, valueEmbeds: 0, windowPattern: 'SS' });
    const sched = T.attnScheduleAt(2, T.initRope(m.cfg), m.cfg);
    const out = (ids: Int32Array) => tf.tidy(() => {
      const b = T.toDevice({ inputs: ids, targets: ids, B: 1, T: n }, 63);
      return T.headLogits(m, T.trunk(m, b.inputs, b.docIds, sched)).arraySync() as number[][];
    });
    const [a, b] = [out(inputs), out(changed)];
    const diff = (t: number) => Math.max(...a[t].map((x, j) => Math.abs(x - b[t][j])));
    if (across) assert.ok(diff(start) > 1e-4, `--smear-across-docs on: the BOS at ${start} receives the token before it (${diff(start)})`);
    else assert.ok(diff(start) < 1e-6, `--smear-across-docs off: the BOS at ${start} received the token before it (${diff(start)})`);
    assert.ok(diff(start + 1) < 1e-6, 'the smear reaches one token only');
    T.disposeModel(m);
  }
});

test('--describe shows the layout: packed streams under 2025-11, rows under 2025-08', () => {
  const packed = T.describeRun(T.resolveConfig('speedrun', {}).cfg, [0]);
  assert.deepEqual(packed.data, {
    layout: 'packed', batchTokens: 262_144, streams: 8, streamLen: 32_768, documentCut: 2048, valStreamLen: 262_144, text: packed.data.text,
  });
  assert.match(T.describeText(packed), /^data: packed: 262144 tokens a step = 8 stream\(s\) of 32768 tokens, one per micro-step \(batch 1\), .*cut at --seq-len 2048; validation: streams of 262144 consecutive tokens$/m);
  const rows = T.describeRun(T.resolveConfig('speedrun', { recipe: '2025-08' }).cfg, [0]);
  assert.equal(rows.data.layout, 'rows');
  assert.match(T.describeText(rows), /^data: rows: 262144 tokens a step = 128 rows of 2048 tokens from a document start, up to 16 per micro-step/m);
  // The batch must split into whole streams per rank.
  assert.deepEqual(T.batchPlan(T.resolveConfig('speedrun', {}).cfg, 2), { accum: 4, rows: 1, T: 32_768 });
  assert.throws(() => T.batchPlan(T.resolveConfig('speedrun', {}).cfg, 3), (e: unknown) => e instanceof T.ConfigError && e.message === '--batch-tokens 262144 must be a multiple of --stream-len × GPUs = 98304');
  assert.deepEqual(T.resolveConfig('speedrun', { deviceBatch: 8 }).notes, ['--device-batch 8 applies to --data-layout rows: a packed micro-step is one stream of --stream-len 32768 tokens']);
});

// --- Whole runs --------------------------------------------------------------------------------------------

interface Result { code: number | null; stdout: string; stderr: string }
function trainGpt(args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    for (const k of ['TSGPT_DEBUG', 'WORLD_SIZE', 'RANK', 'LOCAL_RANK']) delete env[k];
    const child = spawn(process.execPath, ['--import', 'tsx', 'train_gpt.ts', ...args], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('a tiny run trains under each layout: packed streams (the default) and rows (--recipe 2025-08)', { timeout: 240_000 }, async (t) => {
  const dir = tempDir(t);
  const base = ['--preset', 'tiny', '--backend', 'wasm', '--num-iterations', '8', '--val-every', '4', '--warmup-steps', '0', '--model-dim', '32', '--num-heads', '2',
    '--head-dim', '16', '--kv-heads', '2', '--batch-tokens', '1024', '--stream-len', '256', '--val-tokens', '2048', '--seed', String(randomInt(0, 1e6))];
  const runs = await Promise.all([
    trainGpt([...base, '--log-dir', join(dir, 'packed')]),
    trainGpt([...base, '--recipe', '2025-08', '--device-batch', '4', '--log-dir', join(dir, 'rows')]),
  ]);
  const batchLines = [
    /^batch: 1024 tokens\/step = 4 micro-step\(s\) × 1 rank\(s\) × one packed stream of 256 tokens \(documents cut at 128\); val: 2 step\(s\) of 1024 tokens a rank;/m,
    /^batch: 1024 tokens\/step = 2 micro-step\(s\) × 1 rank\(s\) × 4 × 128; val: 4 step\(s\) of 512 tokens a rank;/m,
  ];
  for (const [i, r] of runs.entries()) {
    const what = ['packed', 'rows'][i];
    assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, batchLines[i]);
    const log = readFileSync(join(dir, what, readdirSync(join(dir, what))[0]), 'utf8');
    const config = JSON.parse(/^config: (.*)$/m.exec(log)![1]) as T.Config;
    assert.deepEqual([config.dataLayout, config.smearAcrossDocs], i === 0 ? ['packed', true] : ['rows', false]);
    const vals = [...log.matchAll(/^step:(\d+)\/8 val_loss:(\d+\.\d+)/gm)].map((m) => Number(m[2]));
    assert.equal(vals.length, 3, `${what}: validations at 0, 4 and 8`);
    assert.ok(vals[2] < vals[0] - 0.5, `${what}: the val loss falls (${vals})`);
  }
});
