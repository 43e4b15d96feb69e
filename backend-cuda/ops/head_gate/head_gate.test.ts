// The fused attention output gate ('HeadGate', head_gate.cu) against its oracle, train_gpt.ts's
// composite o·σ(g) on the cpu backend: the output and both gradients (dy ≠ 1) through train_gpt.ts's hook
// (headGate → runFused) on fresh random inputs; head sizes on the float4 path (h % 4 = 0) and the scalar
// one, T = 1, B > 1, large logits; that the hook runs the fused kernels and `--fused off` the composite; the
// output written in bf16 under bf16 matmul precision (the output projection reads it); an o stored in bf16 only (the
// attention's tensor-core output) read as stored; bad inputs.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import type { CudaBackend } from '../../backend.ts';
import { HEAD_GATE, HEAD_GATE_GRAD } from '../head_gate/head_gate.ts';
import { bf16, bf16OnlyAndFloat32, bytesInUse, compare, describeOrSkip, checkFusionHook, randFloat, storedInBf16, targets, useBackend } from '../../../test/cuda_harness.ts';

/** [y, do, dg] for a given dy: the fused kernels where the backend has them, the composite on cpu. */
const gateAndGrads = (o: tf.Tensor, g: tf.Tensor, dy: tf.Tensor): tf.Tensor[] =>
  [T.headGate(o, g), ...tf.grads((a: tf.Tensor, b: tf.Tensor) => T.headGate(a, b))([o, g], dy)];

for (const target of targets) {
  describeOrSkip(`fused HeadGate on ${target.name}`, target.skip, () => {
    const B = target.name;

    it('output, do and dg match the composite on cpu', async () => {
      const rowsBig = Math.ceil(target.big / 128);
      for (const shape of [[2, 5, 3, 128], [1, 3, 2, 6], [2, 4, 6, 64], [1, 1, 1, 4], [3, 2, 2, 7], [1, rowsBig, 1, 128]]) {
        const gShape = shape.slice(0, 3);
        // dg sums h products in another order (a warp's tree against tfjs-cpu's running sum) and cancels: its
        // error is ~h·ulp of the terms, not of the result (2.7e-6 at h = 128 on an H100)
        await compare(B, `headGate [${shape}]`, [randFloat(shape), randFloat(gShape, -6, 6), randFloat(shape)], gateAndGrads,
          { rtol: 1e-5, atol: 2e-5 });
      }
      await compare(B, 'headGate, saturated gates', [randFloat([2, 3, 2, 8]), randFloat([2, 3, 2], -90, 90), randFloat([2, 3, 2, 8])],
        gateAndGrads, { rtol: 1e-5, atol: 1e-6 });
    });

    it('train_gpt.ts\'s hook runs the fused kernels, and useFusedKernels(false) (--fused off) the composite', async () => {
      await useBackend(B);
      const [o, g, dy] = [[2, 5, 3, 8], [2, 5, 3], [2, 5, 3, 8]].map(s => tf.tensor(randFloat(s).values, s));
      await checkFusionHook(() => gateAndGrads(o, g, dy),
        { fused: [HEAD_GATE, HEAD_GATE_GRAD], composite: ['Sigmoid', 'Multiply'], compositeOnly: ['Sigmoid', 'Multiply', 'Sum'] });
      tf.dispose([o, g, dy]);
    });

    it('under bf16 matmul precision the output is the float32 result rounded to bf16 (only a matmul reads it)', async () => {
      await useBackend(B);
      const backend = tf.backend() as CudaBackend;
      const [o, g] = [[2, 3, 2, 8], [2, 3, 2]].map(s => tf.tensor(randFloat(s).values, s));
      try {
        const y32 = T.headGate(o, g), want = y32.dataSync().slice();
        y32.dispose();
        backend.setMatmulPrecision('bf16');
        const before = bytesInUse(), y = T.headGate(o, g);
        assert.equal(bytesInUse() - before, 2 * o.size, 'only bf16 values are written');
        const got = y.dataSync();
        for (let i = 0; i < want.length; i++) assert.equal(got[i], bf16(want[i]), `y[${i}]: ${got[i]} vs bf16(${want[i]})`);
        y.dispose();
      } finally {
        backend.setMatmulPrecision('fp32');
        tf.dispose([o, g]);
      }
    });

    it('under bf16 matmul precision the gradient of o is bf16 only (the attention\'s tensor-core backward reads it): the float32 one rounded; dg as in float32', async () => {
      await useBackend(B);
      const backend = tf.backend() as CudaBackend;
      const [o, g, dy] = [[2, 3, 2, 8], [2, 3, 2], [2, 3, 2, 8]].map(s => tf.tensor(randFloat(s).values, s));
      const grads = () => tf.grads((a: tf.Tensor, b: tf.Tensor) => T.headGate(a, b).mul(dy).sum())([o, g]);
      try {
        const [dO32, dg32] = grads(), want = dO32.dataSync().slice(), wantDg = dg32.dataSync().slice();
        assert.equal(backend.storedValues(dO32).bf16, false, 'fp32: a float32 gradient');
        tf.dispose([dO32, dg32]);
        backend.setMatmulPrecision('bf16');
        const [dO, dg] = grads();
        assert.equal(backend.storedValues(dO).bf16, true, 'bf16: the gradient of o is stored in bf16 only');
        assert.deepEqual(Array.from(dO.dataSync()), Array.from(want, bf16), 'the float32 gradient rounded to bf16');
        assert.deepEqual(dg.dataSync(), wantDg, 'dg does not change');
        tf.dispose([dO, dg]);
      } finally {
        backend.setMatmulPrecision('fp32');
        tf.dispose([o, g, dy]);
      }
    });

    it('an o stored in bf16 only (the attention\'s tensor-core output) is read as stored: y, do and dg as from its values in float32, and no float32 copy of o', async () => {
      await useBackend(B);
      for (const shape of [[2, 5, 3, 128], [3, 2, 2, 7]]) {  // the float4 path and the scalar one
        const [o32, g, dy] = [shape, shape.slice(0, 3), shape].map(s => tf.tensor(randFloat(s).values, s));
        const [o16, oValues] = bf16OnlyAndFloat32(o32);  // and its values, stored in float32
        const got = gateAndGrads(o16, g, dy), want = gateAndGrads(oValues, g, dy);
        assert.ok(storedInBf16(o16), 'HeadGate and HeadGateGrad read o as stored: no float32 copy is kept beside it');
        got.forEach((t, n) => assert.deepEqual(Array.from(t.dataSync()), Array.from(want[n].dataSync()), `[${shape}] output ${n}`));
        tf.dispose([o32, g, dy, o16, oValues, ...got, ...want]);
      }
    });

    it('the gradient launcher\'s delta (the gated attention\'s D) is Σ dO·o per row from dO as stored, bf16 or float32', async () => {
      await useBackend(B);
      const backend = tf.backend() as CudaBackend, rows = 2 * 5 * 3, h = 128;
      const [o, g, dy] = [[2, 5, 3, h], [2, 5, 3], [2, 5, 3, h]].map(s => tf.tensor(randFloat(s).values, s));
      for (const dOBf16 of [false, true]) {
        const dO = backend.makeStoredOutput(o.shape, dOBf16), dg = tf.zeros(g.shape), delta = tf.zeros(g.shape);
        backend.device.headGateGrad(backend.ptr(dy), false, backend.ptr(o), false, backend.ptr(g), dO.ptr, dOBf16, backend.ptr(dg), backend.ptr(delta), rows, h);
        const dOv = backend.readSync(dO.out.dataId) as Float32Array, ov = o.dataSync(), got = delta.dataSync();
        for (let r = 0; r < rows; r++) {
          let want = 0, scale = 0;
          for (let j = 0; j < h; j++) { want += dOv[r * h + j] * ov[r * h + j]; scale += Math.abs(dOv[r * h + j] * ov[r * h + j]); }
          assert.ok(Math.abs(got[r] - want) <= 1e-6 * scale, `dO in ${dOBf16 ? 'bf16' : 'float32'}: delta[${r}] ${got[r]}, Σ dO·o ${want}`);
        }
        backend.disposeIntermediateTensorInfo(dO.out);
        tf.dispose([dg, delta]);
      }
      tf.dispose([o, g, dy]);
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const o = tf.zeros([2, 5, 3, 8]), g = tf.zeros([2, 5, 3]);
        const run = (kernel: string, inputs: tf.NamedTensorMap) => () => tf.engine().runKernel(kernel, inputs, {});
        assert.throws(run(HEAD_GATE, { o, g: tf.zeros([2, 5]) }), /kernel HeadGate\(.*HeadGate: o must be \[B,T,H,h\] and g \[B,T,H\], got o float32\[2,5,3,8\] and g float32\[2,5\]/);
        assert.throws(run(HEAD_GATE, { o: tf.zeros([2, 5, 24]), g }), /HeadGate: o must be \[B,T,H,h\]/);
        assert.throws(run(HEAD_GATE, { o: tf.zeros([2, 5, 3, 8], 'int32'), g }), /HeadGate: o must be float32/);
        assert.throws(run(HEAD_GATE, { o }), /HeadGate: input g is missing/);
        assert.throws(run(HEAD_GATE_GRAD, { dy: tf.zeros([2, 5, 3, 4]), o, g }), /HeadGateGrad: dy float32\[2,5,3,4\] must have o's shape \[2,5,3,8\]/);
      });
    });
  });
}
