// The real model of train_gpt.ts on the cuda backend against tfjs-backend-cpu: loss and every
// parameter's gradient for the speedrun's options and the block variants, and one whole optimiser
// step. On 'cuda-host' (the backend's TypeScript layer on its CPU reference device) this runs in CI and
// proves every kernel the training step needs exists; on 'cuda' it runs on the GPU.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { CudaBackend } from '../backend-cuda/backend.ts';
import { describeOrSkip, gradientErrors, relError, storedInBf16, targets, useBackend, withFusedOff } from './cuda_harness.ts';
import * as T from '../train_gpt.ts';
import { tfSeed } from './seed.ts';

const MICRO: Partial<T.Config> = {
  vocabSize: 64, bosToken: 63, numLayers: 4, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 2,
  noAttnLayers: [0], noMlpLayers: [0], skip: '1-3', valueEmbeds: 1, backoutLayer: 2, seqLen: 16,
  windowBlock: 4, windowSchedule: [2], windowPattern: 'SLSL', valWindow: 2,
  // float32 state: backends that differ by an ulp in an update can round it to neighbouring bf16 values, one bf16 step
  // (2e-3) apart (an H200 saw the attention gate's; --bf16-state has its own test in test/recipe.test.ts)
  bf16State: false,
};
const VARIANTS: [string, Partial<T.Config>][] = [
  ['speedrun options', {}],
  ['canon ABCD + softpick + polar express', { canon: 'ABCD', attnScore: 'softpick', orthogonalizer: 'polar' }],
  ['softmax1 + parallel + unet + tanh cap', { attnScore: 'softmax1', parallel: true, skip: 'unet', logitCap: 'tanh' }],
  ['GQA + swiglu + tied head + full rotary', { kvHeads: 1, mlp: 'swiglu', tieEmbed: true, rotary: 'full' }],
  ['no QK-norm, no rotary', { qkNorm: false, rotary: 'none' }],
  ['sas', { block: 'sas', valueEmbeds: 0, skip: 'none' }],
  ['sas-p', { block: 'sas-p', valueEmbeds: 0, skip: 'none' }],
];

const tokens = Int32Array.from({ length: 32 }, (_, i) => (i === 0 || i === 9 || i === 16 ? 63 : (i * 37 + 11) % 60));
const targetsOf = Int32Array.from({ length: 32 }, (_, i) => (i * 13 + 5) % 60);

/** Loss, gradients and the parameters after one optimiser step, on the current backend. */
/** The parameters' perturbation, drawn once per file: every backend and variant compared starts from the same one. */
const INIT_SEED = tfSeed();

async function run(cfg: T.Config): Promise<{ loss: number; grads: Map<string, Float32Array>; after: Map<string, Float32Array> }> {
  const m = T.createModel(cfg);
  let seed = INIT_SEED;
  for (const v of m.params.values()) tf.tidy(() => v.assign(v.add(tf.randomNormal(v.shape, 0, 0.2, 'float32', seed++))));
  const batch = T.toDevice({ inputs: tokens, targets: targetsOf, B: 2, T: 16 }, cfg.bosToken);
  const sched = T.attnScheduleAt(2, T.initRope(cfg), cfg);
  const { value, grads } = tf.variableGrads(() => T.modelLoss(m, batch, sched, 'mean'));
  const byName = new Map<string, tf.Tensor>();
  for (const [name, v] of m.params) byName.set(name, grads[v.name]);
  const out = {
    loss: (await value.data())[0],
    grads: new Map(await Promise.all([...byName].map(async ([n, g]) => [n, (await g.data()) as Float32Array] as const))),
    after: new Map<string, Float32Array>(),
  };
  const st = T.createOptimizerState(m);
  T.optimizerStep(m, st, byName, 0);
  for (const [n, v] of m.params) out.after.set(n, (await v.data()) as Float32Array);
  tf.dispose([value, ...Object.values(grads)]);
  T.disposeBatch(batch);
  T.disposeOptimizerState(st);
  T.disposeModel(m);
  return out;
}

for (const target of targets) {
  describeOrSkip(`train_gpt.ts model on ${target.name} vs cpu`, target.skip, () => {
    for (const [label, over] of VARIANTS) {
      it(`${label}: loss, gradients and one optimiser step match (fp32 matmuls)`, async () => {
        const cfg = T.resolveConfig('tiny', { ...MICRO, ...over }).cfg;
        await useBackend('cpu');
        const want = await run(cfg);
        await useBackend(target.name);
        (tf.backend() as CudaBackend).setMatmulPrecision('fp32');
        await run(cfg); // the first run fills the model's constant caches (window bands, rotary tables)
        const before = tf.memory().numTensors;
        const got = await run(cfg);
        assert.equal(tf.memory().numTensors, before, 'the step leaks no tensors');
        assert.ok(Math.abs(got.loss - want.loss) < 1e-4 * Math.abs(want.loss), `loss ${got.loss} vs cpu ${want.loss}`);
        for (const [n, e] of gradientErrors(got.grads, want.grads)) assert.ok(e < 1e-3, `${label}: gradient of ${n}: relative error ${e}`);
        for (const [n, p] of want.after) {
          const e = relError(got.after.get(n)!, p);
          assert.ok(e < 1e-3, `${label}: ${n} after the optimiser step: relative error ${e}`);
        }
      });
    }
  });
}

// --bf16-state (§5) on the cuda backends: the tensors the record keeps in bf16 take half their bytes.
for (const target of targets) {
  describeOrSkip(`--bf16-state's tensors stored in bf16 on ${target.name}`, target.skip, () => {
    it('the embeddings, value embeddings, head and every Adam moment are stored in bf16 only, through Adam steps, reads and a checkpoint; their values are the composites\'', async () => {
      await useBackend(target.name);
      const cfg = T.resolveConfig('tiny', { ...MICRO, bf16State: true, adamEvery: 2 }).cfg;
      const halfParams = ['embed', 'value_embed.0', 'head'];
      const grads = [0, 1, 2, 3].map((step) => new Map([...T.createModel(cfg).params].map(([n, v]) => {
        const g = tf.randomNormal(v.shape, 0, 0.1, 'float32', tfSeed() + step);
        return [n, { shape: v.shape, values: g.dataSync() as Float32Array }] as const;
      })));
      /** The Adam parameters and their moments after four steps (two Adam steps), with the model and state for more checks. */
      const steps = () => {
        const m = T.createModel(cfg), st = T.createOptimizerState(m);
        grads.forEach((byName, step) => {
          const gs = new Map([...byName].map(([n, g]) => [n, tf.tensor(g.values, g.shape)] as const));
          T.optimizerStep(m, st, gs, step);
          tf.dispose([...gs.values()]);
        });
        const values = new Map<string, Float32Array>();
        for (const [n, info] of m.info) {
          if (info.opt !== 'adam') continue;
          values.set(n, m.params.get(n)!.dataSync() as Float32Array);
          st.slots.get(n)!.slice(0, 2).forEach((s, k) => values.set(`${n} moment ${k}`, s.dataSync() as Float32Array));
        }
        return { m, st, values };
      };
      const composite = await withFusedOff(() => { const r = steps(); T.disposeOptimizerState(r.st); T.disposeModel(r.m); return r.values; });
      const { m, st, values } = steps();
      // stored in bf16 only, after the reads above (a read widens into a scratch buffer, not beside the tensor)
      for (const n of halfParams) assert.ok(storedInBf16(m.params.get(n)!), `${n}: stored in bf16 only`);
      for (const [n, info] of m.info) {
        if (info.opt === 'adam') st.slots.get(n)!.slice(0, 2).forEach((s, k) => assert.ok(storedInBf16(s), `${n}: Adam moment ${k} stored in bf16 only`));
        else assert.ok(!storedInBf16(m.params.get(n)!), `${n} (NorMuon) stays float32`);
      }
      // the same values as the composites' float32 storage: exactly on the host device; on the GPU an update an ulp apart
      // can round to the neighbouring bf16 value
      for (const [n, want] of composite) {
        const got = values.get(n)!;
        for (let i = 0; i < want.length; i++) {
          const ok = target.name === 'cuda-host' ? Object.is(got[i], want[i]) : Math.abs(got[i] - want[i]) <= 2 ** -7 * Math.abs(want[i]) + 1e-30;
          if (!ok) assert.fail(`${n} [${i}]: ${got[i]} with bf16 storage, ${want[i]} with the composites`);
        }
      }
      // a checkpoint's round trip stores them in bf16 again, with the same values
      const { mkdtempSync, rmSync } = await import('node:fs'), { tmpdir } = await import('node:os'), { join } = await import('node:path');
      const dir = mkdtempSync(join(tmpdir(), 'tsgpt-bf16-')), file = join(dir, 'state.ckpt');
      try {
        T.saveCheckpoint(file, m, st, { step: 4, loader: { file: 0, pos: 0 }, config: cfg, trainMs: 0 });
        const m2 = T.createModel(cfg), st2 = T.createOptimizerState(m2);
        T.loadCheckpoint(file, m2, st2);
        for (const n of halfParams) {
          assert.ok(storedInBf16(m2.params.get(n)!), `${n}: stored in bf16 only after loading`);
          assert.deepEqual(m2.params.get(n)!.dataSync(), values.get(n), `${n}: loaded values`);
          st2.slots.get(n)!.slice(0, 2).forEach((s, k) => assert.ok(storedInBf16(s), `${n}: Adam moment ${k} stored in bf16 only after loading`));
        }
        T.disposeOptimizerState(st2);
        T.disposeModel(m2);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      T.disposeOptimizerState(st);
      T.disposeModel(m);
    });
  });
}

// Issue 5 on one GPU: the same run through the real NCCL all-reduce (one rank) and without it.
const gpu = targets.find((t) => t.name === 'cuda')!;
describeOrSkip('train_gpt.ts on cuda through NCCL at one rank', gpu.skip, () => {
  it('gives the same losses as the run without a collective', async () => {
    const { spawnSync } = await import('node:child_process');
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const logs = mkdtempSync(join(tmpdir(), 'tsgpt-nccl-'));
    const runWith = (collective: string) => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'train_gpt.ts', '--preset', 'tiny', '--backend', 'cuda', '--matmul-precision', 'fp32',
        // the GPT-2 corpus: the one the GPU machine has (the byte corpus's sources are not shipped there)
        '--corpus', 'builtin-gpt2', '--vocab-size', '50304', '--bos-token', '50256',
        '--num-iterations', '6', '--val-every', '3', '--collective', collective, '--log-dir', logs], { cwd: new URL('..', import.meta.url).pathname, encoding: 'utf8', timeout: 300_000 });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      return [...r.stdout.matchAll(/val_loss:(\d+\.\d+)/g)].map((x) => x[1]);
    };
    const plain = runWith('auto'), nccl = runWith('nccl');
    assert.equal(plain.length, 3);
    assert.deepEqual(nccl, plain);
  });
});
