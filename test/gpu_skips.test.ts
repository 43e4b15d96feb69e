// Without a usable GPU the GPU suites skip, and the runner's summary counts them (a suite skipped as a whole
// would be counted as `skipped 0`, hiding that anything was left out).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cudaAvailability } from '../backend-cuda/index.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));

test('a skipped GPU suite shows in the summary as skipped, with its reason', { skip: cudaAvailability().ok ? 'a GPU is usable here' : false }, () => {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // else the child reports to this runner instead of printing its summary
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', 'test/cuda_bindings.test.ts'], { cwd: REPO, env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^# skipped [1-9]/m);
  assert.match(r.stdout, /# SKIP no usable GPU: /);
});
