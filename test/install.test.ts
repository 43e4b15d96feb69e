// The install: every dependency with an install script is decided in package.json's allowScripts (so a clean
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
