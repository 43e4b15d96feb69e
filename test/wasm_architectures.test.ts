// Every architecture option trains on every CPU backend offered (wasm: tfjs's JavaScript cpu backend is not
// offered, see --backend): 3 steps of a micro tiny model each, with a finite loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../train_gpt.ts';
import { ARCHITECTURES } from './architectures.ts';


const MICRO: Partial<T.Config> = {
  backend: 'wasm', numIterations: 3, valEvery: 0, warmupSteps: 0, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 2,
  batchTokens: 256, streamLen: 256, valTokens: 256, valStreamLen: 256, seqLen: 128,
};

test('each architecture option trains 3 tiny steps on wasm', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wasm-arch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await T.selectBackend({ ...T.DEFAULTS, backend: 'wasm' });
  for (const [name, over] of ARCHITECTURES) {
    await t.test(name, async () => {
      const { cfg } = T.resolveConfig('tiny', { ...MICRO, ...over, logDir: join(dir, 'logs') });
      const r = await T.train(cfg, { backend: 'wasm', say: () => {} });
      assert.equal(r.steps, 3);
      assert.ok(Number.isFinite(r.finalValLoss), `${name}: final val loss ${r.finalValLoss}`);
    });
  }
});
