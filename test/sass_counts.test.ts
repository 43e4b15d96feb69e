// bench/sass_counts.sh: each kernel of a source with its static SASS instruction count (its .text section in the cubin
// over 16 bytes), a pattern that names no kernel an error, a missing source the usage. Needs nvcc and readelf (CI has
// both); skipped with a message where either is missing. No randomness.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const onPath = (tool: string) => run('bash', ['-c', `command -v ${tool}`]).then(() => true, () => false);
const missing = (await Promise.all(['nvcc', 'readelf', 'c++filt'].map(async (t) => (await onPath(t)) ? [] : [t]))).flat();
const skip = missing.length ? `sass_counts tests skipped: no ${missing.join(', ')} on PATH` : false;
if (skip) console.log(`# ${skip}`);

/** bench/sass_counts.sh's exit code, stdout and stderr. */
async function counts(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const { stdout, stderr } = await run('bash', ['bench/sass_counts.sh', ...args], { maxBuffer: 1 << 24 });
    return { code: 0, out: stdout, err: stderr };
  } catch (e) {
    const f = e as { code: number; stdout: string; stderr: string };
    return { code: f.code, out: f.stdout, err: f.stderr };
  }
}

describe('bench/sass_counts.sh', { skip }, () => {
  it('prints each matching kernel with its instructions, and fails where none matches or the source is missing', async () => {
    const all = await counts('backend-cuda/native/softmax.cu');
    assert.equal(all.code, 0, all.err);
    const softmax = all.out.split('\n').filter((l) => /^\d+ softmaxKernel\(/.test(l));
    assert.equal(softmax.length, 1, all.out);
    assert.ok(Number(softmax[0].split(' ')[0]) > 10, `a kernel's count: ${softmax[0]}`);
    const one = await counts('backend-cuda/native/softmax.cu', '^[0-9]+ softmaxKernel');
    assert.equal(one.out.trim(), softmax[0]);
    const none = await counts('backend-cuda/native/softmax.cu', 'noSuchKernel');
    assert.equal(none.code, 1);
    assert.match(none.err, /no kernel of backend-cuda\/native\/softmax\.cu matches 'noSuchKernel'/);
    const usage = await counts('no/such/file.cu');
    assert.equal(usage.code, 2);
    assert.match(usage.err, /^usage: bash bench\/sass_counts\.sh/);
  });
});
