// The run-log format of log_format.ts: its writers' exact text (the speedrun's, byte for byte), lines written
// by them read back to the same numbers, the PyTorch speedrun's own lines still read, and a whole log written
// by train_gpt.ts's RunLog with these writers read by stats.ts as the run it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SEPARATOR, logHeader, parseGpuName, parseStepLine, peakMemoryLine, stepLine, valLine } from '../log_format.ts';
import { parseLog } from '../stats.ts';
import { RunLog } from '../train_gpt.ts';
import { random } from './seed.ts';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'log-format-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const randomInt = (below: number) => Math.floor(random() * below);

test('the writers write the speedrun format, byte for byte', () => {
  assert.equal(SEPARATOR, '='.repeat(100));
  assert.equal(valLine(2225, 2225, 3.2789, 135000), 'step:2225/2225 val_loss:3.2789 train_time:135000ms step_avg:60.67ms');
  assert.equal(valLine(0, 1750, 10.82584, 0.4), 'step:0/1750 val_loss:10.8258 train_time:0ms step_avg:0.40ms');
  assert.equal(stepLine(1, 1750, 30354.4), 'step:1/1750 train_time:30354ms step_avg:30354.40ms');
  assert.equal(stepLine(3, 10, 2.5), 'step:3/10 train_time:3ms step_avg:0.83ms');
  assert.equal(peakMemoryLine(31042 * 2 ** 20 + 1000, 33210.6 * 2 ** 20), 'peak memory allocated: 31042 MiB reserved: 33211 MiB');
  assert.equal(logHeader('src\nmore src', 'versions', 'gpu 0\ngpu 1'), `src\nmore src\n${SEPARATOR}\nversions\ngpu 0\ngpu 1\n${SEPARATOR}\n`);
});

test('round trip: random step and validation lines read back to the numbers written', () => {
  const cases: [number, number, number, number][] = [[0, 1, 10.8258, 0], [0, 2225, 3.28, 0.4], [2225, 2225, 3.2789, 135000], [1, 1, 0, 1e9 + 0.5]];
  for (let i = 0; i < 500; i++) {
    const N = 1 + randomInt(100_000);
    const step = i % 10 === 0 ? 0 : randomInt(N + 1);
    const loss = randomInt(200_000) / 1e4; // 4 decimals, as logged: 0.0000 .. 19.9999
    const trainMs = i % 2 ? randomInt(1e9) : random() * 10 ** randomInt(10); // whole ms, and fractions up to a day and beyond
    cases.push([step, N, loss, trainMs]);
  }
  for (const [step, N, loss, trainMs] of cases) {
    const avg = Number((trainMs / Math.max(step, 1)).toFixed(2));
    const train = stepLine(step, N, trainMs);
    assert.deepEqual(parseStepLine(train), { step, total: N, valLoss: undefined, trainTimeMs: Math.round(trainMs), stepAvgMs: avg }, train);
    const val = valLine(step, N, loss, trainMs);
    assert.deepEqual(parseStepLine(val), { step, total: N, valLoss: loss, trainTimeMs: Math.round(trainMs), stepAvgMs: avg }, val);
  }
});

test("the PyTorch speedrun's lines read as before; other lines are no step lines", () => {
  assert.deepEqual(parseStepLine('step:2225/2225 val_loss:3.2789 train_time:135000ms step_avg:60.67ms'),
    { step: 2225, total: 2225, valLoss: 3.2789, trainTimeMs: 135000, stepAvgMs: 60.67 });
  const early = parseStepLine('step:0/1370 val_loss:10.8258 train_time:0ms step_avg:nanms');
  assert.equal(early?.valLoss, 10.8258);
  assert.ok(Number.isNaN(early?.stepAvgMs));
  assert.deepEqual(parseStepLine('step:1/1370 train_time:30354ms step_avg:nanms'), { step: 1, total: 1370, valLoss: undefined, trainTimeMs: 30354, stepAvgMs: NaN });
  assert.ok(Number.isNaN(parseStepLine('step:10/10 val_loss:nan train_time:50ms step_avg:5.00ms')?.valLoss));
  assert.deepEqual(parseStepLine('step:10/10 val_loss:3.2 step_avg:5.00ms'), { step: 10, total: 10, valLoss: 3.2, trainTimeMs: undefined, stepAvgMs: 5 });
  for (const other of ['peak memory allocated: 31042 MiB reserved: 33210 MiB', 'peak memory consumption: 32619 MiB',
    '_orig_mod.blocks.0.attn.attn_scale: 0.0883883461356163', 'interrupted at step 3/10 (train_time 5ms)',
    'stopped: train loss is NaN at step 4', "print0(f'step:{step}/{train_steps} val_loss:{val_loss:.4f}')", SEPARATOR, '']) {
    assert.equal(parseStepLine(other), null, other);
  }
  assert.equal(parseGpuName('|   0  NVIDIA H100 80GB HBM3          On  |   00000000:19:00.0 Off |                    0 |'), 'NVIDIA H100 80GB HBM3');
  assert.equal(parseGpuName('|   7  NVIDIA H200                    Off |   00000000:DB:00.0 Off |                    0 |'), 'NVIDIA H200');
  assert.equal(parseGpuName('| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |'), null);
  assert.equal(parseGpuName('nvidia-smi: not available (no NVIDIA GPU listed)'), null);
});

test("a whole log written by RunLog and the writers reads in stats.ts's parseLog as the run it was", (t) => {
  const N = 50 + randomInt(3000), valEvery = 1 + randomInt(N), msPerStep = 20 + random() * 2000;
  const log = new RunLog(tempDir(t), 'run', 'node v20, tfjs-core 4.22.0, backend cuda');
  const valSteps: number[] = [];
  let loss = 10.8258, trainMs = 0;
  for (let step = 0; step <= N; step++) {
    if (step > 0) {
      trainMs += msPerStep * (0.9 + 0.2 * random());
      log.write(stepLine(step, N, trainMs));
    }
    if (step % valEvery === 0 || step === N) {
      loss = Math.max(3, loss - random() * 0.5);
      valSteps.push(step);
      log.write(valLine(step, N, loss, trainMs));
    }
  }
  log.write(peakMemoryLine(31 * 2 ** 30, 33 * 2 ** 30));
  const text = readFileSync(log.file, 'utf8');
  const parsed = parseLog(text, 'run.txt');
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
  assert.equal(parsed.run.steps, N);
  assert.equal(parsed.run.finalValLoss, Number(loss.toFixed(4)));
  assert.equal(parsed.run.trainTimeMs, Math.round(trainMs));
  assert.equal(parsed.run.stepAvgMs, Number((trainMs / N).toFixed(2)));
  assert.deepEqual(parsed.run.valCurve.map((p) => p.step), valSteps);
  // The source stats.ts hashes is exactly the script's: another header and other steps after it hash the same.
  const source = readFileSync(new URL('../train_gpt.ts', import.meta.url), 'utf8');
  const other = parseLog(logHeader(source, 'other versions', 'no GPU') + valLine(10, 10, 3.5, 1000) + '\n', 'other.txt');
  assert.ok(other.ok, other.ok ? '' : other.reason);
  assert.equal(other.run.codeHash, parsed.run.codeHash);
});
