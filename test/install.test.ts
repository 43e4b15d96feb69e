// The install: tfjs without its union package; every dependency with an install script is decided in allowScripts (so a clean
// `npm ci` ends without npm's "not yet covered by allowScripts" warning), and the project's own install hook
// (the cuda addon's build) still runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall'];

interface Manifest { name: string; scripts?: Record<string, string>; allowScripts?: Record<string, boolean> }
const manifest = (dir: string): Manifest => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;

/** Every installed package folder under node_modules, nested ones included. */
function packages(dir: string): string[] {
  const root = join(dir, 'node_modules');
  if (!existsSync(root)) return [];
  return readdirSync(root).filter((n) => !n.startsWith('.')).flatMap((name) => {
    const dirs = name.startsWith('@') ? readdirSync(join(root, name)).map((n) => join(root, name, n)) : [join(root, name)];
    return dirs.filter((d) => existsSync(join(d, 'package.json'))).flatMap((d) => [d, ...packages(d)]);
  });
}

test('every installed package with an install script is approved or denied in allowScripts', () => {
  const allow = manifest(REPO).allowScripts ?? {};
  const undecided = packages(REPO).map(manifest)
    .filter((m) => INSTALL_SCRIPTS.some((s) => m.scripts?.[s]) && !(m.name in allow))
    .map((m) => m.name);
  assert.deepEqual([...new Set(undecided)], [], 'add them to package.json allowScripts (npm install-scripts approve|deny)');
});

test("the project's own install hook builds the cuda addon", () => {
  assert.equal(manifest(REPO).scripts?.install, 'node backend-cuda/install.mjs');
});

test('tfjs: core and the cpu and wasm backends, not the union package; tfjs_node.ts registers gradients and chained ops', async () => {
  const { dependencies = {} } = manifest(REPO) as Manifest & { dependencies?: Record<string, string> };
  assert.deepEqual(Object.keys(dependencies).filter((d) => d.startsWith('@tensorflow/')).sort(),
    ['@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-core']);
  await import('../tfjs_node.ts');
  const tf = await import('@tensorflow/tfjs-core');
  await tf.setBackend('cpu');
  const x = tf.tensor1d([1, 2, 3]);
  const grad = tf.grad((a) => tf.logSumExp(a.square()))(x);
  const softmax = tf.softmax(x.square()).arraySync() as number[];
  (grad.arraySync() as number[]).forEach((g, i) => assert.ok(Math.abs(g - 2 * (i + 1) * softmax[i]) < 1e-5, `d/dx_${i}`));
});
