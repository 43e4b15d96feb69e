import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Tiktoken } from 'js-tiktoken/lite';
import gpt2Ranks from 'js-tiktoken/ranks/gpt2';
import {
  BUILTIN_SHARD_MAX_TOKENS, MAX_DOCUMENT_CHARS, builtinDocuments, ensureBuiltinCorpus, isValDocument, loadCodec, splitAtSentences,
  type BuiltinDocument, type Corpus, type CorpusTokenizer,
} from '../data/builtin_corpus.ts';
import { SHARD_HEADER_BYTES, readShardSync } from '../data/shard.ts';
import { randomInt } from './seed.ts';

const scratch = mkdtempSync(join(tmpdir(), 'builtin-corpus-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
let docsCache: BuiltinDocument[] | undefined;
const documents = async () => (docsCache ??= await builtinDocuments());

async function build(tokenizer: CorpusTokenizer, root: string): Promise<{ corpus: Corpus; logs: string[] }> {
  const logs: string[] = [];
  const corpus = await ensureBuiltinCorpus(tokenizer, { root, log: (m) => logs.push(m) });
  return { corpus, logs };
}

/** Splits a token stream at each BOS into document bodies; asserts the stream starts with BOS. */
function splitDocuments(tokens: Uint16Array, bos: number): Uint16Array[] {
  assert.equal(tokens[0], bos, 'a token stream must start with BOS');
  const docs: Uint16Array[] = [];
  let start = 1;
  for (let i = 1; i <= tokens.length; i++) {
    if (i === tokens.length || tokens[i] === bos) {
      docs.push(tokens.subarray(start, i));
      start = i + 1;
    }
  }
  return docs;
}

function concat(arrays: Uint16Array[]): Uint16Array {
  const out = new Uint16Array(arrays.reduce((n, a) => n + a.length, 0));
  arrays.reduce((off, a) => (out.set(a, off), off + a.length), 0);
  return out;
}

/** Checks shard structure and returns the train and val documents (bodies without BOS) found in the files. */
function readCorpusDocuments(corpus: Corpus): { train: Uint16Array[]; val: Uint16Array[] } {
  assert.ok(corpus.trainFiles.length >= 2, 'train must span several shards');
  corpus.trainFiles.forEach((f, i) => assert.equal(basename(f), `builtin_train_${String(i + 1).padStart(6, '0')}.bin`));
  assert.equal(basename(corpus.valFile), 'builtin_val_000000.bin');
  const shards = corpus.trainFiles.map((f) => readShardSync(f));
  for (const [i, s] of shards.entries()) {
    assert.ok(s.length <= BUILTIN_SHARD_MAX_TOKENS, `shard ${i} has ${s.length} tokens`);
    assert.equal(s[0], corpus.bosToken, `train shard ${i} must start with BOS`);
    assert.ok(s.every((t) => t < corpus.vocabSize), `train shard ${i} has a token ≥ vocabSize`);
  }
  const val = readShardSync(corpus.valFile);
  assert.ok(val.every((t) => t < corpus.vocabSize));
  assert.equal(corpus.trainTokens, shards.reduce((n, s) => n + s.length, 0));
  assert.equal(corpus.valTokens, val.length);
  return {
    train: shards.flatMap((s) => splitDocuments(s, corpus.bosToken)),
    val: splitDocuments(val, corpus.bosToken),
  };
}

function corpusFiles(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).sort().map((name) => [name, readFileSync(join(dir, name))]));
}

const bytesRootA = join(scratch, 'a');

test('long texts are cut at sentence ends into parts of at most MAX_DOCUMENT_CHARS, losing no words', async () => {
  const sentences = Array.from({ length: 200 }, (_, i) => `Sentence ${i} says ${'x'.repeat(randomInt(0, 89))}.`);
  const text = sentences.join(' ');
  const parts = splitAtSentences(text, 300);
  assert.ok(parts.length > 1);
  for (const p of parts) {
    assert.ok(p.length <= 300, `part of ${p.length} chars`);
    assert.match(p, /\.$/, 'every part ends at a sentence end');
  }
  assert.equal(parts.join(' '), text);
  assert.deepEqual(splitAtSentences('One sentence much longer than the limit. Short.', 10), ['One sentence much longer than the limit.', 'Short.']);
  const docs = await documents();
  assert.ok(docs.every((d) => d.text.length <= MAX_DOCUMENT_CHARS || !/[.!?]\s/.test(d.text.slice(0, -1))));
  assert.ok(docs.length > 5000, `${docs.length} documents`);
});

test('bytes corpus: every document once, BOS-prefixed, split train/val by the fixed rule, decodes to the text', async () => {
  const { corpus, logs } = await build('bytes', bytesRootA);
  assert.equal(logs.length, 1);
  assert.match(logs[0], /built the builtin bytes corpus .*6534 documents \(6217 train, 317 val\)/);
  assert.equal(corpus.dir, join(bytesRootA, 'bytes'));
  assert.equal(corpus.bosToken, 256);
  assert.equal(corpus.vocabSize, 257);

  const docs = await documents();
  assert.equal(new Set(docs.map((d) => d.sourceIndex)).size, 233 + 139, 'all State of the Union addresses and all Moby-Dick chapters');
  const { train, val } = readCorpusDocuments(corpus);
  const expectTrain = docs.filter((d) => !isValDocument(d.sourceIndex));
  const expectVal = docs.filter((d) => isValDocument(d.sourceIndex));
  assert.equal(train.length, expectTrain.length);
  assert.equal(val.length, expectVal.length);
  // Decoding is checked with Node's own UTF-8 decoder, independent of the module's codec.
  const utf8 = (t: Uint16Array) => Buffer.from(Uint8Array.from(t)).toString('utf8');
  train.forEach((t, i) => assert.equal(utf8(t), expectTrain[i].text, `train document ${i} (${expectTrain[i].source})`));
  val.forEach((t, i) => assert.equal(utf8(t), expectVal[i].text, `val document ${i} (${expectVal[i].source})`));
  // Disjoint: no val document's text is among the train documents.
  const trainTexts = new Set(expectTrain.map((d) => d.text));
  assert.ok(expectVal.every((d) => !trainTexts.has(d.text)));
  assert.ok(expectVal.some((d) => d.source.startsWith('Moby-Dick')) && expectVal.some((d) => d.source.startsWith('State')));

  // The module's codec agrees, and shows BOS as GPT-2 does.
  const codec = await loadCodec('bytes');
  const text = 'naïve “whale” 🐋';
  assert.deepEqual(Array.from(codec.encode(text)), Array.from(Buffer.from(text, 'utf8')));
  assert.equal(codec.decode([256, ...Array.from(codec.encode(text))]), '<|endoftext|>' + text);
});

test('deterministic: a second build elsewhere gives identical bytes', async () => {
  const rootB = join(scratch, 'b');
  await build('bytes', rootB);
  const a = corpusFiles(join(bytesRootA, 'bytes'));
  const b = corpusFiles(join(rootB, 'bytes'));
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [name, bytes] of a) assert.ok(bytes.equals(b.get(name)!), `${name} differs between builds`);
});

test('reuse: a valid corpus is returned without rebuilding or rewriting', async () => {
  const dir = join(bytesRootA, 'bytes');
  const before = readdirSync(dir).map((n) => statSync(join(dir, n)).mtimeMs);
  const first = await build('bytes', bytesRootA);
  const { corpus, logs } = await build('bytes', bytesRootA);
  assert.deepEqual(logs, []);
  assert.deepEqual(corpus, first.corpus);
  assert.deepEqual(readdirSync(dir).map((n) => statSync(join(dir, n)).mtimeMs), before);
});

test('a corrupted, truncated or incomplete corpus is rebuilt, and abandoned builds are cleaned up', async () => {
  const dir = join(bytesRootA, 'bytes');
  const pristine = corpusFiles(dir);
  const assertPristine = () => {
    const now = corpusFiles(dir);
    assert.deepEqual([...now.keys()], [...pristine.keys()]);
    for (const [name, bytes] of pristine) assert.ok(bytes.equals(now.get(name)!), `${name} not restored`);
  };

  // One flipped token in the middle of a shard (header intact).
  const shard = join(dir, 'builtin_train_000002.bin');
  const bytes = readFileSync(shard);
  bytes[SHARD_HEADER_BYTES + 2 * 1000] ^= 0x01;
  writeFileSync(shard, bytes);
  let { logs } = await build('bytes', bytesRootA);
  assert.match(logs[0], /unusable \(builtin_train_000002\.bin does not match its checksum/);
  assert.match(logs[1], /built the builtin bytes corpus/);
  assertPristine();

  // A truncated val shard.
  truncateSync(join(dir, 'builtin_val_000000.bin'), 5000);
  ({ logs } = await build('bytes', bytesRootA));
  assert.match(logs[0], /unusable \(.*builtin_val_000000\.bin.*truncated/);
  assertPristine();

  // A directory without its manifest (an interrupted copy, say) is rebuilt; so is a missing shard.
  rmSync(join(dir, 'manifest.json'));
  ({ logs } = await build('bytes', bytesRootA));
  assert.equal(logs.length, 1);
  assert.match(logs[0], /built the builtin bytes corpus/);
  assertPristine();
  rmSync(join(dir, 'builtin_train_000005.bin'));
  ({ logs } = await build('bytes', bytesRootA));
  assert.match(logs[0], /builtin_train_000005\.bin: no such file/);
  assertPristine();

  // Temp directories of dead builders are removed at the next build; a live builder's is left alone.
  const deadPid = 2 ** 22 + 1; // above Linux's largest pid_max, so no such process
  const dead = join(bytesRootA, `.bytes.building-${deadPid}-00c0ffee`);
  const live = join(bytesRootA, `.bytes.building-${process.pid}-00c0ffee`);
  mkdirSync(dead);
  mkdirSync(live);
  rmSync(join(dir, 'manifest.json'));
  await build('bytes', bytesRootA);
  assert.deepEqual(readdirSync(bytesRootA).sort(), [basename(live), 'bytes']);
  rmSync(live, { recursive: true });
});

test('two processes building the same corpus at once both get the complete corpus', async () => {
  const root = join(scratch, 'concurrent');
  const module = fileURLToPath(new URL('../data/builtin_corpus.ts', import.meta.url));
  const script = `import { ensureBuiltinCorpus } from ${JSON.stringify(module)};
    const c = await ensureBuiltinCorpus('bytes', { root: ${JSON.stringify(root)}, log: () => {} });
    console.log(JSON.stringify(c));`;
  const run = () => promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
  const [a, b] = await Promise.all([run(), run()]);
  assert.equal(a.stdout, b.stdout);
  assert.deepEqual(readdirSync(root), ['bytes'], 'no temp directory is left behind');
  const reference = corpusFiles(join(bytesRootA, 'bytes'));
  const built = corpusFiles(join(root, 'bytes'));
  for (const [name, bytes] of reference) assert.ok(bytes.equals(built.get(name)!), `${name} differs`);
});

test('gpt2 corpus: canonical GPT-2 tokens, BOS 50256, ≥ 100k val tokens, decodes to the text', async () => {
  const { corpus, logs } = await build('gpt2', join(scratch, 'gpt2'));
  assert.match(logs[0], /built the builtin gpt2 corpus/);
  assert.equal(corpus.bosToken, 50256);
  assert.equal(corpus.vocabSize, 50257);
  assert.ok(corpus.valTokens >= 100_000, `val has only ${corpus.valTokens} tokens`);
  assert.ok(corpus.trainTokens > 2_000_000, `train has only ${corpus.trainTokens} tokens`);

  const docs = await documents();
  const { train, val } = readCorpusDocuments(corpus);
  assert.equal(train.length + val.length, docs.length);
  // The tokens of document i as found in the files (train and val each keep the documents' order).
  const inFiles: Uint16Array[] = [];
  let nextTrain = 0;
  let nextVal = 0;
  docs.forEach((d) => inFiles.push(isValDocument(d.sourceIndex) ? val[nextVal++] : train[nextTrain++]));
  // A sample of documents against js-tiktoken's own (unmemoised) encoder, with a random offset each run.
  const tiktoken = new Tiktoken(gpt2Ranks);
  const offset = randomInt(0, 36);
  for (let i = offset; i < docs.length; i += 37) {
    const expected = tiktoken.encode(docs[i].text, [], []);
    assert.deepEqual(Array.from(inFiles[i]), expected, `document ${i} (${docs[i].source}) is not GPT-2's tokenisation`);
    assert.equal(tiktoken.decode(Array.from(inFiles[i])), docs[i].text);
  }
  // "<|endoftext|>" inside a text is ordinary text, never the BOS token.
  const codec = await loadCodec('gpt2');
  assert.ok(!Array.from(codec.encode('a <|endoftext|> b')).includes(50256));
  assert.equal(codec.decode(codec.encode('a <|endoftext|> b')), 'a <|endoftext|> b');
});

test('an unknown tokenizer is a clear error', async () => {
  await assert.rejects(ensureBuiltinCorpus('chars' as CorpusTokenizer, { root: scratch }), /unknown builtin corpus tokenizer 'chars'/);
});
