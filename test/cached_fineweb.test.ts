// The FineWeb downloader against a local stand-in for the Hugging Face hub (no network): the hub's
// resolve endpoint redirects to a "CDN" path that serves small valid shards with Range support.

import { test, before, after, mock } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeShard, GPT2_BOS, readShardSync } from '../data/shard.ts';
import { FINEWEB_REPO, finewebFiles, main } from '../data/cached_fineweb10B.ts';
import { randomInt } from './seed.ts';

const SCRIPT = fileURLToPath(new URL('../data/cached_fineweb10B.ts', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'fineweb-dl-test-'));

function fakeShard(numTokens: number): Uint8Array {
  const tokens = new Uint16Array(numTokens);
  for (let i = 0; i < numTokens; i++) tokens[i] = i % 1000 === 0 ? GPT2_BOS : randomInt(0, 50256);
  return encodeShard(tokens, 'fake');
}

// Served files: val and train 1..2 valid; train 3 has a bad magic; train 4 is cut off mid-body once.
const served = new Map<string, Uint8Array>([
  ['fineweb_val_000000.bin', fakeShard(30_000)],
  ['fineweb_train_000001.bin', fakeShard(150_000)],
  ['fineweb_train_000002.bin', fakeShard(120_000)],
  ['fineweb_train_000003.bin', (() => { const b = fakeShard(5_000); new DataView(b.buffer).setInt32(0, 1234, true); return b; })()],
  ['fineweb_train_000004.bin', fakeShard(200_000)],
]);
const dropOnce = new Set(['fineweb_train_000004.bin']);

interface Request { path: string; range: string | undefined }
let requests: Request[] = [];
let server: Server;
let hubUrl = '';

before(async () => {
  const resolvePrefix = `/datasets/${FINEWEB_REPO}/resolve/main/`;
  server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    requests.push({ path: url.pathname, range: req.headers.range });
    if (url.pathname.startsWith(resolvePrefix)) {
      const name = url.pathname.slice(resolvePrefix.length);
      if (!served.has(name)) {
        res.writeHead(404, { 'X-Error-Code': 'EntryNotFound', 'Content-Type': 'text/plain' }).end('Entry not found');
        return;
      }
      // Like the hub for an LFS file: a redirect to the CDN.
      res.writeHead(302, { Location: `/cdn/${name}`, 'X-Linked-Size': String(served.get(name)!.byteLength), 'X-Linked-ETag': `"${name}"` }).end();
      return;
    }
    const body = url.pathname.startsWith('/cdn/') ? served.get(url.pathname.slice(5)) : undefined;
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    const name = url.pathname.slice(5);
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    const end = range && range[2] ? Number(range[2]) + 1 : body.byteLength;
    if (start >= body.byteLength) {
      res.writeHead(416, { 'Content-Range': `bytes */${body.byteLength}` }).end();
      return;
    }
    const headers = { ETag: `"${name}"`, 'Accept-Ranges': 'bytes', 'Content-Length': String(end - start), 'Content-Type': 'application/octet-stream' };
    if (range) res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end - 1}/${body.byteLength}` });
    else res.writeHead(200, headers);
    const isProbe = end - start === 1;
    if (!isProbe && dropOnce.delete(name)) {
      // Send part of the body, give the client time to receive it, then cut the connection.
      res.write(body.subarray(start, start + Math.floor((end - start) / 3)), () => setTimeout(() => res.socket?.destroy(), 200));
      return;
    }
    res.end(body.subarray(start, end));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  hubUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server.close();
  rmSync(scratch, { recursive: true, force: true });
});

type Result = { code: number; stdout: string; stderr: string };

/** Runs the CLI as a user would, in a child process; resolves with its exit code and output (never rejects). */
function cli(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', SCRIPT, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** Runs the CLI's main() in this process (no process start-up), capturing what it prints. */
async function runMain(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const log = mock.method(console, 'log', (msg: unknown) => void stdout.push(String(msg)));
  const error = mock.method(console, 'error', (msg: unknown) => void stderr.push(String(msg)));
  const saved = Object.keys(env).map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, env);
  try {
    const code = await main(args);
    return { code, stdout: stdout.join('\n') + '\n', stderr: stderr.join('\n') };
  } finally {
    for (const [k, v] of saved) v === undefined ? delete process.env[k] : (process.env[k] = v);
    log.mock.restore();
    error.mock.restore();
  }
}

/** Data requests (not the 1-byte probes the hub library sends) per file. */
function dataRequests(name: string): Request[] {
  return requests.filter((r) => r.path === `/cdn/${name}` && r.range !== 'bytes=0-0');
}

function assertOneLineError(stderr: string, ...parts: (string | RegExp)[]): void {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected a one-line error, got:\n${stderr}`);
  assert.doesNotMatch(stderr, /^\s+at /m, 'no stack trace');
  for (const p of parts) typeof p === 'string' ? assert.ok(stderr.includes(p), `'${p}' missing from: ${stderr}`) : assert.match(stderr, p);
}

function assertSameFile(file: string, name: string): void {
  assert.ok(readFileSync(file).equals(served.get(name)!), `${file} differs from the served ${name}`);
}

test('full download of val + N train shards through the hub resolve URL', async () => {
  const dir = join(scratch, 'full');
  requests = [];
  const r = await cli(['2', '--dir', dir, '--hub-url', hubUrl]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readdirSync(dir).sort(), finewebFiles(2).sort(), 'no .part file left');
  for (const name of finewebFiles(2)) {
    assertSameFile(join(dir, name), name);
    assert.ok(requests.some((q) => q.path === `/datasets/${FINEWEB_REPO}/resolve/main/${name}`), `${name} was not resolved through the hub URL`);
    assert.deepEqual(dataRequests(name).map((q) => q.range), [undefined], `${name}: one whole-file request`);
  }
  assert.equal(readShardSync(join(dir, 'fineweb_train_000001.bin')).length, 150_000);
  assert.match(r.stdout, /fineweb_train_000002\.bin: downloaded/);
});

test('complete files are skipped without a request; a partial file is resumed with a Range request', async () => {
  const dir = join(scratch, 'resume');
  mkdirSync(dir);
  writeFileSync(join(dir, 'fineweb_val_000000.bin'), served.get('fineweb_val_000000.bin')!);
  writeFileSync(join(dir, 'fineweb_train_000001.bin'), served.get('fineweb_train_000001.bin')!);
  const have = randomInt(12_345, 22_344);
  writeFileSync(join(dir, 'fineweb_train_000002.bin.part'), served.get('fineweb_train_000002.bin')!.subarray(0, have));
  const valMtime = statSync(join(dir, 'fineweb_val_000000.bin')).mtimeMs;
  requests = [];
  // The endpoint through HF_ENDPOINT this time.
  const r = await runMain(['2', '--dir', dir], { HF_ENDPOINT: hubUrl });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /fineweb_val_000000\.bin: already complete \(30000 tokens\), skipped/);
  assert.match(r.stdout, /fineweb_train_000002\.bin: downloaded .* resumed after/);
  assert.ok(!requests.some((q) => q.path.endsWith('fineweb_val_000000.bin') || q.path.endsWith('fineweb_train_000001.bin')),
    'complete files must not be requested');
  assert.deepEqual(dataRequests('fineweb_train_000002.bin').map((q) => q.range), [`bytes=${have}-`]);
  assertSameFile(join(dir, 'fineweb_train_000002.bin'), 'fineweb_train_000002.bin');
  assert.equal(statSync(join(dir, 'fineweb_val_000000.bin')).mtimeMs, valMtime);
  assert.deepEqual(readdirSync(dir).sort(), finewebFiles(2).sort());
});

test('an invalid existing file is downloaded again and replaced', async () => {
  const dir = join(scratch, 'replace');
  mkdirSync(dir);
  const name = 'fineweb_val_000000.bin';
  writeFileSync(join(dir, name), served.get(name)!.subarray(0, 5000)); // truncated
  for (const n of finewebFiles(1).slice(1)) writeFileSync(join(dir, n), served.get(n)!);
  const r = await runMain(['1', '--dir', dir, '--hub-url', hubUrl]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /fineweb_val_000000\.bin: the existing file is invalid .*truncated.*downloading it again/);
  assertSameFile(join(dir, name), name);
});

test('a corrupt download is rejected: non-zero exit, the file named, nothing kept', async () => {
  const dir = join(scratch, 'corrupt');
  mkdirSync(dir);
  for (const n of finewebFiles(2)) writeFileSync(join(dir, n), served.get(n)!);
  const r = await runMain(['3', '--dir', dir, '--hub-url', hubUrl]);
  assert.equal(r.code, 1);
  assertOneLineError(r.stderr, 'fineweb_train_000003.bin', /not a valid token shard .*bad magic 1234/);
  assert.ok(!existsSync(join(dir, 'fineweb_train_000003.bin')));
  assert.ok(!existsSync(join(dir, 'fineweb_train_000003.bin.part')));
});

test('an interrupted download keeps its .part and the next run finishes it', async () => {
  const dir = join(scratch, 'interrupted');
  mkdirSync(dir);
  // Files before 4 are present (a valid stand-in for the corrupt 3), so the run goes straight to 4.
  for (const n of finewebFiles(3)) writeFileSync(join(dir, n), n === 'fineweb_train_000003.bin' ? fakeShard(10) : served.get(n)!);
  const name = 'fineweb_train_000004.bin';
  requests = [];
  const first = await runMain(['4', '--dir', dir, '--hub-url', hubUrl]);
  assert.equal(first.code, 1);
  assertOneLineError(first.stderr, name, /interrupted after .*run again to resume/);
  const part = join(dir, `${name}.part`);
  const have = statSync(part).size;
  assert.ok(have > 0 && have < served.get(name)!.byteLength, `partial file has ${have} bytes`);
  assert.ok(readFileSync(part).equals(served.get(name)!.subarray(0, have)));

  const second = await runMain(['4', '--dir', dir, '--hub-url', hubUrl]);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(dataRequests(name).map((q) => q.range), [undefined, `bytes=${have}-`]);
  assertSameFile(join(dir, name), name);
  assert.ok(!existsSync(part));
});

test('a file missing from the dataset is a clear error', async () => {
  const dir = join(scratch, 'missing');
  mkdirSync(dir);
  for (const n of finewebFiles(4)) writeFileSync(join(dir, n), n === 'fineweb_train_000003.bin' ? fakeShard(10) : served.get(n)!);
  const r = await runMain(['5', '--dir', dir, '--hub-url', hubUrl]);
  assert.equal(r.code, 1);
  assertOneLineError(r.stderr, `fineweb_train_000005.bin is not in the dataset ${hubUrl}/datasets/${FINEWEB_REPO}`);
});

test('offline: an unreachable hub gives a one-line message and a non-zero exit', async () => {
  // A port that was just open and is now closed: connection refused.
  const closed = createServer();
  await new Promise<void>((ok) => closed.listen(0, '127.0.0.1', ok));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((ok) => closed.close(ok));
  const dir = join(scratch, 'offline');
  const r = await cli(['--dir', dir], { HF_ENDPOINT: `http://127.0.0.1:${port}` });
  assert.equal(r.code, 1);
  assertOneLineError(r.stderr, 'fineweb_val_000000.bin', /network or the Hugging Face hub \(http:\/\/127\.0\.0\.1:\d+\) is unreachable/, 'ECONNREFUSED');
  assert.ok(!existsSync(join(dir, 'fineweb_val_000000.bin.part')));
});

test('bad N, unknown flags and bad URLs are usage errors naming the value', async () => {
  const cases: [string[], RegExp][] = [
    [['abc'], /N must be a whole number of train shards from 1 to 103, got 'abc'/],
    [['0'], /got '0'/],
    [['104'], /got '104'/],
    [['2.5'], /got '2\.5'/],
    [['1', '2'], /at most one argument N/],
    [['--bogus'], /Unknown option '--bogus'/],
    [['--dir'], /--dir/],
    [['1', '--hub-url', 'ftp://x'], /--hub-url 'ftp:\/\/x' is not an http\(s\) URL/],
  ];
  // In-process through main() (fast), then one case as a real process for its exit code.
  for (const [args, message] of cases) {
    const r = await runMain(args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit code`);
    assert.match(r.stderr, message);
    assert.match(r.stderr, /usage: npx tsx data\/cached_fineweb10B\.ts/);
  }
  const r = await cli(['7x']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^error: N must be a whole number .* got '7x'\nusage:/);
  assert.doesNotMatch(r.stderr, /^\s+at /m);
});
