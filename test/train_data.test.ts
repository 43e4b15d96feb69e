// The data pipeline of train_gpt.ts: BOS-aligned training batches (TrainLoader) for any world size,
// contiguous validation slices (valBatches), document ids, the unigram entropy and shard globs.
//
// Synthetic shards make every token name its own position: token = shard·SHARD_SPAN + position, except
// at document starts, which hold BOS. So every row of a batch says which shard and offset it came from,
// and the expected sequence starts are derived from the tokens alone (the rule of speedrun.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GPT2_BOS, writeShard } from '../data/shard.ts';
import { TrainLoader, documentIds, globShards, unigramEntropy, valBatches, type HostBatch } from '../train_gpt.ts';
import { randomInt } from './seed.ts';

const BOS = GPT2_BOS;
const SHARD_SPAN = 12_000; // tokens per synthetic shard at most; 4 shards stay below BOS = 50256

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'train-data-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Synthetic { file: string; tokens: Uint16Array; shard: number }

/**
 * A shard of n tokens: a short non-BOS prefix, then documents of random length in [2, maxDoc] (maxDoc > T
 * gives documents that must be cut). Token at position i is shard·SHARD_SPAN + i, or BOS at a document start.
 */
function syntheticShard(dir: string, shard: number, n: number, maxDoc: number): Synthetic {
  assert.ok(n <= SHARD_SPAN);
  const tokens = new Uint16Array(n);
  for (let i = 0; i < n; i++) tokens[i] = shard * SHARD_SPAN + i;
  for (let s = randomInt(0, 3); s < n; s += randomInt(2, maxDoc)) tokens[s] = BOS;
  const file = join(dir, `shard_${shard}.bin`);
  writeShard(file, tokens);
  return { file, tokens, shard };
}

/** The sequence starts of one shard by the rule: the first document start, then each next one at or after start + T. */
function expectedStarts(tokens: Uint16Array, T: number): number[] {
  const starts: number[] = [];
  let from = 0;
  for (;;) {
    let s = from;
    while (s < tokens.length && tokens[s] !== BOS) s++;
    if (s >= tokens.length || s + T + 1 > tokens.length) return starts;
    starts.push(s);
    from = s + T;
  }
}

/** (shard, start) of row r of a batch, read back from the position-coded tokens. */
function rowOrigin(hb: HostBatch, r: number): { shard: number; start: number } {
  for (let t = 0; t < hb.T; t++) {
    const v = hb.inputs[r * hb.T + t];
    if (v !== BOS) return { shard: Math.floor(v / SHARD_SPAN), start: (v % SHARD_SPAN) - t };
  }
  throw new Error('a row of BOS tokens only');
}

/** Asserts that row r of hb is exactly shard[start .. start+T] as inputs and shifted targets. */
function assertRowIs(hb: HostBatch, r: number, src: Synthetic, start: number, what: string): void {
  const { T } = hb;
  assert.equal(hb.inputs[r * T], BOS, `${what}: the sequence starts with BOS`);
  assert.deepEqual(Array.from(hb.inputs.subarray(r * T, (r + 1) * T)), Array.from(src.tokens.subarray(start, start + T)), `${what}: inputs`);
  assert.deepEqual(Array.from(hb.targets.subarray(r * T, (r + 1) * T)), Array.from(src.tokens.subarray(start + 1, start + T + 1)), `${what}: targets are the inputs shifted by one`);
}

test('BOS alignment for world sizes 1, 2 and 8: every row starts at a document start, ranks are disjoint and together equal one rank with W·B rows', async (t) => {
  const dir = tempDir(t);
  const T = 16, B = 3, steps = 3;
  for (const W of [1, 2, 8]) {
    // Enough tokens for `steps` steps of W·B sequences (≤ 2.5·T tokens apart on average) plus slack.
    const src = syntheticShard(dir, W === 8 ? 2 : W - 1, Math.min(SHARD_SPAN, Math.ceil(steps * W * B * 2.5 * T) + 4 * T), Math.floor(2.5 * T));
    const starts = expectedStarts(src.tokens, T);
    assert.ok(starts.length >= steps * W * B, 'the synthetic shard holds enough sequences');
    const ranks = Array.from({ length: W }, (_, r) => new TrainLoader([src.file], T, B, W, r, BOS));
    const single = new TrainLoader([src.file], T, W * B, 1, 0, BOS);
    let cuts = 0;
    for (let s = 0; s < steps; s++) {
      const whole = await single.next();
      assert.equal(whole.B, W * B);
      const seen = new Set<number>();
      for (let r = 0; r < W; r++) {
        const hb = await ranks[r].next();
        assert.equal(hb.B, B);
        assert.equal(hb.T, T);
        for (let row = 0; row < B; row++) {
          const k = s * W * B + r * B + row; // global index of this sequence
          const { start } = rowOrigin(hb, row);
          assert.equal(start, starts[k], `W=${W} step ${s} rank ${r} row ${row}: start`);
          assertRowIs(hb, row, src, start, `W=${W} step ${s} rank ${r} row ${row}`);
          assert.ok(!seen.has(start), 'ranks never share a sequence in a step');
          seen.add(start);
          // The same row in the one-rank loader with W·B rows, same place in the order.
          assert.deepEqual(hb.inputs.subarray(row * T, (row + 1) * T), whole.inputs.subarray((r * B + row) * T, (r * B + row + 1) * T));
          assert.deepEqual(hb.targets.subarray(row * T, (row + 1) * T), whole.targets.subarray((r * B + row) * T, (r * B + row + 1) * T));
          // A document longer than T is cut: the next sequence starts at the next document start, past this one.
          const docLongerThanT = !Array.from(src.tokens.subarray(start + 1, start + T + 1)).includes(BOS);
          if (docLongerThanT) {
            let nextDoc = start + 1;
            while (src.tokens[nextDoc] !== BOS) nextDoc++;
            assert.ok(nextDoc > start + T);
            if (k + 1 < starts.length) assert.equal(starts[k + 1], nextDoc, 'the rest of a cut document is skipped');
            cuts++;
          }
        }
      }
      // Sequences never overlap: each starts at or after the previous one's last input token + 1.
      for (let k = s * W * B + 1; k < (s + 1) * W * B; k++) assert.ok(starts[k] >= starts[k - 1] + T);
    }
    assert.ok(cuts > 0, `W=${W}: the synthetic data has documents longer than T (got none; the test would not test cutting)`);
    // Every rank (and the single loader) is at the same place: each computed every rank's boundaries.
    for (const l of ranks) assert.deepEqual(l.state(), single.state());
  }
});

test('multi-shard: shards are read in order (the next one read ahead), a sequence never straddles two, and wrapping around sets `wrapped`', async (t) => {
  const dir = tempDir(t);
  const T = 16, B = 2, W = 2;
  const shards = [0, 1, 2].map((i) => syntheticShard(dir, i, randomInt(200, 400), 2 * T));
  const order = shards.flatMap((sh) => expectedStarts(sh.tokens, T).map((start) => ({ sh, start })));
  const firstPass = order.length;
  // Record which files are read, to see the next shard read before it is needed.
  const reads: string[] = [];
  const readFile = fsp.readFile;
  (fsp as { readFile: unknown }).readFile = (...args: Parameters<typeof fsp.readFile>) => { reads.push(String(args[0])); return readFile(...args); };
  syncBuiltinESMExports();
  t.after(() => { (fsp as { readFile: unknown }).readFile = readFile; syncBuiltinESMExports(); });

  const loaders = [0, 1].map((r) => new TrainLoader(shards.map((s) => s.file), T, B, W, r, BOS));
  const perStep = W * B, steps = Math.ceil((2 * firstPass + 3) / perStep);
  for (let s = 0; s < steps; s++) {
    for (let r = 0; r < W; r++) {
      const hb = await loaders[r].next();
      for (let row = 0; row < B; row++) {
        const k = s * perStep + r * B + row;
        const want = order[k % firstPass];
        const got = rowOrigin(hb, row);
        assert.equal(got.shard, want.sh.shard, `sequence ${k}: shard`);
        assertRowIs(hb, row, want.sh, want.start, `sequence ${k}`);
        // Every input and target token comes from the same shard.
        for (let i = 0; i < T; i++) {
          for (const v of [hb.inputs[row * T + i], hb.targets[row * T + i]]) if (v !== BOS) assert.equal(Math.floor(v / SHARD_SPAN), want.sh.shard);
        }
      }
      // `wrapped` turns on at the step that goes past the last shard back to the first, and stays on.
      const lastIndex = (s + 1) * perStep - 1;
      assert.equal(loaders[r].wrapped, lastIndex >= firstPass, `step ${s} rank ${r}: wrapped`);
    }
    if (s === 0) {
      assert.equal(reads.filter((f) => f === shards[0].file).length, W, 'each rank read shard 0');
      assert.ok(reads.includes(shards[1].file), 'shard 1 is read ahead while shard 0 is in use');
    }
  }
});

test('a shard holding fewer sequences than one step needs is read again (wrapping), not rejected', async (t) => {
  const dir = tempDir(t);
  const T = 8;
  const src = syntheticShard(dir, 0, 60, 10);
  const starts = expectedStarts(src.tokens, T);
  assert.ok(starts.length >= 1 && starts.length < 16, `the shard holds ${starts.length} sequences`);
  const B = starts.length * 2 + 1; // one step takes the shard more than twice over
  const hb = await new TrainLoader([src.file], T, B, 1, 0, BOS).next();
  for (let row = 0; row < B; row++) assertRowIs(hb, row, src, starts[row % starts.length], `row ${row}`);
});

test('resuming from state() continues identically, mid-shard, across a shard change and before the first batch', async (t) => {
  const dir = tempDir(t);
  const T = 16, B = 2, W = 2;
  const files = [0, 1, 2].map((i) => syntheticShard(dir, i, randomInt(250, 450), 3 * T).file);
  const original = [0, 1].map((r) => new TrainLoader(files, T, B, W, r, BOS));
  // A fresh loader reports the position it will start from, so a checkpoint taken before any step resumes.
  assert.deepEqual(original[0].state(), { file: 0, pos: 0 });
  const resumedAtStart = new TrainLoader(files, T, B, W, 1, BOS, original[0].state());
  assert.deepEqual(resumedAtStart.state(), { file: 0, pos: 0 }, 'state() before next() is the start position');
  assert.deepEqual(await resumedAtStart.next(), await new TrainLoader(files, T, B, W, 1, BOS).next());

  for (let step = 0; step < 40; step++) {
    const before = original[0].state();
    assert.deepEqual(original[1].state(), before, 'every rank holds the same position');
    if (step % 7 === 3) {
      // Resume both ranks from rank 0's state and compare the next few steps.
      const resumed = [0, 1].map((r) => new TrainLoader(files, T, B, W, r, BOS, before));
      assert.deepEqual(resumed[0].state(), before);
      const probe = [0, 1].map((r) => new TrainLoader(files, T, B, W, r, BOS, before)); // runs ahead, then discarded
      for (let k = 0; k < 5; k++) for (let r = 0; r < W; r++) assert.deepEqual(await resumed[r].next(), await probe[r].next());
      // …and the resumed loaders agree with the original from this point on.
      const again = [0, 1].map((r) => new TrainLoader(files, T, B, W, r, BOS, before));
      for (let r = 0; r < W; r++) assert.deepEqual(await again[r].next(), await original[r].next(), `step ${step} rank ${r}`);
      assert.deepEqual(again[0].state(), original[0].state());
    } else {
      for (let r = 0; r < W; r++) await original[r].next();
    }
  }
  assert.ok(original[0].state().file !== 0 || original[0].wrapped, 'the test went past the first shard');
  assert.ok(original[0].wrapped, 'the test wrapped around (resume points included every shard)');
});

test('a shard without any BOS is an error naming the file, also when it is reached later', async (t) => {
  const dir = tempDir(t);
  const T = 8;
  const noBos = join(dir, 'no_bos.bin');
  writeShard(noBos, Uint16Array.from({ length: 500 }, (_, i) => i % 50_000));
  await assert.rejects(new TrainLoader([noBos], T, 2, 1, 0, BOS).next(), (e: Error) => {
    assert.ok(e.message.includes(noBos), e.message);
    assert.match(e.message, new RegExp(`no document-start token ${BOS}`));
    return true;
  });
  const good = syntheticShard(dir, 0, 100, 12);
  const n = expectedStarts(good.tokens, T).length;
  const loader = new TrainLoader([good.file, noBos], T, 1, 1, 0, BOS);
  for (let i = 0; i < n; i++) await loader.next();
  await assert.rejects(loader.next(), (e: Error) => e.message.includes(noBos));
  // Shards too short for any sequence of T+1 tokens: an error, not an endless loop.
  const short = join(dir, 'short.bin');
  writeShard(short, [BOS, 1, 2, BOS, 3]);
  await assert.rejects(new TrainLoader([short, short], T, 1, 1, 0, BOS).next(), /no shard holds a document start followed by 9 tokens/);
  // Ranks outside the world, and no files at all, are refused at once.
  assert.throws(() => new TrainLoader([good.file], T, 1, 2, 2, BOS), /rank 2 is outside world size 2/);
  assert.throws(() => new TrainLoader([], T, 1, 1, 0, BOS), /no training shards/);
});

test('valBatches: contiguous slices, rank r at (s·W + r)·B·T, targets shifted by one; too small a shard is an error', () => {
  const n = randomInt(900, 1100);
  const tokens = Uint16Array.from({ length: n }, () => randomInt(0, 65535));
  const T = 8, B = 3, W = 4, span = W * B * T; // 96
  for (const valTokens of [n + 1000, 500, span]) {
    const want = Math.floor(Math.min(valTokens, n - 1) / span);
    for (let r = 0; r < W; r++) {
      const v = valBatches(tokens, valTokens, T, B, W, r, 'val.bin');
      assert.equal(v.steps, want, `valTokens ${valTokens}: steps`);
      for (let s = 0; s < v.steps; s++) {
        const hb = v.batch(s), off = (s * W + r) * B * T;
        assert.equal(hb.B, B);
        assert.equal(hb.T, T);
        assert.deepEqual(Array.from(hb.inputs), Array.from(tokens.subarray(off, off + B * T)), `step ${s} rank ${r}: inputs`);
        assert.deepEqual(Array.from(hb.targets), Array.from(tokens.subarray(off + 1, off + B * T + 1)), `step ${s} rank ${r}: targets`);
      }
    }
  }
  // The last target of the last slice is the token after it: a shard of exactly one span is one token short.
  assert.equal(valBatches(tokens.subarray(0, span + 1), 1e9, T, B, W, W - 1, 'val.bin').steps, 1);
  assert.throws(() => valBatches(tokens.subarray(0, span), 1e9, T, B, W, 0, 'val.bin'), (e: Error) => {
    assert.match(e.message, new RegExp(`validation shard \\(${span} tokens\\) is smaller than one validation batch \\(${span + 1} tokens\\)`));
    return true;
  });
  assert.throws(() => valBatches(tokens, span - 1, T, B, W, 0, 'val.bin'), /smaller than one validation batch/);
});

test('documentIds and unigramEntropy against hand-computed values', () => {
  const bos = 9;
  // Row 0 starts with BOS (document 0); row 1 starts inside a document (also 0) and has two BOS in a row.
  const tokens = [9, 1, 2, 9, 3, 9, /**/ 4, 9, 9, 5, 6, 7];
  assert.deepEqual(Array.from(documentIds(tokens, 2, 6, bos)), [0, 0, 0, 1, 1, 2, /**/ 0, 1, 2, 2, 2, 2]);
  assert.deepEqual(Array.from(documentIds([1, 2, 3], 1, 3, bos)), [0, 0, 0]);
  assert.deepEqual(Array.from(documentIds([9, 9, 9, 9], 2, 2, bos)), [0, 1, 0, 1]);

  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  close(unigramEntropy([1, 1, 2, 3]), 1.5 * Math.log(2)); // p = 1/2, 1/4, 1/4
  close(unigramEntropy([7, 7, 7]), 0);
  close(unigramEntropy(Uint16Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])), Math.log(10));
  close(unigramEntropy([5, 5, 5, 6]), -(0.75 * Math.log(0.75) + 0.25 * Math.log(0.25)));
});

test('globShards: `*` globs inside a folder, sorted, other characters literal; a missing folder gives none', (t) => {
  const dir = tempDir(t);
  for (const f of ['fineweb_train_000002.bin', 'fineweb_train_000001.bin', 'fineweb_train_000010.bin', 'fineweb_val_000000.bin',
    'fineweb_train_1xbin', 'xfineweb_train_000003.bin', 'fineweb_train_000004.bin.part', 'notes.txt']) writeFileSync(join(dir, f), '');
  mkdirSync(join(dir, 'sub'));
  assert.deepEqual(globShards(dir, 'fineweb_train_*.bin'),
    ['fineweb_train_000001.bin', 'fineweb_train_000002.bin', 'fineweb_train_000010.bin'].map((f) => join(dir, f)));
  assert.deepEqual(globShards(dir, 'fineweb_val_*.bin'), [join(dir, 'fineweb_val_000000.bin')]);
  assert.deepEqual(globShards(dir, '*.txt'), [join(dir, 'notes.txt')]);
  assert.deepEqual(globShards(dir, 'fineweb_train_00000[12].bin'), [], 'brackets are literal, not a character class');
  assert.deepEqual(globShards(join(dir, 'missing'), '*.bin'), []);
});
