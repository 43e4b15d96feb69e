// The fused head mix ('HeadMix' y = α·x + β·m − γ·c per head and 'HeadMixGrad', head_mix.cu) against its oracle,
// train_gpt.ts's composite (per-head Multiplies, an Add and a Sub) on the cpu backend: the value and all four gradients
// (dy ≠ 1) through train_gpt.ts's own hook (headMix → runFused) on fresh random inputs, head dims on the GPU's float4
// and scalar paths, one row; no rows (zero sums); that the hook runs the fused kernels and `--fused off` the composite; the sums
// bit-identical run to run; bad inputs failing with the kernel's name; the shaped-attention blocks' call sites.
// y, dx, dm and dc are the composite's own float32 operations (exact on cuda-host); the coefficients' gradients are
// checked against n·ε-style bounds on Σ|dy|·(|x| + |m| + |c|), far below what a wrong operand or head would give.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import { HEAD_MIX, HEAD_MIX_GRAD } from './head_mix.ts';
import { checkFusionHook, checkModelKernels, describeOrSkip, type HostTensor, kernelsRun, randFloat, targets, useBackend } from '../../../test/cuda_harness.ts';

type Out = { shape: number[]; values: Float32Array };

/** headMix's value and its gradients with respect to x, m, c and coef for dy, on `backend`. */
async function valueAndGradsOn(backend: string, inputs: HostTensor[], dy: HostTensor): Promise<Out[]> {
  await useBackend(backend);
  const xs = inputs.map((h) => tf.tensor(h.values, h.shape)), dyT = tf.tensor(dy.values, dy.shape);
  const { value, grads } = tf.valueAndGrads((x: tf.Tensor, m: tf.Tensor, c: tf.Tensor, coef: tf.Tensor) => T.headMix(x, m, c, coef))(xs, dyT);
  const outs = [value, ...grads].map((t) => ({ shape: t.shape, values: t.dataSync() as Float32Array }));
  tf.dispose([...xs, dyT, value, ...grads]);
  return outs;
}

for (const target of targets) {
  describeOrSkip(`fused HeadMix on ${target.name}`, target.skip, () => {
    const B = target.name;
    // y, dx, dm, dc: bit for bit on cuda-host; the GPU does the same correctly rounded operations, allowed 1e-6.
    const elementTol = B === 'cuda-host' ? 0 : 1e-6;
    // dcoef: float64 sums on cuda-host; float32 per-thread and tree sums on the GPU.
    const sumTol = B === 'cuda-host' ? 1e-6 : 1e-5;

    it('y and the gradients of x, m, c and coef match the composite on cpu (float4 and scalar head dims, one row)', async () => {
      // [B, T, H, h]: h = 8 and 128 (float4 on the GPU), 3 and 5 (scalar); one row; the speedrun's on the GPU
      const shapes = [[2, 5, 3, 8], [1, 7, 2, 3], [3, 4, 5, 5], [1, 1, 6, 128], B === 'cuda' ? [1, 2048, 6, 128] : [2, 33, 6, 16]];
      for (const shape of shapes) {
        const H = shape[2], [x, m, c, dy] = [randFloat(shape), randFloat(shape), randFloat(shape), randFloat(shape)];
        const coef = randFloat([3, H]);
        const want = await valueAndGradsOn('cpu', [x, m, c, coef], dy), got = await valueAndGradsOn(B, [x, m, c, coef], dy);
        // the scale of a coefficient sum's rounding error: Σ|dy|·(|x| + |m| + |c|) over all heads (an upper bound for one)
        let scale = 0;
        for (let i = 0; i < dy.values.length; i++) scale += Math.abs(dy.values[i]) * (Math.abs(x.values[i]) + Math.abs(m.values[i]) + Math.abs(c.values[i]));
        want.forEach((w, o) => {
          const g = got[o];
          assert.deepEqual(g.shape, w.shape, `[${shape}]: output ${o} shape`);
          for (let i = 0; i < w.values.length; i++) {
            const bound = o < 4 ? elementTol * Math.abs(w.values[i]) : sumTol * scale;
            if (!(Math.abs(g.values[i] - w.values[i]) <= bound)) {
              assert.fail(`[${shape}]: output ${o} [${w.shape}] at ${i}: ${B} ${g.values[i]}, cpu composite ${w.values[i]} (bound ${bound})`);
            }
          }
        });
      }
    });

    it('no rows: an empty y and gradients, the coefficients\' gradients 0 (tfjs\'s composite cannot take it)', async () => {
      const shape = [0, 4, 2, 8], [x, m, c, dy] = [randFloat(shape), randFloat(shape), randFloat(shape), randFloat(shape)];
      const got = await valueAndGradsOn(B, [x, m, c, randFloat([3, 2])], dy);
      assert.deepEqual(got.map((o) => o.shape), [shape, shape, shape, shape, [3, 2]]);
      assert.deepEqual(Array.from(got[4].values), [0, 0, 0, 0, 0, 0]);
    });

    it('train_gpt.ts\'s hook runs the fused kernels, useFusedKernels(false) the composite', async () => {
      await useBackend(B);
      const shape = [2, 4, 3, 8], [x, m, c, dy] = [0, 1, 2, 3].map(() => { const h = randFloat(shape); return tf.tensor(h.values, h.shape); });
      const coef = tf.tensor(randFloat([3, 3]).values, [3, 3]);
      const run = () => { const { value, grads } = tf.valueAndGrads(T.headMix)([x, m, c, coef], dy); return [value, ...grads]; };
      assert.deepEqual((await kernelsRun(run)).filter((k) => k === HEAD_MIX || k === HEAD_MIX_GRAD), [HEAD_MIX, HEAD_MIX_GRAD]);
      await checkFusionHook(run, { fused: [HEAD_MIX, HEAD_MIX_GRAD], composite: ['Multiply', 'Sub'] });
      tf.dispose([x, m, c, coef, dy]);
    });

    it('the gradient is bit-identical run to run (no atomics in the sums)', async () => {
      await useBackend(B);
      const shape = [1, B === 'cuda' ? 4096 : 64, 6, 128];
      const ts = [0, 1, 2, 3].map(() => { const h = randFloat(shape); return tf.tensor(h.values, h.shape); }), [x, m, c, dy] = ts;
      const coef = tf.tensor(randFloat([3, 6]).values, [3, 6]);
      const grads = () => tf.tidy(() => tf.grads(T.headMix)([x, m, c, coef], dy).map((g) => g.dataSync() as Float32Array));
      const first = grads();
      for (let run = 0; run < 3; run++) grads().forEach((g, i) => assert.deepEqual(g, first[i], `gradient ${i} differs on run ${run + 2}`));
      tf.dispose([...ts, coef]);
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const x = tf.zeros([2, 3, 4]), m = tf.zeros([2, 3, 4]), c = tf.zeros([2, 3, 4]), coef = tf.zeros([3, 3]);
        const run = (kernel: string, inputs: tf.NamedTensorMap) => () => tf.engine().runKernel(kernel, inputs, {});
        assert.throws(run(HEAD_MIX, { x, m: tf.zeros([2, 4, 3]), c, coef }), /HeadMix: m float32\[2,4,3\] must have x's shape \[2,3,4\]/);
        assert.throws(run(HEAD_MIX, { x, m, c, coef: tf.zeros([3, 4]) }), /HeadMix: coef must be \[3, 3\] \(α, β, γ per head\), got float32\[3,4\]/);
        assert.throws(run(HEAD_MIX, { x: tf.zeros([2, 3, 4], 'int32'), m, c, coef }), /HeadMix: x must be float32, got int32\[2,3,4\]/);
        assert.throws(run(HEAD_MIX, { x, m, coef }), /HeadMix: input c is missing/);
        assert.throws(run(HEAD_MIX_GRAD, { dy: tf.zeros([2, 3, 5]), x, m, c, coef }), /HeadMixGrad: x float32\[2,3,4\] must have x's shape|HeadMixGrad: dy float32\[2,3,5\] must have x's shape \[2,3,4\]/);
        // a call the kernel does not support (m broadcast over the rows) runs the composite instead of failing
        const y = T.headMix(tf.ones([2, 3, 4]), tf.ones([1, 3, 4]), tf.zeros([2, 3, 4]), tf.ones([3, 3]));
        assert.deepEqual([y.shape, Array.from(y.dataSync()).every((v) => v === 2)], [[2, 3, 4], true]);
      });
    });

    it('the shaped-attention blocks run it once per attention layer, with the gradients of --fused off', async () => {
      await useBackend(B);
      for (const block of ['sas', 'sas-p'] as const) {
        const cfg = T.resolveConfig('tiny', {
          vocabSize: 64, bosToken: 63, numLayers: 3, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 2, noAttnLayers: [1],
          noMlpLayers: [], block, seqLen: 16, windowBlock: 4, windowSchedule: [2], windowPattern: 'SLS', valWindow: 2,
        }).cfg;
        await checkModelKernels(cfg, [0, 9], { [HEAD_MIX]: 2, [HEAD_MIX_GRAD]: 2 });
      }
    });
  });
}
