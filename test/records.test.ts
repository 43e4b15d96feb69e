// The committed ablations reproduce: every statistics block in a records/ablations/*/README.md is what its own
// command (the `Computed by` line) prints now, from the logs in the folder. A log edited, added or removed, or a
// change to stats.ts that moves a number, fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../stats.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
process.chdir(REPO); // the blocks name their logs relative to the repository

/** A command line as a POSIX shell splits it: words, and single-quoted words (as stats.ts's shellQuote writes them). */
function shellWords(line: string): string[] {
  return [...line.matchAll(/'((?:[^']|'\\'')*)'|(\S+)/g)].map((m) => (m[1] !== undefined ? m[1].replace(/'\\''/g, "'") : m[2]));
}

const root = join(REPO, 'records', 'ablations');
const readmes = existsSync(root) ? readdirSync(root).map((d) => join(root, d, 'README.md')).filter(existsSync) : [];

test('records/ablations: there is at least one ablation with a statistics block', () => {
  assert.ok(readmes.some((f) => /^Computed by `npx tsx stats\.ts /m.test(readFileSync(f, 'utf8'))), readmes.join(', '));
});

for (const readme of readmes) {
  test(`${readme.slice(REPO.length)}: each statistics block is what its command prints now`, async () => {
    const text = readFileSync(readme, 'utf8');
    const commands = [...text.matchAll(/^Computed by `npx tsx stats\.ts (.*?)` \(alpha/gm)].map((m) => shellWords(m[1]));
    for (const argv of commands) {
      let out = '';
      const code = await main(argv, { stdout: (s) => void (out += s), stderr: (s) => void (out += s) });
      assert.equal(code, 0, out);
      // The block as printed, less its heading (a README may retitle it).
      const block = out.slice(out.indexOf('\n') + 1).trim();
      assert.ok(text.includes(block), `${readme}: the block of \`stats.ts ${argv.join(' ')}\` differs from what it prints now:\n${block.slice(0, 2000)}`);
    }
  });
}
