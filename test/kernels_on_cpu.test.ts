// CUDA kernels run on the CPU (test/simt: each CUDA thread a fiber, the warps' shuffles and ballots and the blocks'
// barriers as rendezvous), so that every run of the tests checks their logic, not only a run on the GPU machine: the
// Node-free benchmarks of Canon (bench/canon_native.cu's variants: plain, the heads' norm, the row norm, relu2), of Canon B
// inside the attention's inputs, of the attention's inputs, of RMSNorm and of shaped attention's mix, each against its
// float64 reference on this run's seed (TEST_SEED), at sizes that cover their edges (channels not a multiple of 4, rows
// across several blocks, sequences and documents starting inside a thread's rows, heads of 6 to 128, GQA), under
// AddressSanitizer where it links (a read or write outside a tensor stops the run). The emulator is adversarial where the
// hardware may be (simt.h: cp.async's destinations NaN until waited for, the threads' order and held-back warps on the
// seed, shared memory NaN until written, the launch's limits). What it cannot check (timing, registers) the GPU tests do;
// the attention's own kernels (tensor cores) do not build here.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { testSeed } from './seed.ts';
import { CpuBuild, sanitizerAvailable, unavailable } from './simt/build.ts';

const run = promisify(execFile);
const skip = await unavailable(), sanitize = !skip && await sanitizerAvailable();
if (skip) console.log(`# kernels on the CPU skipped: ${skip}`);
else if (!sanitize) console.log('# kernels on the CPU: no AddressSanitizer runtime here, built without it');

/** Runs `binary args seed` (timings off); asserts that it exits 0 with `pass` in its output. */
async function passes(binary: string, args: string[], pass: RegExp): Promise<string> {
  const all = [...args, String(testSeed)], env = { ...process.env, BENCH_REPS: '0', SIMT_SEED: String(testSeed), ASAN_OPTIONS: 'detect_leaks=0' };
  const { stdout } = await run(binary, all, { env, maxBuffer: 1 << 24 }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
    assert.fail(`${all.join(' ')}: ${e.message}\n${e.stdout ?? ''}\n${(e.stderr ?? '').slice(-4000)}`);
  });
  assert.match(stdout, pass, `${all.join(' ')}:\n${stdout}`);
  return stdout;
}
const PASS = /worst error .*: PASS/;

describe('CUDA kernels on the CPU (SIMT emulator)', () => {
  // a suite skipped as a whole counts no test as skipped in node's summary: one skipped test says why
  if (skip) {
    it(`skipped: ${skip}`, { skip }, () => {});
    return;
  }
  const binaries: Record<string, string> = {};
  before(async () => {
    const build = new CpuBuild(sanitize), inputs = ['ops/attention_inputs/attention_inputs.cu', 'native/reduce.cu', 'native/elementwise.cu'];
    const benches: [string, string[]][] = [
      ['canon_native', ['ops/canon_conv/canon_conv.cu']],
      ['canon_attention_inputs_native', ['ops/canon_attention_inputs/canon_attention_inputs.cu', 'ops/canon_conv/canon_conv.cu', ...inputs]],
      ['attention_inputs_native', inputs],
      ['rms_norm_native', ['ops/rms_norm/rms_norm.cu']],
      ['shaped_mix_native', ['ops/shaped_mix/shaped_mix.cu']],
    ];
    await Promise.all([...benches.map(async ([name, kernels]) => { binaries[name] = await build.binary(`bench/${name}.cu`, kernels); }),
      build.binary('test/simt/emulator_checks.cu', []).then((b) => { binaries.checks = b; })]);
  });

  it('the emulator catches what the hardware does not forgive (test/simt/emulator_checks.cu)', async () => {
    const outcome = (c: string) => run(binaries.checks, [c], { env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0' } })
      .then(({ stdout }) => stdout, (e: { code?: number; stderr?: string }) => `exit ${e.code}: ${e.stderr ?? ''}`);
    assert.match(await outcome('early-read'), /saw -?nan/, 'a cp.async slot read before its wait');
    assert.match(await outcome('waited'), /saw 1\.5/, 'the same slot after its wait');
    assert.match(await outcome('unwritten-shared'), /saw -?nan/, 'shared memory no thread wrote');
    assert.match(await outcome('skipped-barrier'), /exit 3:[\s\S]*simt: block \(0, 0, 0\): its threads wait at a barrier/, 'a barrier lane 0 skips');
    assert.match(await outcome('no-opt-in'), /exit 3:[\s\S]*simt: 65536 bytes of shared memory without the opt-in/, '64 KiB without allowSharedMemory');
    assert.match(await outcome('opt-in'), /saw 1\.5/, '64 KiB with allowSharedMemory');
  });

  it('CanonConv forward and backward: plain, the heads\' norm, the row norm and relu2', async () => {
    // [B, T, C, variant]: C = 13 and 7 (one channel a thread), 20 (a vector of 4 a thread, the block's last lanes idle); 600
    // rows (3 blocks of 256); the heads' norm over q | k heads of 128 (C = 384: a head a warp); the row norm's gradient over
    // 3 warps a row (C = 260: 65 vectors, the row's sums exchanged through shared memory), and over 2 whole warps (C = 256:
    // kWholeWarps, no lane inactive); relu2 over 2 blocks of channels (C = 200); 2,600 rows (11 blocks' partials: dw's sum
    // shares them out 2 a warp, the last warps none)
    for (const args of [['2', '300', '20', 'plain'], ['1', '300', '13', 'plain'], ['1', '2600', '7', 'plain'], ['1', '600', '384', 'heads'], ['2', '300', '48', 'rows'],
      ['1', '100', '13', 'rows'], ['1', '200', '260', 'rows'], ['1', '150', '256', 'rows'], ['2', '300', '48', 'relu2'], ['1', '300', '200', 'relu2'],
      ['1', '700', '7', 'relu2']]) {
      await passes(binaries.canon_native, args, PASS);
    }
  });

  it('same_bits.ts compares a kernel file with itself at a git revision, and names a revision that does not exist', async () => {
    // HEAD's canon_conv.cu against today's: the revision's copy is built and run, and its bits agree where the file has
    // not changed since HEAD (a clean checkout, as in CI); the same_bits run's own seed is the test's
    const tool = (args: string[]) => run(process.execPath, ['--import', 'tsx', 'test/simt/same_bits.ts', ...args],
      { env: { ...process.env, SEED: String(testSeed) }, maxBuffer: 1 << 24 }).then(({ stdout }) => `exit 0: ${stdout}`,
      (e: { code?: number; stdout?: string; stderr?: string }) => `exit ${e.code}: ${e.stdout ?? ''}${e.stderr ?? ''}`);
    // (uncommitted changes to the kernel, its headers or the benchmark: bits may differ, or HEAD's file not build with them)
    const changed = await run('git', ['status', '--porcelain', 'backend-cuda/ops/canon_conv', 'bench/canon_native.cu', 'bench/native_bench.h'])
      .then(({ stdout }) => stdout.trim());
    const out = await tool(['HEAD', 'canon_native', 'ops/canon_conv/canon_conv.cu', '--', '1 100 13 rows']);
    assert.match(out, new RegExp(`seed ${testSeed}`));
    if (changed) assert.match(out, /^exit [01]: [\s\S]*1 100 13 rows: (same bits|DIFFERENT) \(y \w{8}, |^exit 2: [\s\S]*same_bits: building/, out);
    else assert.match(out, /^exit 0: [\s\S]*1 100 13 rows: same bits \(y \w{8}, (lead \w{8}, )?dx \w{8}, dw \w{8}\)/, out);
    assert.match(await tool(['no-such-revision', 'canon_native', 'ops/canon_conv/canon_conv.cu', '--', '1 10 4 rows']),
      /^exit 2: [\s\S]*same_bits: building bench\/canon_native\.cu .* at no-such-revision\) failed/);
  });

  it('CanonAttentionInputs forward and backward: q, k, v, dx, dw, dλ and dve', async () => {
    // [B, T, H, Hk, h, qkNorm, ve]: heads of 128 (a warp), 64, 16 and 8 (a pair's lanes side by side), GQA, with and
    // without the QK-norm and value embeddings; 600 rows (3 blocks), T = 77 (sequences starting inside a thread's rows)
    for (const args of [['1', '300', '2', '1', '128', '1', '1'], ['1', '600', '2', '1', '64', '0', '1'], ['3', '77', '4', '2', '16', '1', '0'],
      ['2', '150', '2', '2', '8', '0', '0']]) {
      const out = await passes(binaries.canon_attention_inputs_native, args, PASS);
      assert.match(out, /dw and dlambdas rerun bit-identical: yes/, `${args.join(' ')}: the sums' order`);
    }
  });

  it('AttentionInputs forward and backward, on its float4 and scalar paths', async () => {
    // [B, T, H, Hk, h, qkNorm, ve]: h = 128 and 16 (float4), 6 (scalar); GQA
    for (const args of [['2', '40', '2', '2', '128', '1', '1'], ['2', '50', '4', '2', '16', '0', '1'], ['1', '30', '3', '1', '6', '1', '0']]) {
      await passes(binaries.attention_inputs_native, args, PASS);
    }
  });

  it('RMSNorm forward and backward, whole rows and the leading channels', async () => {
    // [rows, cols, outCols]: 770 columns (not a multiple of 4: the one-value path), 768 (float4), the gate's 12 of 768
    for (const args of [['300', '770', '770'], ['200', '768', '768'], ['100', '768', '12']]) {
      await passes(binaries.rms_norm_native, args, /^ok: worst/m);
    }
  });

  it('ShapedMix forward and backward, windows inside and over T', async () => {
    // [B, T, H, h, window]: h = 4 (float4) and 10 (scalar), a window over T; walks of 32 channel vectors (float4 and
    // scalar), whose warps find their window's start together
    for (const args of [['2', '300', '3', '4', '100'], ['1', '200', '2', '10', '500'], ['1', '300', '2', '64', '100'], ['1', '260', '16', '2', '70']]) {
      await passes(binaries.shaped_mix_native, args, PASS);
    }
  });
});
