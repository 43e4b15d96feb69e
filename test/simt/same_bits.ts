// Whether a change to kernel files leaves their results' bits as they were: builds a Node-free benchmark
// (bench/<name>.cu) through the SIMT emulator twice, with the kernel files as they are and as they were at a git
// revision, runs both on the same seed for each case, and compares the hashes that the benchmark's report() prints for
// each result (`bits`). The benchmark and the headers (.cuh, .h) are today's on both sides. Exits 1 where a case differs.
// SEED (default 1) is the benchmarks' seed and the emulator's schedule, printed first.
//   npx tsx test/simt/same_bits.ts b995bce canon_native ops/canon_conv/canon_conv.cu -- "2 300 48 rows" "1 100 13 rows"
// (the row norm's passes of 4 against their parent.) The emulator rounds as g++ does, without the GPU's contractions
// into FMA: the same bits here mean the same arithmetic, which nvcc compiles alike where the expressions are the same.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { CpuBuild, unavailable } from './build.ts';

const run = promisify(execFile);
const usage = 'usage: npx tsx test/simt/same_bits.ts <revision> <bench name, e.g. canon_native> <kernel file under backend-cuda>... -- "<args>"...';

const argv = process.argv.slice(2), dashes = argv.indexOf('--');
const [revision, name, ...kernels] = dashes < 0 ? [] : argv.slice(0, dashes);
const cases = argv.slice(dashes + 1);
if (!revision || !name || !kernels.length || !cases.length) {
  console.error(usage);
  process.exit(2);
}
const bench = `bench/${name}.cu`;
for (const path of [bench, ...kernels.map((k) => `backend-cuda/${k}`)]) {
  if (!existsSync(path)) {
    console.error(`same_bits: ${path} is not in this tree (run from the repository's root)\n${usage}`);
    process.exit(2);
  }
}
const why = await unavailable();
if (why) {
  console.error(`same_bits: the emulator cannot build here: ${why}`);
  process.exit(2);
}

const seed = process.env.SEED ?? '1';
if (!/^\d+$/.test(seed)) {
  console.error(`same_bits: SEED=${seed} is not a non-negative integer`);
  process.exit(2);
}
console.log(`seed ${seed}`);
const build = new CpuBuild(false);
let today: string, then: string;
try {
  [today, then] = await Promise.all([build.binary(bench, kernels), build.binary(bench, kernels, revision)]);
} catch (e) {
  console.error(`same_bits: building ${bench} with ${kernels.join(', ')} (today's, and at ${revision}) failed:\n${(e as Error).message}`);
  process.exit(2);
}

/** `result bits` of each report() line of one run (timings off). */
async function bits(binary: string, args: string): Promise<string[]> {
  const env = { ...process.env, BENCH_REPS: '0', SIMT_SEED: seed };
  const { stdout } = await run(binary, [...args.trim().split(/\s+/), seed], { env, maxBuffer: 1 << 24 });
  return stdout.split('\n').flatMap((line) => {
    const m = /^\s*(\S+)\s+rel\. error .*bits ([0-9a-f]{8})/.exec(line);
    return m ? [`${m[1]} ${m[2]}`] : [];
  });
}

let differ = 0;
for (const args of cases) {
  const [now, before] = await Promise.all([bits(today, args), bits(then, args)]);
  if (!now.length) throw new Error(`same_bits: ${name} ${args} printed no bits (does its report() print them?)`);
  const same = now.join() === before.join();
  if (!same) differ++;
  console.log(`${args}: ${same ? 'same bits' : 'DIFFERENT'} (${now.join(', ')}${same ? '' : `; at ${revision}: ${before.join(', ')}`})`);
}
process.exit(differ ? 1 : 0);
