// sample.ts: text from a model that train_gpt.ts trained.
//
//   npx tsx sample.ts --checkpoint FILE [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--seed S] [--backend B]
//
// The checkpoint holds the run's config, so the model is rebuilt with train_gpt.ts's createModel and read with
// its loadCheckpoint; train_gpt.ts's generate() samples (the main job uses it too, to end with a sample).
// Text is GPT-2 BPE for the speedrun and builtin-gpt2 models, bytes for builtin-bytes.
import './tfjs_node.ts';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import * as path from 'node:path';
import { loadCodec } from './data/builtin_corpus.ts';
import * as T from './train_gpt.ts';

const { ConfigError } = T;

/** Rebuilds the model of a checkpoint (its config is in the file); a file of another format is a ConfigError. */
export function loadModel(file: string): { model: T.Model; steps: number } {
  const { header } = T.readCheckpoint(file, '--checkpoint');
  if (!header.config) throw new ConfigError(`--checkpoint ${file}: the checkpoint holds no config (written by an older train_gpt.ts)`);
  const model = T.createModel(header.config);
  const st = T.createOptimizerState(model);
  try {
    T.loadCheckpoint(file, model, st, undefined, '--checkpoint');
  } catch (e) {
    T.disposeModel(model);
    throw e;
  } finally {
    T.disposeOptimizerState(st);
  }
  return { model, steps: header.step };
}

const OPTIONS = {
  checkpoint: { type: 'string' },
  prompt: { type: 'string', default: '' },
  tokens: { type: 'string', default: '200' },
  temperature: { type: 'string', default: '0.8' },
  'top-k': { type: 'string', default: '40' },
  seed: { type: 'string', default: '0' },
  backend: { type: 'string', default: 'auto' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const USAGE = `Text from a train_gpt.ts checkpoint (--save-checkpoint writes one).

Usage: npx tsx sample.ts --checkpoint FILE [options]
  --prompt TEXT      text to continue (default: a new document)
  --tokens N         tokens to generate, ≥ 1 (default 200; stops early at a document end)
  --temperature T    ≥ 0; 0 always takes the most likely token (default 0.8)
  --top-k K          draw among the K most likely tokens, 0 for all (default 40)
  --seed S           integer seed of the draws (default 0)
  --backend B        auto, cuda, tensorflow or wasm (default auto)
`;

/** Runs the command; returns the exit status (0, 1 on failure, 2 on bad usage). */
export async function main(argv: string[]): Promise<number> {
  try {
    let values;
    try {
      ({ values } = parseArgs({ args: argv, options: OPTIONS, strict: true }));
    } catch (e) {
      throw new ConfigError(`${(e as Error).message.split('. To specify')[0]} (see --help)`);
    }
    if (values.help) { console.log(USAGE); return 0; }
    if (!values.checkpoint) throw new ConfigError('--checkpoint FILE is required (train_gpt.ts --save-checkpoint writes one)');
    const number = (flag: string, raw: string, ok: (x: number) => boolean, what: string): number => {
      const x = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(x) || !ok(x)) throw new ConfigError(`--${flag} ${JSON.stringify(raw)}: expected ${what}`);
      return x;
    };
    const options: T.SampleOptions = {
      prompt: values.prompt,
      tokens: number('tokens', values.tokens, (x) => Number.isInteger(x) && x >= 1, 'an integer ≥ 1'),
      temperature: number('temperature', values.temperature, (x) => x >= 0, 'a number ≥ 0'),
      topK: number('top-k', values['top-k'], (x) => Number.isInteger(x) && x >= 0, 'an integer ≥ 0'),
      seed: number('seed', values.seed, Number.isInteger, 'an integer'),
    };
    const backend = T.parseFlags(['--backend', values.backend]).overrides.backend ?? 'auto';
    await T.selectBackend({ ...T.DEFAULTS, backend });
    const { model, steps } = loadModel(path.resolve(values.checkpoint));
    const codec = await loadCodec(T.tokenizerOf(model.cfg));
    process.stdout.write(options.prompt + (await T.generate(model, steps, codec, options)) + '\n');
    T.disposeModel(model);
    return 0;
  } catch (e) {
    const err = e as Error;
    console.error(`error: ${err.message}`);
    return err instanceof ConfigError ? 2 : 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
