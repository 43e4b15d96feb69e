// Canon's CUDA kernels run on the CPU (test/simt: each CUDA thread a fiber, the warps' shuffles and ballots and the
// blocks' barriers as rendezvous), so that every run of the tests checks their logic, not only a run on the GPU machine:
// bench/canon_native.cu's variants (plain, the heads' norm, the row norm, relu2) and bench/canon_attention_inputs_native.cu
// (Canon B inside the attention's inputs) against their float64 references, on this run's seed (TEST_SEED), at sizes that
// cover the edges (channels not a multiple of 4, rows across several blocks of 256, sequences and documents starting
// inside a thread's rows, heads of 8 to 128, GQA), under AddressSanitizer where it links (a read or write outside a
// tensor stops the run). What the emulator cannot check (timing, the memory model, the hardware's limits) the GPU tests do.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { CpuBuild, sanitizerAvailable, unavailable } from './simt/build.ts';
import { testSeed } from './seed.ts';

const run = promisify(execFile);
const skip = await unavailable(), sanitize = !skip && await sanitizerAvailable();
if (skip) console.log(`# kernels on the CPU skipped: ${skip}`);
else if (!sanitize) console.log('# kernels on the CPU: no AddressSanitizer runtime here, built without it');

/** Runs `binary args` with this run's seed; asserts that it ends with PASS, and returns its output. */
async function passes(binary: string, args: string[]): Promise<string> {
  const env = { ...process.env, TEST_SEED: String(testSeed), BENCH_REPS: '0', ASAN_OPTIONS: 'detect_leaks=0' };
  const { stdout } = await run(binary, args, { env, maxBuffer: 1 << 24 }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
    assert.fail(`${args.join(' ')}: ${e.message}\n${e.stdout ?? ''}\n${(e.stderr ?? '').slice(-4000)}`);
  });
  assert.match(stdout, /worst error .*: PASS/, `${args.join(' ')}:\n${stdout}`);
  return stdout;
}

describe('Canon\'s kernels on the CPU (SIMT emulator)', () => {
  // a suite skipped as a whole counts no test as skipped in node's summary: one skipped test says why
  if (skip) {
    it(`skipped: ${skip}`, { skip }, () => {});
    return;
  }
  let canon = '', canonB = '';
  before(async () => {
    const build = new CpuBuild(sanitize);
    [canon, canonB] = await Promise.all([
      build.binary('bench/canon_native.cu', ['ops/canon_conv/canon_conv.cu']),
      build.binary('bench/canon_attention_inputs_native.cu', ['ops/canon_attention_inputs/canon_attention_inputs.cu', 'ops/canon_conv/canon_conv.cu',
        'ops/attention_inputs/attention_inputs.cu', 'native/reduce.cu', 'native/elementwise.cu']),
    ]);
  });

  it('CanonConv forward and backward match the float64 reference: plain, the heads\' norm, the row norm and relu2', async () => {
    // [B, T, C, variant]: C = 13 and 7 (one channel a thread), 20 (a vector of 4 a thread, the block's last lanes idle); 600
    // rows (3 blocks of 256); the heads' norm over q | k heads of 128 (C = 384: a head a warp)
    for (const args of [['2', '300', '20', 'plain'], ['1', '300', '13', 'plain'], ['1', '600', '384', 'heads'], ['2', '300', '48', 'rows'],
      ['1', '100', '13', 'rows'], ['2', '300', '48', 'relu2'], ['1', '700', '7', 'relu2']]) {
      await passes(canon, args);
    }
  });

  it('CanonAttentionInputs forward and backward match the float64 reference: q, k, v, dx, dw, dλ and dve', async () => {
    // [B, T, H, Hk, h, qkNorm, ve]: heads of 128 (a warp), 64, 16 and 8 (a pair's lanes side by side), GQA, with and
    // without the QK-norm and value embeddings; 600 rows (3 blocks), T = 77 (sequences starting inside a thread's rows)
    for (const args of [['1', '300', '2', '1', '128', '1', '1'], ['1', '600', '2', '1', '64', '0', '1'], ['3', '77', '4', '2', '16', '1', '0'],
      ['2', '150', '2', '2', '8', '0', '0']]) {
      const out = await passes(canonB, args);
      assert.match(out, /dw and dlambdas rerun bit-identical: yes/, `${args.join(' ')}: the sums' order`);
    }
  });
});
