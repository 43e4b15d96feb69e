// The cuda backend as a whole: gradients of a tiny GPT (the speedrun model's ops: embedding gather,
// smear via pad/slice, RMSNorm, merged QKV, rotary via split/concat, causal softmax attention,
// ReLU² MLP, soft-capped logits, cross-entropy) against tfjs-backend-cpu in each matmul precision;
// memory stable over 200 training steps; read/time/memory;
// errors as exceptions.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { CudaBackend } from '../backend-cuda/backend.ts';
import { rmsNorm } from '../train_gpt.ts';
import type { MatmulPrecision } from '../backend-cuda/device.ts';
import { compare, describeOrSkip, type HostTensor, randFloat, randInt, relError, targets, useBackend } from './cuda_harness.ts';

const V = 64, D = 32, H = 2, HD = D / H, B = 2, T = 16;

function initParams(): HostTensor[] {
  const s = 1 / Math.sqrt(D);
  return [randFloat([V, D], -1, 1), randFloat([D, 3 * D], -s, s), randFloat([D, D], -s, s), randFloat([D, 4 * D], -s, s),
    randFloat([4 * D, D], -s / 2, s / 2), randFloat([D, V], -s, s), randFloat([2], 0.2, 0.8)];
}

function norm(x: tf.Tensor): tf.Tensor {
  return rmsNorm(x, 1e-6);
}

function rotary(x: tf.Tensor): tf.Tensor {  // x [B, H, T, HD]: rotate pairs of half-dims by position
  const freq = tf.div(1, tf.pow(64, tf.div(tf.range(0, HD / 2), HD / 2)));
  const ang = tf.mul(tf.reshape(tf.range(0, T), [T, 1]), tf.reshape(freq, [1, HD / 2]));
  const [cos, sin] = [tf.cos(ang), tf.sin(ang)];
  const [x1, x2] = tf.split(x, 2, -1);
  return tf.concat([tf.add(tf.mul(x1, cos), tf.mul(x2, sin)), tf.sub(tf.mul(x2, cos), tf.mul(x1, sin))], -1);
}

/** Mean next-token cross-entropy of a one-block GPT. */
function loss(tokens: tf.Tensor, targets: tf.Tensor, [embed, wqkv, wo, w1, w2, head, lambdas]: tf.Tensor[]): tf.Scalar {
  let x = tf.gather(embed, tokens);                                               // [B, T, D]
  const prev = tf.pad(tf.slice(x, [0, 0, 0], [B, T - 1, D]), [[0, 0], [1, 0], [0, 0]]);
  x = norm(tf.add(x, tf.mul(tf.sigmoid(tf.slice(lambdas, [0], [1])), prev)));    // smear
  const qkv = tf.reshape(tf.matMul(tf.reshape(norm(x), [B * T, D]), wqkv), [B, T, 3, H, HD]);
  const [q, k, v] = tf.unstack(qkv, 2).map(t => tf.transpose(t, [0, 2, 1, 3]));  // [B, H, T, HD]
  const scores = tf.mul(tf.matMul(rotary(norm(q)), rotary(norm(k)), false, true), 0.1);
  const causal = tf.greaterEqual(tf.reshape(tf.range(0, T, 1, 'int32'), [T, 1]), tf.reshape(tf.range(0, T, 1, 'int32'), [1, T]));
  const att = tf.softmax(tf.where(tf.broadcastTo(causal, [B, H, T, T]), scores, tf.fill([B, H, T, T], -1e9)));
  const y = tf.reshape(tf.transpose(tf.matMul(att, v), [0, 2, 1, 3]), [B * T, D]);
  let h = tf.add(tf.reshape(x, [B * T, D]), tf.mul(tf.slice(lambdas, [1], [1]), tf.matMul(y, wo)));
  h = tf.add(h, tf.matMul(tf.square(tf.relu(tf.matMul(norm(h), w1))), w2));      // ReLU² MLP
  const logits = tf.mul(30, tf.sigmoid(tf.div(tf.matMul(norm(h), head), 7.5)));   // soft cap
  const logp = tf.logSoftmax(logits);
  return tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(tf.reshape(targets, [B * T]), V), logp), -1))) as tf.Scalar;
}

async function lossAndGrads(backend: string, tok: HostTensor, tgt: HostTensor, params: HostTensor[]): Promise<{ loss: number; grads: Float32Array[] }> {
  await useBackend(backend);
  const [tokens, targets] = [tf.tensor(tok.values, tok.shape, 'int32'), tf.tensor(tgt.values, tgt.shape, 'int32')];
  const ps = params.map(p => tf.tensor(p.values, p.shape, 'float32'));
  const { value, grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => loss(tokens, targets, xs))(ps);
  const out = { loss: (await value.data())[0], grads: await Promise.all(grads.map(async g => (await g.data()) as Float32Array)) };
  tf.dispose([tokens, targets, value, ...grads, ...ps]);
  return out;
}

for (const target of targets) {
  describeOrSkip(`cuda backend model-level checks on ${target.name}`, target.skip, () => {
    const T0 = target.name;
    const precisions: Array<[MatmulPrecision, number]> = T0 === 'cuda' ? [['fp32', 5e-5], ['tf32', 5e-3], ['bf16', 5e-2]] : [['fp32', 5e-5]];

    for (const [precision, bound] of precisions) {
      it(`tiny-GPT loss and gradients match cpu (${precision} matmuls, rel. error < ${bound})`, async () => {
        await useBackend(T0);
        (tf.backend() as CudaBackend).setMatmulPrecision(precision);
        try {
          const tok = randInt([B, T], 0, V), tgt = randInt([B, T], 0, V), params = initParams();
          const want = await lossAndGrads('cpu', tok, tgt, params);
          const got = await lossAndGrads(T0, tok, tgt, params);
          const errs = got.grads.map((g, i) => relError(g, want.grads[i]));
          console.log(`# ${T0} ${precision}: loss ${got.loss} vs cpu ${want.loss}; gradient rel. errors ${errs.map(e => e.toExponential(1)).join(' ')}`);
          assert.ok(Math.abs(got.loss - want.loss) <= bound * Math.abs(want.loss), `loss ${got.loss} vs cpu ${want.loss}`);
          errs.forEach((e, i) => assert.ok(e < bound, `gradient ${i}: rel. error ${e} ≥ ${bound}`));
          got.grads.forEach((g, i) => assert.ok(g.every(Number.isFinite), `gradient ${i} has NaN/Inf`));
        } finally {
          await useBackend(T0);
          (tf.backend() as CudaBackend).setMatmulPrecision('fp32');
        }
      });
    }

    it('Sum and Mean gradients broadcast dy on the device (no host-made ones array)', async () => {
      await useBackend(T0);
      const backend = tf.backend() as CudaBackend;
      const write = backend.write.bind(backend);
      let maxUpload = 0;
      backend.write = (values, shape, dtype) => { maxUpload = Math.max(maxUpload, tf.util.sizeFromShape(shape)); return write(values, shape, dtype); };
      try {
        for (const [shape, axis, keep] of [[[6, 70, 5], [0, 2], false], [[300, 41], -1, true], [[4099], 0, false], [[3, 4], [0, 1], true]] as Array<[number[], number | number[], boolean]>) {
          const xh = randFloat(shape);
          const axes = tf.util.parseAxisParam(axis, shape);
          const outShape = shape.map((d, k) => (axes.includes(k) ? 1 : d));
          const ch = randFloat(outShape);  // upstream weights: d/dx Σ c·sum(x) = c broadcast back
          const n = axes.reduce((p, a) => p * shape[a], 1);
          const x = tf.tensor(xh.values, shape), c = tf.tensor(ch.values, keep ? outShape : outShape.filter((_, k) => !axes.includes(k)));
          maxUpload = 0;
          const gs = tf.grad(t => tf.sum(tf.mul(tf.sum(t, axis, keep), c)))(x);
          const gm = tf.grad(t => tf.sum(tf.mul(tf.mean(t, axis, keep), c)))(x);
          assert.ok(maxUpload <= n + tf.util.sizeFromShape(outShape), `a gradient uploaded ${maxUpload} values from the host`);
          const [vs, vm] = [await gs.data(), await gm.data()];
          const strides = tf.util.computeStrides(outShape);
          for (let i = 0; i < vs.length; i++) {
            const idx = tf.util.indexToLoc(i, shape.length, tf.util.computeStrides(shape));
            const j = idx.reduce((o, v, k) => o + (axes.includes(k) ? 0 : v) * (k < strides.length ? strides[k] : 1), 0);
            assert.equal(vs[i], ch.values[j], `sum grad [${shape}] ${axis} at ${i}`);
            assert.ok(Math.abs(vm[i] - ch.values[j] / n) <= 1e-7 * Math.abs(ch.values[j]), `mean grad [${shape}] ${axis} at ${i}`);
          }
          tf.dispose([x, c, gs, gm]);
        }
      } finally {
        backend.write = write;
      }
    });

    it('memory is stable over 200 training steps and the loss falls', async () => {
      await useBackend(T0);
      const tok = randInt([B, T], 0, V);
      const tokens = tf.tensor(tok.values, tok.shape, 'int32');
      const targets = tf.concat([tf.slice(tokens, [0, 1], [B, T - 1]), tf.slice(tokens, [0, 0], [B, 1])], 1);
      const vars = initParams().map(p => tf.variable(tf.tensor(p.values, p.shape, 'float32')));
      const step = (): number => {
        const { value, grads } = tf.variableGrads(() => loss(tokens, targets, vars) as tf.Scalar, vars);
        tf.tidy(() => vars.forEach(v => v.assign(tf.sub(v, tf.mul(grads[v.name], 0.05)))));
        const l = value.dataSync()[0];
        tf.dispose([value, ...Object.values(grads)]);
        return l;
      };
      const first = step();
      for (let i = 1; i < 10; i++) step();
      const mem10 = tf.memory() as tf.MemoryInfo & { numBytesInGPU: number; poolReservedBytes: number };
      const ids10 = tf.engine().backend.numDataIds();
      let last = first;
      for (let i = 10; i < 200; i++) last = step();
      const mem200 = tf.memory() as tf.MemoryInfo & { numBytesInGPU: number; poolReservedBytes: number };
      const ids200 = tf.engine().backend.numDataIds();
      console.log(`# ${T0}: loss ${first.toFixed(4)} → ${last.toFixed(4)}; dataIds ${ids10} → ${ids200}; bytes ${mem10.numBytesInGPU} → ${mem200.numBytesInGPU}; pool ${mem10.poolReservedBytes} → ${mem200.poolReservedBytes}`);
      assert.equal(ids200, ids10, 'dataIds grew');
      assert.equal(mem200.numTensors, mem10.numTensors, 'tensors grew');
      assert.equal(mem200.numBytesInGPU, mem10.numBytesInGPU, 'device bytes in use grew');
      assert.ok(mem200.poolReservedBytes <= mem10.poolReservedBytes, 'pool grew');
      assert.ok(last < first - 0.5, `loss did not fall: ${first} → ${last}`);
      tf.dispose([tokens, targets, ...vars]);
    });

    it('read, readSync, time and memory', async () => {
      await useBackend(T0);
      const h = randFloat([257, 33]);
      const x = tf.tensor(h.values, h.shape);
      const y = tf.matMul(x, x, true, false);
      assert.deepEqual(await y.data(), y.dataSync());
      assert.deepEqual(await x.data(), h.values);
      const timing = await tf.time(() => tf.dispose(tf.matMul(x, x, false, true)));
      assert.ok(typeof timing.kernelMs === 'number' && timing.kernelMs >= 0, `kernelMs ${JSON.stringify(timing.kernelMs)}`);
      const mem = tf.memory() as tf.MemoryInfo & { numBytesInGPU: number; peakBytesInGPU: number; poolReservedBytes: number };
      assert.ok(mem.numBytesInGPU >= (257 * 33 + 33 * 33) * 4, `numBytesInGPU ${mem.numBytesInGPU}`);
      assert.ok(mem.peakBytesInGPU >= mem.numBytesInGPU && mem.poolReservedBytes >= mem.numBytesInGPU);
      const before = mem.numBytesInGPU;
      tf.dispose([x, y]);
      assert.equal((tf.memory() as typeof mem).numBytesInGPU, before - (257 * 33 + 33 * 33) * 4);
      // uploads round-trip at every size, across the small (kernel-argument) path's 256-byte limit
      for (const n of [1, 3, 63, 64, 65, 255, 256, 257, 1000]) {
        const f = randFloat([n]), bools = Uint8Array.from(f.values, v => (v > 0 ? 1 : 0));
        const ft = tf.tensor(f.values, [n]), bt = tf.tensor(bools, [n], 'bool');
        assert.deepEqual(await ft.data(), f.values, `float32 upload of ${n * 4} bytes`);
        assert.deepEqual(Array.from(await bt.data()), Array.from(bools), `bool upload of ${n} bytes`);
        tf.dispose([ft, bt]);
      }
      // a kernel returning its input's buffer keeps it alive for the other holder
      const a = tf.tensor([1, 2, 3, 4]);
      const r = tf.reshape(a, [2, 2]);
      a.dispose();
      assert.deepEqual(Array.from(await r.data()), [1, 2, 3, 4]);
      r.dispose();
    });

    it('errors surface as exceptions naming the kernel and shapes', async () => {
      await useBackend(T0);
      const a = tf.ones([2, 3]), b = tf.ones([4, 5]);
      assert.throws(() => tf.engine().runKernel('BatchMatMul', { a, b }, { transposeA: false, transposeB: false }),
        /kernel BatchMatMul\(a: float32\[2,3\], b: float32\[4,5\]\) failed: BatchMatMul inner dimensions differ/);
      assert.throws(() => tf.conv2d(tf.ones([1, 4, 4, 1]) as tf.Tensor4D, tf.ones([2, 2, 1, 1]) as tf.Tensor4D, 1, 'valid'), /Conv2D/);
      assert.throws(() => tf.cast(a, 'complex64'), /complex64/);
      if (T0 === 'cuda') {
        assert.throws(() => tf.fill([1 << 18, 1 << 18], 1), /kernel Fill.*out of device memory: asked for 262144\.0 MiB with .* in use/);
        const c = tf.add(a, 1);  // the backend still works after an out-of-memory error
        assert.deepEqual(Array.from(await c.data()), [2, 2, 2, 2, 2, 2]);
        c.dispose();
      }
      tf.dispose([a, b]);
    });
  });
}
