// The .bin token shard format shared by every tool of the speedrun ecosystem (llm.c, modded-nanogpt):
// a header of 256 little-endian int32 (magic, version, number of tokens, then zeros) followed by that
// many little-endian uint16 tokens. Every document starts with GPT-2's <|endoftext|> token.

import { closeSync, fstatSync, fsyncSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';

export const SHARD_MAGIC = 20240520;
export const SHARD_VERSION = 1;
export const SHARD_HEADER_INTS = 256;
export const SHARD_HEADER_BYTES = SHARD_HEADER_INTS * 4;
export const GPT2_BOS = 50256; // <|endoftext|>, starts every document

/** Anything wrong with a shard file: missing, unreadable, bad magic or version, size disagreeing with the header. */
export class ShardFormatError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`token shard ${file}: ${problem}`);
    this.name = 'ShardFormatError';
  }
}

// A Uint16Array view over the file bytes is only correct where the host is little-endian (every platform
// Node runs a GPU on); elsewhere, and for misaligned buffers, tokens are decoded one by one.
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Checks a header against the file's total size; returns the token count. */
function checkHeader(header: DataView, fileBytes: number, file: string): number {
  if (fileBytes < SHARD_HEADER_BYTES) {
    throw new ShardFormatError(file, `file has ${fileBytes} bytes, shorter than the ${SHARD_HEADER_BYTES}-byte header`);
  }
  const magic = header.getInt32(0, true);
  if (magic !== SHARD_MAGIC) throw new ShardFormatError(file, `bad magic ${magic} (expected ${SHARD_MAGIC}); not a token shard`);
  const version = header.getInt32(4, true);
  if (version !== SHARD_VERSION) throw new ShardFormatError(file, `unsupported version ${version} (expected ${SHARD_VERSION})`);
  const numTokens = header.getInt32(8, true);
  if (numTokens < 0) throw new ShardFormatError(file, `header says ${numTokens} tokens`);
  const expected = SHARD_HEADER_BYTES + 2 * numTokens;
  if (fileBytes !== expected) {
    const what = fileBytes < expected ? 'truncated' : 'trailing bytes';
    throw new ShardFormatError(file, `header says ${numTokens} tokens (${expected} bytes) but file has ${fileBytes} bytes (${what})`);
  }
  return numTokens;
}

/** Turns an fs error into a ShardFormatError naming the file (no raw ENOENT stack for a missing shard). */
function fileError(err: unknown, file: string): never {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') throw new ShardFormatError(file, 'no such file');
  throw new ShardFormatError(file, `cannot read: ${(err as Error).message}`);
}

/** Validates a whole shard's bytes and returns its tokens (a view, not a copy, where alignment allows). */
export function parseShard(bytes: Uint8Array, file: string): Uint16Array {
  const numTokens = checkHeader(new DataView(bytes.buffer, bytes.byteOffset, Math.min(bytes.byteLength, SHARD_HEADER_BYTES)), bytes.byteLength, file);
  const start = bytes.byteOffset + SHARD_HEADER_BYTES;
  if (HOST_IS_LITTLE_ENDIAN && start % 2 === 0) return new Uint16Array(bytes.buffer, start, numTokens);
  const view = new DataView(bytes.buffer, start, 2 * numTokens);
  const tokens = new Uint16Array(numTokens);
  for (let i = 0; i < numTokens; i++) tokens[i] = view.getUint16(2 * i, true);
  return tokens;
}

export function readShardSync(file: string): Uint16Array {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    fileError(err, file);
  }
  return parseShard(bytes, file);
}

/** Async read, so the next shard can be read ahead while the current one trains. */
export async function readShard(file: string): Promise<Uint16Array> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    fileError(err, file);
  }
  return parseShard(bytes, file);
}

/** Checks that every token id is below `vocabSize` (one pass over tokens already in memory): an id past the
 * embedding table would read garbage rows, and a target past it gives a loss with no term for the target. */
export function checkTokenIds(tokens: Uint16Array, vocabSize: number, file: string): void {
  let max = 0, at = 0;
  for (let i = 0; i < tokens.length; i++) if (tokens[i] > max) { max = tokens[i]; at = i; }
  if (tokens.length && max >= vocabSize) {
    throw new ShardFormatError(file, `token id ${max} at position ${at} is outside the vocabulary (--vocab-size ${vocabSize}); wrong corpus or --vocab-size?`);
  }
}

/** Reads only the header, and checks that the file's size agrees with it. */
export function readShardHeader(file: string): { numTokens: number } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    fileError(err, file);
  }
  try {
    const header = new Uint8Array(SHARD_HEADER_BYTES);
    const got = readSync(fd, header, 0, SHARD_HEADER_BYTES, 0);
    const size = fstatSync(fd).size;
    return { numTokens: checkHeader(new DataView(header.buffer, 0, got), size, file) };
  } finally {
    closeSync(fd);
  }
}

/** Serialises tokens into shard bytes; rejects anything that is not an integer in 0..65535. */
export function encodeShard(tokens: ArrayLike<number>, file: string): Uint8Array {
  const n = tokens.length;
  if (n > 0x7fffffff) throw new RangeError(`writing ${file}: ${n} tokens do not fit the int32 header`);
  const bytes = new Uint8Array(SHARD_HEADER_BYTES + 2 * n);
  const view = new DataView(bytes.buffer);
  view.setInt32(0, SHARD_MAGIC, true);
  view.setInt32(4, SHARD_VERSION, true);
  view.setInt32(8, n, true);
  if (tokens instanceof Uint16Array && HOST_IS_LITTLE_ENDIAN) {
    new Uint16Array(bytes.buffer, SHARD_HEADER_BYTES, n).set(tokens);
    return bytes;
  }
  for (let i = 0; i < n; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t > 0xffff) {
      throw new RangeError(`writing ${file}: token ${i} is ${t}, outside the uint16 range 0..65535`);
    }
    view.setUint16(SHARD_HEADER_BYTES + 2 * i, t, true);
  }
  return bytes;
}

/** Writes a file atomically: a temp file beside it (ignored by git as *.part), fsync, then rename. */
export function writeFileAtomic(file: string, bytes: Uint8Array): void {
  const temp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.part`;
  try {
    const fd = openSync(temp, 'wx');
    try {
      for (let off = 0; off < bytes.byteLength; ) off += writeSync(fd, bytes, off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
}

/** Whether process `pid` is running (a signal 0 reaches it, or exists but may not be signalled). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temp files that writeFileAtomic left in `dir` when its process was killed mid-write; a temp
 * file of a process still running (another run writing into the same folder) is left alone. Returns the
 * files removed.
 */
export function removeStaleTempFiles(dir: string): string[] {
  const stale = readdirSync(dir).filter((f) => {
    const m = /\.(\d+)-[0-9a-f]{8}\.part$/.exec(f);
    return m !== null && !isRunning(Number(m[1]));
  }).map((f) => join(dir, f));
  for (const f of stale) rmSync(f, { force: true });
  return stale;
}

/** Writes a shard atomically; rejects tokens outside 0..65535. */
export function writeShard(file: string, tokens: ArrayLike<number>): void {
  writeFileAtomic(file, encodeShard(tokens, file));
}
