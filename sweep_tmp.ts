import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CpuBuild } from '/work/main/test/simt/build.ts';
const run = promisify(execFile);
const build = new CpuBuild(false), inputs = ['ops/attention_inputs/attention_inputs.cu', 'native/reduce.cu', 'native/elementwise.cu'];
const benches: [string, string[], string[][]][] = [
  ['canon_native', ['ops/canon_conv/canon_conv.cu'], [['2', '300', '20', 'plain'], ['1', '600', '384', 'heads'], ['1', '200', '260', 'rows'], ['1', '100', '13', 'rows'], ['2', '300', '48', 'relu2']]],
  ['canon_attention_inputs_native', ['ops/canon_attention_inputs/canon_attention_inputs.cu', 'ops/canon_conv/canon_conv.cu', ...inputs], [['1', '300', '2', '1', '128', '1', '1'], ['3', '77', '4', '2', '16', '1', '0']]],
  ['attention_inputs_native', inputs, [['2', '40', '2', '2', '128', '1', '1'], ['1', '30', '3', '1', '6', '1', '0']]],
  ['rms_norm_native', ['ops/rms_norm/rms_norm.cu'], [['300', '770', '770'], ['100', '768', '12']]],
  ['shaped_mix_native', ['ops/shaped_mix/shaped_mix.cu'], [['2', '300', '3', '4', '100']]],
];
const seeds = Number(process.argv[2] ?? 20);
for (const [name, kernels, cases] of benches) {
  const bin = await build.binary(`bench/${name}.cu`, kernels);
  let fails = 0;
  for (let seed = 100; seed < 100 + seeds; seed++) for (const args of cases) {
    const out = await run(bin, [...args, String(seed)], { env: { ...process.env, BENCH_REPS: '0', SIMT_SEED: String(seed) }, maxBuffer: 1 << 24 }).then((r) => r.stdout, (e) => `EXIT ${e.code} ${e.stdout} ${e.stderr}`);
    if (!/PASS|^ok: worst/m.test(out) || /FAIL|EXIT/.test(out)) { fails++; console.log(name, args.join(' '), seed, out.slice(-300)); }
  }
  console.log(`${name}: ${fails} failures over ${seeds} seeds x ${cases.length} cases`);
}
