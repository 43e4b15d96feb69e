// The fused soft-capped cross-entropy ('SoftcapCrossEntropy', softcap_cross_entropy.cu) against its
// oracle, train_gpt.ts's composite crossEntropy(logitSoftcap(logits)) on the cpu backend: loss and
// dlogits through train_gpt.ts's own hook (softcapCrossEntropy → runFused) for every cap and
// reduction, random logits of several shapes (V not a multiple of the block or of 4, the full
// vocabulary, large magnitudes); out-of-range targets; bad inputs; the saved row statistics freed with
// the loss and no N×V buffer besides dlogits; determinism. On the GPU also N = 8192, V = 50304 against
// the composite on the same GPU and a float64 recomputation of a few rows.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import { SOFTCAP_CROSS_ENTROPY, SOFTCAP_CROSS_ENTROPY_GRAD } from '../softcap_cross_entropy/softcap_cross_entropy.ts';
import { bytesInUse, compare, describeOrSkip, type HostTensor, randFloat, randInt, random, targets, useBackend } from '../../../test/cuda_harness.ts';

type Cap = T.Config['logitCap'];
type Reduction = 'sum' | 'mean';
const CAPS: Array<[Cap, number, number]> = [['sigmoid', 30, 7.5], ['tanh', 15, 1], ['none', 1, 1]];
const REDUCTIONS: Reduction[] = ['sum', 'mean'];

const config = (cap: Cap, scale: number, temp: number): T.Config => ({ ...T.DEFAULTS, logitCap: cap, logitCapScale: scale, logitCapTemp: temp });

/** [loss, dlogits of dy·loss]: on a backend with the kernel this is the fused path, on cpu the composite. */
function lossAndGrad(cfg: T.Config, reduction: Reduction, dy: number) {
  return (logits: tf.Tensor, tgt: tf.Tensor): tf.Tensor[] => {
    const f = (l: tf.Tensor) => T.softcapCrossEntropy(l as tf.Tensor2D, tgt as tf.Tensor1D, cfg, reduction).mul(dy) as tf.Scalar;
    return [T.softcapCrossEntropy(logits as tf.Tensor2D, tgt as tf.Tensor1D, cfg, reduction), tf.grad(f)(logits)];
  };
}

/** float64 loss of one row and its gradient (dy = 1, sum): the formulas of cross_entropy.cu. */
function rowReference(x: Float32Array, t: number, cap: Cap, scale: number, temp: number): { loss: number; grad: Float64Array } {
  const zd = Array.from(x, v => {
    if (cap === 'sigmoid') { const s = 1 / (1 + Math.exp(-v / temp)); return [scale * s, (scale / temp) * s * (1 - s)]; }
    if (cap === 'tanh') { const th = Math.tanh(v / scale); return [scale * th, 1 - th * th]; }
    return [v, 1];
  });
  const m = zd.reduce((p, [z]) => Math.max(p, z), -Infinity);
  const lse = m + Math.log(zd.reduce((p, [z]) => p + Math.exp(z - m), 0));
  return { loss: lse - zd[t][0], grad: Float64Array.from(zd, ([z, dz], j) => (Math.exp(z - lse) - (j === t ? 1 : 0)) * dz) };
}

const peakBytes = () => (tf.memory() as tf.MemoryInfo & { peakBytesInGPU: number }).peakBytesInGPU;

for (const target of targets) {
  describeOrSkip(`fused SoftcapCrossEntropy on ${target.name}`, target.skip, () => {
    const B = target.name;

    // First, while the device's peak is still small: forward + backward need dlogits and 2·N floats, nothing else N×V.
    it('keeps only 2·N floats with the loss, frees them with it, and makes no other N×V buffer', async () => {
      await useBackend(B);
      const [N, V] = target.name === 'cuda' ? [4096, 50304] : [16, 50304];
      const logits = tf.tensor(randFloat([N, V], -40, 40).values, [N, V]), tgt = tf.tensor(randInt([N], 0, V).values, [N], 'int32');
      const cfg = config('sigmoid', 30, 7.5);
      const before = bytesInUse();
      const { value, grads } = tf.valueAndGrads((l: tf.Tensor) => T.softcapCrossEntropy(l as tf.Tensor2D, tgt as tf.Tensor1D, cfg, 'sum'))([logits]);
      await value.data();
      const nv = N * V * 4, slack = 64 * 1024;
      assert.ok(peakBytes() - before <= nv + 2 * N * 4 + slack, `peak grew by ${peakBytes() - before} bytes (dlogits: ${nv})`);
      assert.equal(bytesInUse() - before, nv + 4 + 2 * N * 4, 'after backprop: dlogits + the loss with its saved rows');
      value.dispose();
      assert.equal(bytesInUse() - before, nv, 'the saved rows go with the loss');
      tf.dispose([grads[0], logits, tgt]);
      assert.equal(bytesInUse(), before - nv - N * 4, 'everything freed');
    });

    // tfjs-backend-cpu's UnsortedSegmentSum (the composite's gather gradient) costs ~50 µs per logit:
    // dlogits are compared with the composite's autodiff on small shapes, and with the float64
    // formulas (checked against that autodiff here too) on the large ones, whose loss is still the composite's.
    it('matches the composite on cpu: loss and dlogits, every cap and reduction, several shapes', async () => {
      for (const [cap, scale, temp] of CAPS) {
        for (const reduction of REDUCTIONS) {
          for (const [N, V] of [[1, 1], [3, 5], [4, 999], [2, 4099]]) {
            const dy = 0.5 + random();
            const x = randFloat([N, V], -25, 25), t = randInt([N], 0, V);
            const w = dy * (reduction === 'mean' ? 1 / N : 1);
            // atol: a softmax near 1 minus the one-hot carries the float32 rounding of lse (≈ 1e-6 at |z| ≈ 30) on either side
            await compare(B, `${cap} ${reduction} [${N},${V}]`, [x, t], lossAndGrad(config(cap, scale, temp), reduction, dy),
              { rtol: 2e-5, atol: 1e-5 * w * Math.max(1, scale / temp) });
          }
        }
      }
    });

    it('matches the composite\'s loss and the float64 dlogits on large shapes', async () => {
      for (const [cap, scale, temp] of CAPS) {
        for (const reduction of REDUCTIONS) {
          for (const [N, V] of [[16, target.big], [4, 50304]]) {
            const cfg = config(cap, scale, temp), dy = 0.5 + random();
            const x = randFloat([N, V], -25, 25), t = randInt([N], 0, V);
            await compare(B, `${cap} ${reduction} [${N},${V}] loss`, [x, t],
              (l, tg) => T.softcapCrossEntropy(l as tf.Tensor2D, tg as tf.Tensor1D, cfg, reduction), { rtol: 2e-5, atol: 1e-6 });
            await useBackend(B);
            const [xt, tt] = [tf.tensor(x.values, [N, V]), tf.tensor(t.values, [N], 'int32')];
            const [loss, grad] = lossAndGrad(cfg, reduction, dy)(xt, tt);
            const g = await grad.data();
            const w = dy * (reduction === 'mean' ? 1 / N : 1);
            for (let r = 0; r < N; r++) {
              const want = rowReference(x.values.subarray(r * V, (r + 1) * V) as Float32Array, t.values[r], cap, scale, temp).grad;
              let num = 0, den = 0;
              for (let j = 0; j < V; j++) { num += (g[r * V + j] - w * want[j]) ** 2; den += (w * want[j]) ** 2; }
              assert.ok(Math.sqrt(num / den) < 2e-5, `${cap} ${reduction} [${N},${V}] row ${r}: dlogits relative error ${Math.sqrt(num / den)} vs float64`);
            }
            tf.dispose([xt, tt, loss, grad]);
          }
        }
      }
    });

    it('N = 0: a loss of 0 (sum) or NaN (mean), as the composite, and an empty gradient', async () => {
      for (const reduction of REDUCTIONS) {
        // (the composite's own gradient fails on an empty batch in tfjs, so only the forward is compared)
        await compare(B, `empty ${reduction}`, [randFloat([0, 7]), randInt([0], 0, 7)],
          (l, tg) => T.softcapCrossEntropy(l as tf.Tensor2D, tg as tf.Tensor1D, config('sigmoid', 30, 7.5), reduction));
        await useBackend(B);
        const x = tf.zeros([0, 7]), t = tf.zeros([0], 'int32');
        const g = tf.grad((l: tf.Tensor) => T.softcapCrossEntropy(l as tf.Tensor2D, t as tf.Tensor1D, config('tanh', 15, 1), reduction))(x);
        assert.deepEqual(g.shape, [0, 7]);
        tf.dispose([x, t, g]);
      }
    });

    it('is stable for large-magnitude logits', async () => {
      for (const [cap, scale, temp] of CAPS) {
        for (const reduction of REDUCTIONS) {
          const x = randFloat([4, 1001], -3000, 3000), t = randInt([4], 0, 1001);
          // where one logit dominates a row its softmax is 1 − ε, and the float32 lse (|z| ≈ 3e3) is rounded by ≈ 1e-4
          const finite = (l: tf.Tensor, tg: tf.Tensor) => {
            const out = lossAndGrad(config(cap, scale, temp), reduction, 1)(l, tg);
            // compare() lets NaN equal NaN: here every value must also be finite
            if (!out.every(o => o.dataSync().every(Number.isFinite))) throw new Error(`${cap} ${reduction}: a non-finite loss or gradient`);
            return out;
          };
          await compare(B, `large ${cap} ${reduction}`, [x, t], finite,
            { rtol: 1e-5, atol: cap === 'none' ? 5e-4 : 1e-5 * Math.max(1, scale / temp) });
        }
      }
    });

    it('runs the fused kernels (not the composite) through train_gpt.ts\'s hook', async () => {
      await useBackend(B);
      const x = tf.tensor(randFloat([5, 37]).values, [5, 37]), t = tf.tensor(randInt([5], 0, 37).values, [5], 'int32');
      const profile = await tf.profile(() => tf.dispose(lossAndGrad(config('sigmoid', 30, 7.5), 'mean', 1)(x, t)));
      const names = profile.kernels.map(k => k.name);
      assert.ok(names.includes(SOFTCAP_CROSS_ENTROPY) && names.includes(SOFTCAP_CROSS_ENTROPY_GRAD), `kernels run: ${names.join(', ')}`);
      assert.ok(!names.includes('Sigmoid') && !names.includes('GatherV2'), `composite kernels ran: ${names.join(', ')}`);
      tf.dispose([x, t]);
    });

    it('gives a NaN loss and NaN gradient row for a target outside [0, V); other rows are unaffected', async () => {
      await useBackend(B);
      const V = 11, x = randFloat([3, V]);
      for (const bad of [-1, V, 1 << 30]) {
        const xt = tf.tensor(x.values, x.shape), tt = tf.tensor([2, bad, 0], [3], 'int32');
        const [loss, grad] = lossAndGrad(config('tanh', 15, 1), 'sum', 1)(xt, tt);
        assert.ok(Number.isNaN((await loss.data())[0]), `target ${bad}: loss is not NaN`);
        const g = await grad.data() as Float32Array;
        assert.ok(g.subarray(V, 2 * V).every(Number.isNaN), `target ${bad}: its gradient row is not NaN`);
        assert.ok([...g.subarray(0, V), ...g.subarray(2 * V)].every(Number.isFinite), `target ${bad}: other rows not finite`);
        tf.dispose([xt, tt, loss, grad]);
      }
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
      const x = tf.zeros([2, 3]), t = tf.tensor([0, 1], [2], 'int32');
      const run = (inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) => () => tf.engine().runKernel(SOFTCAP_CROSS_ENTROPY, inputs, attrs);
      const ok = { cap: 'sigmoid', scale: 30, temp: 7.5, reduction: 'sum' };
      assert.throws(run({ logits: x, targets: tf.tensor([0, 1], [2]) }, ok), /SoftcapCrossEntropy.*targets must be int32/);
      assert.throws(run({ logits: x, targets: tf.tensor([0, 1, 2], [3], 'int32') }, ok), /SoftcapCrossEntropy.*one per row/);
      assert.throws(run({ logits: tf.zeros([6]), targets: t }, ok), /SoftcapCrossEntropy.*logits must be float32 \[N, V\]/);
      assert.throws(run({ logits: x, targets: t }, { ...ok, cap: 'softplus' }), /SoftcapCrossEntropy.*cap 'softplus'/);
      assert.throws(run({ logits: x, targets: t }, { ...ok, reduction: 'max' }), /SoftcapCrossEntropy.*reduction 'max'/);
      assert.throws(run({ logits: x, targets: t }, { ...ok, temp: 0 }), /SoftcapCrossEntropy.*temp/);
      assert.throws(run({ logits: tf.zeros([2, 0]), targets: t }, ok), /SoftcapCrossEntropy.*at least one column/);
      });
    });

    it('is deterministic: the same loss bits and gradient on every run', async () => {
      await useBackend(B);
      const [N, V] = target.name === 'cuda' ? [2048, 50304] : [32, 777];
      const x = tf.tensor(randFloat([N, V], -20, 20).values, [N, V]), t = tf.tensor(randInt([N], 0, V).values, [N], 'int32');
      const runOnce = async () => { const out = lossAndGrad(config('sigmoid', 30, 7.5), 'sum', 1)(x, t); const v = await Promise.all(out.map(o => o.data())); tf.dispose(out); return v; };
      const [a, b] = [await runOnce(), await runOnce()];
      assert.deepEqual(a[0], b[0]);
      assert.deepEqual(a[1], b[1]);
      tf.dispose([x, t]);
    });

    if (target.name === 'cuda') {
      it('N = 8192, V = 50304: equals the composite on this GPU and a float64 recomputation of sampled rows', async () => {
        await useBackend(B);
        const [N, V] = [8192, 50304];
        const host: HostTensor = randFloat([N, V], -60, 60), t = randInt([N], 0, V);
        const x = tf.tensor(host.values, [N, V]), tt = tf.tensor(t.values, [N], 'int32');
        for (const [cap, scale, temp] of CAPS) {
          for (const reduction of REDUCTIONS) {
            const cfg = config(cap, scale, temp);
            const [loss, grad] = lossAndGrad(cfg, reduction, 1)(x, tt);
            const composite = (l: tf.Tensor) => T.crossEntropy(T.logitSoftcap(l, cfg) as tf.Tensor2D, tt as tf.Tensor1D, reduction);
            const [refLoss, refGrad] = [composite(x), tf.grad(composite)(x)];
            const lossErr = Math.abs((await loss.data())[0] - (await refLoss.data())[0]) / Math.abs((await refLoss.data())[0]);
            const gradErr = (await tf.tidy(() => tf.norm(tf.sub(grad, refGrad)).div(tf.norm(refGrad))).data())[0];
            console.log(`# ${cap} ${reduction}: loss rel. err ${lossErr.toExponential(2)}, dlogits rel. err ${gradErr.toExponential(2)}`);
            assert.ok(lossErr < 1e-5, `${cap} ${reduction}: loss relative error ${lossErr}`);
            assert.ok(gradErr < 1e-5, `${cap} ${reduction}: dlogits relative error ${gradErr}`);
            const w = reduction === 'mean' ? 1 / N : 1;
            for (const r of [0, 1 + Math.floor(random() * (N - 2)), N - 1]) {
              const want = rowReference(host.values.subarray(r * V, (r + 1) * V) as Float32Array, t.values[r], cap, scale, temp).grad;
              const got = await tf.tidy(() => tf.slice(grad, [r, 0], [1, V])).data();
              let num = 0, den = 0;
              for (let j = 0; j < V; j++) { num += (got[j] - w * want[j]) ** 2; den += (w * want[j]) ** 2; }
              // 2e-4: in fp32, the caps' derivatives lose digits where they saturate (tanh's 1 − tanh² where |tanh| → 1,
              // the sigmoid's σ(1 − σ) where σ → 1: up to 1 − σ ≈ 3e-4 for logits in ±60 at temp 7.5), and the composite
              // computes them so too; seen up to 2.6e-5 on an H100 (tanh) and 9.1e-5 on an H200 (sigmoid, sum) for a row of 50304
              assert.ok(Math.sqrt(num / den) < 2e-4, `${cap} ${reduction} row ${r}: relative error ${Math.sqrt(num / den)} vs float64`);
            }
            tf.dispose([loss, grad, refLoss, refGrad]);
          }
        }
        tf.dispose([x, tt]);
      });
    }
  });
}

it('the float64 row reference equals the composite\'s autodiff on cpu (the oracle of the large shapes)', async () => {
  await useBackend('cpu');
  for (const [cap, scale, temp] of CAPS) {
    const [N, V] = [3, 300], x = randFloat([N, V], -25, 25), t = randInt([N], 0, V);
    const [loss, grad] = lossAndGrad(config(cap, scale, temp), 'sum', 1)(tf.tensor(x.values, [N, V]), tf.tensor(t.values, [N], 'int32'));
    const refs = [0, 1, 2].map(r => rowReference(x.values.subarray(r * V, (r + 1) * V) as Float32Array, t.values[r], cap, scale, temp));
    const total = refs.reduce((p, r) => p + r.loss, 0);
    assert.ok(Math.abs((await loss.data())[0] - total) < 1e-5 * Math.abs(total), `${cap}: loss ${(await loss.data())[0]} vs ${total}`);
    const g = await grad.data();
    for (let i = 0; i < N * V; i++) {
      const want = refs[Math.floor(i / V)].grad[i % V];
      assert.ok(Math.abs(g[i] - want) < 1e-5 * Math.abs(want) + 2e-7 * Math.max(1, scale / temp), `${cap}: dlogits[${i}] ${g[i]} vs ${want}`);
    }
    tf.dispose([loss, grad]);
  }
});
