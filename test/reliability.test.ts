// Fault handling of train_gpt.ts and stats.ts (issue 17): bad data, bad checkpoints, resumed runs,
// signals sent for real, diverging runs, and workers of a killed launcher. The whole runs use a micro model
// on the built-in bytes corpus (a few seconds each) and are bounded in time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TrainLoader } from '../train_gpt.ts';
import { ShardFormatError, checkTokenIds, writeShard } from '../data/shard.ts';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'reliability-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// --- Data -------------------------------------------------------------------------------------------------

test('a shard holding a token id at or above the vocabulary is refused when it is loaded, naming the file', async (t) => {
  const dir = tempDir(t);
  const BOS = 256, T = 8;
  // Documents of bytes; one target (not an input: the last token of a sequence) is 400, past --vocab-size 320.
  const tokens = Array.from({ length: 64 }, (_, i) => (i % 16 === 0 ? BOS : 97 + (i % 7)));
  tokens[T] = 400;
  const bad = join(dir, 'train_bad.bin');
  writeShard(bad, tokens);
  await assert.rejects(new TrainLoader([bad], T, 2, 1, 0, BOS, undefined, 320).next(), (e: Error) => {
    assert.ok(e instanceof ShardFormatError, String(e));
    assert.match(e.message, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: token id 400 at position ${T} is outside the vocabulary \\(--vocab-size 320\\)`));
    return true;
  });
  assert.ok(await new TrainLoader([bad], T, 2, 1, 0, BOS, undefined, 401).next(), 'ids below the vocabulary are fine');
  assert.throws(() => checkTokenIds(Uint16Array.from([1, 2, 320]), 320, 'val.bin'), /val\.bin: token id 320 at position 2/);
  checkTokenIds(Uint16Array.from([1, 2, 319]), 320, 'val.bin');
});
