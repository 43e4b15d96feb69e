import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, appendFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GPT2_BOS, SHARD_HEADER_BYTES, SHARD_MAGIC, SHARD_VERSION, ShardFormatError,
  parseShard, readShard, readShardHeader, readShardSync, writeShard,
} from '../data/shard.ts';
import { randomInt } from './seed.ts';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'shard-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function randomTokens(n: number): Uint16Array {
  const tokens = new Uint16Array(n);
  for (let i = 0; i < n; i++) tokens[i] = randomInt(0, 65535);
  tokens[0] = GPT2_BOS;
  return tokens;
}

/** Asserts that fn throws a ShardFormatError whose message names the file and matches `problem`. */
function assertShardError(fn: () => unknown, file: string, problem: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ShardFormatError, `expected ShardFormatError, got ${String(err)}`);
    assert.ok(err.message.includes(file), `message should name ${file}: ${err.message}`);
    assert.match(err.message, problem);
    return true;
  });
}

test('round-trip: random tokens written then read back by every reader', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'random.bin');
  const n = randomInt(10_000, 14_999);
  const tokens = randomTokens(n);
  writeShard(file, tokens);

  const bytes = readFileSync(file);
  assert.equal(bytes.byteLength, SHARD_HEADER_BYTES + 2 * n);
  assert.equal(bytes.readInt32LE(0), SHARD_MAGIC);
  assert.equal(bytes.readInt32LE(4), SHARD_VERSION);
  assert.equal(bytes.readInt32LE(8), n);
  for (let i = 3; i < 256; i++) assert.equal(bytes.readInt32LE(4 * i), 0, `header int ${i} should be zero`);
  assert.equal(bytes.readUInt16LE(SHARD_HEADER_BYTES + 2 * 7), tokens[7], 'tokens are little-endian uint16');

  assert.deepEqual(readShardSync(file), tokens);
  assert.deepEqual(await readShard(file), tokens);
  assert.deepEqual(readShardHeader(file), { numTokens: n });

  // A plain number array takes the checked path and gives the same file.
  const file2 = join(dir, 'from-array.bin');
  writeShard(file2, Array.from(tokens));
  assert.deepEqual(readFileSync(file2), bytes);
});

test('parseShard decodes a misaligned buffer and a zero-token shard', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'a.bin');
  const tokens = randomTokens(333);
  writeShard(file, tokens);
  const bytes = readFileSync(file);
  const shifted = new Uint8Array(bytes.byteLength + 1);
  shifted.set(bytes, 1);
  assert.deepEqual(parseShard(shifted.subarray(1), file), tokens);

  const empty = join(dir, 'empty.bin');
  writeShard(empty, []);
  assert.equal(readShardSync(empty).length, 0);
  assert.deepEqual(readShardHeader(empty), { numTokens: 0 });
});

test('bad magic, bad version, truncated, trailing bytes, short header: errors naming the file', (t) => {
  const dir = tempDir(t);
  const good = readFileSync((() => { const f = join(dir, 'good.bin'); writeShard(f, randomTokens(100)); return f; })());

  const badMagic = join(dir, 'bad_magic.bin');
  const b1 = Buffer.from(good); b1.writeInt32LE(12345, 0); writeFileSync(badMagic, b1);
  const badVersion = join(dir, 'bad_version.bin');
  const b2 = Buffer.from(good); b2.writeInt32LE(7, 4); writeFileSync(badVersion, b2);
  const truncated = join(dir, 'truncated.bin');
  writeFileSync(truncated, good); truncateSync(truncated, good.byteLength - 3);
  const trailing = join(dir, 'trailing.bin');
  writeFileSync(trailing, good); appendFileSync(trailing, Buffer.from([1, 2]));
  const short = join(dir, 'short.bin');
  writeFileSync(short, good.subarray(0, 100));

  const cases: [string, RegExp][] = [
    [badMagic, /bad magic 12345/],
    [badVersion, /version 7/],
    [truncated, /header says 100 tokens .* file has \d+ bytes \(truncated\)/],
    [trailing, /header says 100 tokens .* file has \d+ bytes \(trailing bytes\)/],
    [short, /shorter than the 1024-byte header/],
  ];
  for (const [file, problem] of cases) {
    assertShardError(() => readShardSync(file), file, problem);
    assertShardError(() => readShardHeader(file), file, problem);
    assertShardError(() => parseShard(readFileSync(file), file), file, problem);
  }
});

test('a missing file is a ShardFormatError naming it, from every reader', async (t) => {
  const file = join(tempDir(t), 'nope', 'fineweb_train_000001.bin');
  assertShardError(() => readShardSync(file), file, /no such file/);
  assertShardError(() => readShardHeader(file), file, /no such file/);
  await assert.rejects(readShard(file), (err: unknown) => err instanceof ShardFormatError && err.message.includes(file));
});

test('writeShard rejects tokens outside 0..65535 and leaves nothing behind', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'bad.bin');
  for (const bad of [65536, -1, 1.5, NaN]) {
    assert.throws(() => writeShard(file, [1, 2, bad, 3]), (err: unknown) =>
      err instanceof RangeError && err.message.includes(file) && err.message.includes('token 2'));
  }
  assert.deepEqual(readdirSync(dir), []);
});

test('atomic write: replaces an existing shard and leaves no temp file', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'shard.bin');
  writeShard(file, randomTokens(50));
  const second = randomTokens(80);
  writeShard(file, second);
  assert.deepEqual(readdirSync(dir), ['shard.bin']);
  assert.deepEqual(readShardSync(file), second);
  // Writing into a missing directory fails cleanly without creating anything.
  assert.throws(() => writeShard(join(dir, 'missing', 'x.bin'), [1]), /ENOENT/);
  assert.deepEqual(readdirSync(dir), ['shard.bin']);
  // A failing rename (the target is a non-empty directory) removes the temp file it had written.
  const blocked = join(dir, 'blocked.bin');
  mkdirSync(blocked);
  writeFileSync(join(blocked, 'keep'), 'x');
  assert.throws(() => writeShard(blocked, randomTokens(10)));
  assert.deepEqual(readdirSync(dir).sort(), ['blocked.bin', 'shard.bin']);
  assert.deepEqual(readdirSync(blocked), ['keep']);
});
