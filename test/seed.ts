// The one source of the tests' random inputs: a fresh seed on every run, so each run draws new inputs, and
// printed once per test file, so a failure replays with TEST_SEED=<seed> node --import tsx --test <file>.
// One sequence per file, drawn in test order: replay the whole file (--test-name-pattern skips draws).
import { randomInt as freshInt } from 'node:crypto';
import { relative } from 'node:path';

function seedFromEnv(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) throw new Error(`TEST_SEED=${text}: expected an integer in [0, 2^32)`);
  return n;
}

/** This run's seed: TEST_SEED if set, else a fresh one. */
export const testSeed = process.env.TEST_SEED ? seedFromEnv(process.env.TEST_SEED) : freshInt(2 ** 32);
// argv[1] is the test file: `npm test` runs the files side by side, so the line names its file.
const file = relative(process.cwd(), process.argv[1] ?? '');
console.log(`# ${file}: TEST_SEED=${testSeed} (replay: TEST_SEED=${testSeed} node --import tsx --test ${file})`);

let state = testSeed;
/** Uniform in [0, 1) (mulberry32: one 32-bit state, fast, and plenty for test inputs). */
export function random(): number {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** An integer in [lo, hi], both included. */
export const randomInt = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));

/** A seed for tf's random ops (tf.randomNormal etc.), drawn from this run's sequence. */
export const tfSeed = (): number => Math.floor(random() * 2 ** 32);
