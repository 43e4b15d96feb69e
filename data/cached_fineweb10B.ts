// Downloads the speedrun's data, FineWeb 10B tokenised with GPT-2 (100 M tokens a shard), from the Hugging
// Face dataset repository kjj0/fineweb10B-gpt2: the val shard and the first N train shards.
//
//   npx tsx data/cached_fineweb10B.ts [N] [--dir data/fineweb10B] [--hub-url URL]
//
// Complete files are skipped, a partial `<file>.part` is resumed with a Range request, and every file's
// header is verified before `.part` is renamed to its final name. The hub endpoint is --hub-url, else
// $HF_ENDPOINT, else https://huggingface.co.

import { existsSync, mkdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { resolve, join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { fileDownloadInfo, HubApiError } from '@huggingface/hub';
import cliProgress from 'cli-progress';
import { ShardFormatError, readShardHeader } from './shard.ts';

export const FINEWEB_REPO = 'kjj0/fineweb10B-gpt2';
export const MAX_TRAIN_SHARDS = 103;
export const DEFAULT_TRAIN_SHARDS = 8;
export const DEFAULT_FINEWEB_DIR = fileURLToPath(new URL('fineweb10B', import.meta.url));
export const DEFAULT_HUB_URL = 'https://huggingface.co';

const USAGE = `usage: npx tsx data/cached_fineweb10B.ts [N] [--dir DIR] [--hub-url URL]
  N            number of train shards to fetch, 1..${MAX_TRAIN_SHARDS} (default ${DEFAULT_TRAIN_SHARDS}; 100 M tokens, 200 MB each)
  --dir DIR    where to put them (default data/fineweb10B)
  --hub-url    Hugging Face endpoint (default $HF_ENDPOINT, else ${DEFAULT_HUB_URL})`;

/** A failure to report as one line (no stack): what failed, on which file, and why. */
export class DownloadError extends Error {
  override name = 'DownloadError';
}

/** The val shard, then train shards 1..n. */
export function finewebFiles(numTrainShards: number): string[] {
  const name = (split: string, i: number) => `fineweb_${split}_${String(i).padStart(6, '0')}.bin`;
  return [name('val', 0), ...Array.from({ length: numTrainShards }, (_, i) => name('train', i + 1))];
}

/** The system error code behind a failed fetch (undici wraps it in `cause`, sometimes twice). */
function networkCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (typeof e.code === 'string') return e.code;
  }
  return undefined;
}

/** The innermost cause's message ("getaddrinfo ENOTFOUND huggingface.co", "connect ECONNREFUSED ..."). */
function networkReason(err: unknown): string {
  let reason = '';
  for (let e = err as Error | undefined; e; e = e.cause as Error | undefined) {
    if (e.message && e.message !== 'fetch failed') reason = e.message;
  }
  const code = networkCode(err);
  return code && !reason.includes(code) ? `${code}${reason ? `: ${reason}` : ''}` : reason || 'no answer';
}

/** A failed request as a one-line DownloadError; errors that are not network or hub failures pass through. */
function requestFailure(what: string, name: string, hubUrl: string, err: unknown): unknown {
  if (err instanceof HubApiError) {
    return new DownloadError(`${what} ${name} from ${hubUrl}/datasets/${FINEWEB_REPO}: the hub answered HTTP ${err.statusCode} (${err.message})`);
  }
  if (err instanceof TypeError && err.message === 'fetch failed') {
    return new DownloadError(`${what} ${name}: the network or the Hugging Face hub (${hubUrl}) is unreachable (${networkReason(err)})`);
  }
  return err;
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

export interface DownloadOptions {
  dir: string;
  hubUrl: string;
  log: (msg: string) => void;
  /** Show a cli-progress bar (on stderr, only where it is a terminal). */
  progress: boolean;
}

/** Downloads one file of the dataset into opts.dir unless it is already there and valid. */
export async function downloadShard(name: string, opts: DownloadOptions): Promise<void> {
  const file = join(opts.dir, name);
  const part = `${file}.part`;
  if (existsSync(file)) {
    try {
      const { numTokens } = readShardHeader(file);
      opts.log(`${name}: already complete (${numTokens} tokens), skipped`);
      return;
    } catch (err) {
      if (!(err instanceof ShardFormatError)) throw err;
      // Replaced only once a verified download is renamed over it.
      opts.log(`${name}: the existing file is invalid (${err.message}); downloading it again`);
    }
  }

  // The hub library resolves the file: its size and real URL (after the redirect to the CDN).
  let info: Awaited<ReturnType<typeof fileDownloadInfo>>;
  try {
    info = await fileDownloadInfo({ repo: { type: 'dataset', name: FINEWEB_REPO }, path: name, hubUrl: opts.hubUrl });
  } catch (err) {
    throw requestFailure('cannot look up', name, opts.hubUrl, err);
  }
  if (info === null) throw new DownloadError(`${name} is not in the dataset ${opts.hubUrl}/datasets/${FINEWEB_REPO}`);
  const size = info.size;

  let have = existsSync(part) ? statSync(part).size : 0;
  if (have > size) {
    opts.log(`${name}: the partial download is larger than the file (${have} > ${size} bytes); starting over`);
    have = 0;
  }
  const started = performance.now();
  let resumedFrom = have;
  if (have < size) {
    let response: Response;
    try {
      response = await fetch(info.url, have > 0 ? { headers: { Range: `bytes=${have}-` } } : {});
    } catch (err) {
      throw requestFailure('cannot download', name, opts.hubUrl, err);
    }
    // 206: the server resumes where the partial file ends; 200: it sends the whole file, so start over.
    const resumes = response.status === 206 && response.headers.get('content-range')?.startsWith(`bytes ${have}-`);
    if (!response.ok || !response.body || (response.status === 206 && !resumes)) {
      await response.body?.cancel();
      throw new DownloadError(`cannot download ${name} from ${info.url}: HTTP ${response.status} ${response.statusText}` +
        (response.status === 206 ? ` with an unexpected range (${response.headers.get('content-range')})` : ''));
    }
    resumedFrom = resumes ? have : 0;
    await streamToFile(name, response.body, part, resumedFrom, size, opts.progress);
    have = statSync(part).size;
    if (have !== size) {
      throw new DownloadError(`download of ${name} ended at ${have} of ${size} bytes; run again to resume`);
    }
  }

  try {
    readShardHeader(part);
  } catch (err) {
    if (!(err instanceof ShardFormatError)) throw err;
    rmSync(part, { force: true });
    throw new DownloadError(`${name}: the downloaded file is not a valid token shard (${err.message}); deleted it`);
  }
  renameSync(part, file);
  const seconds = (performance.now() - started) / 1000;
  const fetched = size - resumedFrom;
  opts.log(`${name}: downloaded ${mb(fetched)} MB in ${seconds.toFixed(1)} s (${mb(fetched / Math.max(seconds, 1e-3))} MB/s)` +
    (resumedFrom > 0 ? `, resumed after ${mb(resumedFrom)} MB` : ''));
}

/**
 * Appends (or writes, from 0) a response body to `part` with a progress bar, each chunk written before the
 * next is read, so everything received before an interruption is kept for the resume. Flushed to disk.
 */
async function streamToFile(name: string, body: ReadableStream<Uint8Array>, part: string, offset: number, size: number, progress: boolean): Promise<void> {
  const bar = new cliProgress.SingleBar({
    format: `${name} [{bar}] {percentage}% | {doneMB}/{sizeMB} MB | {speed} MB/s | ETA {eta_formatted}`,
  }, cliProgress.Presets.shades_classic);
  const started = performance.now();
  if (progress) bar.start(size, offset, { doneMB: mb(offset), sizeMB: mb(size), speed: '0.0' });
  let done = offset;
  let writing = false;
  const out = await open(part, offset > 0 ? 'a' : 'w');
  try {
    for await (const chunk of Readable.fromWeb(body) as AsyncIterable<Uint8Array>) {
      writing = true;
      await out.write(chunk);
      writing = false;
      done += chunk.byteLength;
      if (progress) {
        const seconds = Math.max((performance.now() - started) / 1000, 1e-3);
        bar.update(done, { doneMB: mb(done), speed: mb((done - offset) / seconds) });
      }
    }
    writing = true;
    await out.sync();
  } catch (err) {
    if (writing) throw new DownloadError(`cannot write ${part}: ${(err as Error).message}`);
    throw new DownloadError(`download of ${name} was interrupted after ${mb(done)} of ${mb(size)} MB ` +
      `(${networkReason(err)}); the network or the hub failed; run again to resume`);
  } finally {
    await out.close();
    if (progress) bar.stop();
  }
}

export async function downloadFineweb(numTrainShards: number, opts: DownloadOptions): Promise<void> {
  mkdirSync(opts.dir, { recursive: true });
  for (const name of finewebFiles(numTrainShards)) await downloadShard(name, opts);
}

class UsageError extends Error {}

function parseCommandLine(argv: string[]): { numTrainShards: number; dir: string; hubUrl: string } | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { dir: { type: 'string' }, 'hub-url': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (positionals.length > 1) throw new UsageError(`expected at most one argument N, got ${positionals.length}: ${positionals.join(' ')}`);
  const n = positionals[0] ?? String(DEFAULT_TRAIN_SHARDS);
  if (!/^\d+$/.test(n) || Number(n) < 1 || Number(n) > MAX_TRAIN_SHARDS) {
    throw new UsageError(`N must be a whole number of train shards from 1 to ${MAX_TRAIN_SHARDS}, got '${n}'`);
  }
  const hubUrl = values['hub-url'] ?? process.env.HF_ENDPOINT ?? DEFAULT_HUB_URL;
  const source = values['hub-url'] !== undefined ? '--hub-url' : process.env.HF_ENDPOINT !== undefined ? 'HF_ENDPOINT' : 'default';
  let url: URL;
  try {
    url = new URL(hubUrl);
  } catch {
    throw new UsageError(`${source} '${hubUrl}' is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`${source} '${hubUrl}' is not an http(s) URL`);
  if (values.dir === '') throw new UsageError('--dir is empty');
  return {
    numTrainShards: Number(n),
    dir: values.dir !== undefined ? resolve(values.dir) : DEFAULT_FINEWEB_DIR,
    hubUrl: hubUrl.replace(/\/+$/, ''),
  };
}

/** The command line: returns the exit code (0 done, 1 download failed, 2 bad usage). */
export async function main(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parseCommandLine>;
  try {
    args = parseCommandLine(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`error: ${err.message}\n${USAGE}`);
    return 2;
  }
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  try {
    await downloadFineweb(args.numTrainShards, {
      dir: args.dir, hubUrl: args.hubUrl, log: (msg) => console.log(msg), progress: process.stderr.isTTY === true,
    });
  } catch (err) {
    // One line, never a stack: download failures are explained; anything else is shown by its message.
    console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  console.log(`FineWeb val + ${args.numTrainShards} train shards ready in ${args.dir}`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
