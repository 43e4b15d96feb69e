// The fused scaled add ('ScaledAdd' y = a·x + b·z and 'ScaledAddGrad', scaled_add.cu) against its
// oracle, train_gpt.ts's composite x.mul(a).add(z.mul(b)) on the cpu backend: the value and all four
// gradients (dy ≠ 1) through train_gpt.ts's own hook (scaledAdd → runFused) on fresh random inputs, sizes
// on the GPU's float4 and scalar paths, n = 1, n = 0 and large; x = z and a = b (tfjs adds the gradients);
// a constant a (the skips and backout) asking no gradient; that the hook runs the fused kernels and
// `--fused off` (useFusedKernels(false)) the composite, and what each keeps for the backward; sums
// bit-identical run to run; bad inputs failing with the kernel's name; the model's call sites.
// y, dx and dz are the composite's own float32 operations (exact on cuda-host); the sums da and db are
// checked against n·ε-style bounds on Σ|dy|·(|x| + |z|), far below what a wrong operand would give.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import { SCALED_ADD, SCALED_ADD_GRAD, SCALED_ADD_PAIR } from '../scaled_add/scaled_add.ts';
import { bytesInUse, checkFusionHook, checkModelKernels, describeOrSkip, type HostTensor, kernelsRun, randFloat, targets, useBackend, withFusedOff } from '../../../test/cuda_harness.ts';

type Out = { shape: number[]; values: Float32Array };

/** f's value and its gradients with respect to every input for dy, on `backend`. */
async function valueAndGradsOn(backend: string, fn: (...xs: tf.Tensor[]) => tf.Tensor, inputs: HostTensor[], dy: HostTensor): Promise<Out[]> {
  await useBackend(backend);
  const xs = inputs.map(h => tf.tensor(h.values, h.shape));
  const dyT = tf.tensor(dy.values, dy.shape);
  const { value, grads } = tf.valueAndGrads(fn)(xs, dyT);
  const outs = [value, ...grads].map(t => ({ shape: t.shape, values: t.dataSync() as Float32Array }));
  tf.dispose([...xs, dyT, value, ...grads]);
  return outs;
}

/** Σ|dy|·(|x| + |z|): the scale of the rounding error of a sum Σ dy·x or Σ dy·z (and of both, for a = b). */
function sumScale(dy: HostTensor, x: HostTensor, z: HostTensor): number {
  let s = 0;
  for (let i = 0; i < dy.values.length; i++) s += Math.abs(dy.values[i]) * (Math.abs(x.values[i]) + Math.abs(z.values[i]));
  return s;
}

/**
 * fn on `target` against the same fn on cpu (where scaledAdd is the composite): outputs `exactOutputs`
 * (value and tensor gradients) within `elementTol` relative (0: bit for bit), the rest (the scalars'
 * gradients) within sumTol·scale.
 */
async function compareWithCpu(target: string, label: string, fn: (...xs: tf.Tensor[]) => tf.Tensor, inputs: HostTensor[], dy: HostTensor,
  exactOutputs: number, elementTol: number, sumTol: number, scale: number): Promise<void> {
  const want = await valueAndGradsOn('cpu', fn, inputs, dy);
  const got = await valueAndGradsOn(target, fn, inputs, dy);
  assert.equal(got.length, want.length, `${label}: number of outputs`);
  want.forEach((w, o) => {
    const g = got[o];
    assert.deepEqual(g.shape, w.shape, `${label}: output ${o} shape`);
    const exact = o < exactOutputs;
    for (let i = 0; i < w.values.length; i++) {
      const bound = exact ? elementTol * Math.abs(w.values[i]) : sumTol * scale;
      if (!(Math.abs(g.values[i] - w.values[i]) <= bound)) {
        assert.fail(`${label}: output ${o} [${w.shape}] at ${i}: ${target} ${g.values[i]}, cpu composite ${w.values[i]} (bound ${bound})`);
      }
    }
  });
}

const scaledAdd = (x: tf.Tensor, z: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => T.scaledAdd(x, z, a, b);

for (const target of targets) {
  describeOrSkip(`fused ScaledAdd on ${target.name}`, target.skip, () => {
    const B = target.name;
    // y, dx, dz: bit for bit on cuda-host; the GPU does the same correctly rounded operations, allowed 1e-6.
    const elementTol = B === 'cuda-host' ? 0 : 1e-6;
    // da, db: float64 sums on cuda-host; float32 per-thread and tree sums on the GPU.
    const sumTol = B === 'cuda-host' ? 1e-6 : 1e-5;
    // 7, 135, 1 and 4099 / 2^20 + 7: the scalar path; 2048, 4096 / 3·2^20: float4; [0, 3]: empty
    const SHAPES = [[7], [3, 5, 9], [2, 16, 64], [1], [0, 3], [target.big], B === 'cuda' ? [2, 2048, 768] : [16, 256]];

    it('y and the gradients of x, z, a and b match the composite on cpu (scalar and float4 paths, n = 1, n = 0, large)', async () => {
      for (const shape of SHAPES) {
        const [x, z, dy] = [randFloat(shape), randFloat(shape), randFloat(shape)], [a, b] = [randFloat([]), randFloat([])];
        await compareWithCpu(B, `scaledAdd [${shape}] a = ${a.values[0]}, b = ${b.values[0]}`, scaledAdd, [x, z, a, b], dy,
          3, elementTol, sumTol, sumScale(dy, x, z));
      }
    });

    it('x and z one tensor, a and b one tensor: tfjs adds their gradients, as for the composite', async () => {
      for (const shape of [[5, 7], [4, 64]]) {
        const [x, dy, a] = [randFloat(shape), randFloat(shape), randFloat([])];
        await compareWithCpu(B, `scaledAdd(x, x, a, a) [${shape}]`, (xt, at) => T.scaledAdd(xt, xt, at, at), [x, a], dy,
          2, elementTol, sumTol, sumScale(dy, x, x));
        const [z, b] = [randFloat(shape), randFloat([])];
        await compareWithCpu(B, `scaledAdd(x, z, a, a) [${shape}]`, (xt, zt, at) => T.scaledAdd(xt, zt, at, at), [x, z, a], dy,
          3, elementTol, sumTol, sumScale(dy, x, z));
        await compareWithCpu(B, `scaledAdd(x, x, a, b) [${shape}]`, (xt, at, bt) => T.scaledAdd(xt, xt, at, bt), [x, a, b], dy,
          2, elementTol, sumTol, sumScale(dy, x, x));
      }
    });

    it('z\'s gradient so far (z also feeds a later op, as x0 every block) is added by the kernel: the composite\'s values, no Add', async () => {
      for (const shape of [[7], [4, 64], [target.big]]) {
        const [x, z, w, dy, a, b] = [randFloat(shape), randFloat(shape), randFloat(shape), randFloat(shape), randFloat([]), randFloat([])];
        // z·w is taped after the scaled add, so the backward reaches it first: z's gradient holds z·w's when ScaledAddGrad runs
        const fn = (xt: tf.Tensor, zt: tf.Tensor, wt: tf.Tensor, at: tf.Tensor, bt: tf.Tensor) => T.scaledAdd(xt, zt, at, bt).add(zt.mul(wt));
        await compareWithCpu(B, `scaledAdd(x, z, a, b) + z·w [${shape}]`, fn, [x, z, w, a, b], dy, 4, elementTol, sumTol, sumScale(dy, x, z));
        await useBackend(B);
        const ts = [x, z, w, a, b].map(h => tf.tensor(h.values, h.shape)), dyt = tf.tensor(dy.values, dy.shape);
        const kernels = await kernelsRun(() => tf.grads(fn)(ts, dyt));
        assert.deepEqual(kernels.filter(k => k === 'Add' || k === SCALED_ADD_GRAD), ['Add', SCALED_ADD_GRAD],
          `[${shape}]: the forward's Add, and z's two gradients summed by ScaledAddGrad, not by an Add (${kernels.join(', ')})`);
        tf.dispose([...ts, dyt]);
      }
    });

    it('x\'s and z\'s gradients so far (a skip\'s source is the next block\'s x and the skip\'s z) are added by one run of the kernel: the composite\'s values, no Add', async () => {
      for (const shape of [[7], [4, 64], [target.big]]) {
        const [x, z, u, w, dy, a, b] = [randFloat(shape), randFloat(shape), randFloat(shape), randFloat(shape), randFloat(shape), randFloat([]), randFloat([])];
        // x·u and z·w are taped after the scaled add, so the backward reaches them first: x and z both have gradients
        const fn = (xt: tf.Tensor, zt: tf.Tensor, ut: tf.Tensor, wt: tf.Tensor, at: tf.Tensor, bt: tf.Tensor) =>
          T.scaledAdd(xt, zt, at, bt).add(xt.mul(ut)).add(zt.mul(wt));
        await compareWithCpu(B, `scaledAdd(x, z, a, b) + x·u + z·w [${shape}]`, fn, [x, z, u, w, a, b], dy, 5, elementTol, sumTol, sumScale(dy, x, z));
        await useBackend(B);
        const ts = [x, z, u, w, a, b].map(h => tf.tensor(h.values, h.shape)), dyt = tf.tensor(dy.values, dy.shape);
        const kernels = await kernelsRun(() => tf.grads(fn)(ts, dyt));
        assert.deepEqual(kernels.filter(k => k === 'Add' || k === SCALED_ADD_GRAD), ['Add', 'Add', SCALED_ADD_GRAD],
          `[${shape}]: the forward's two Adds, and x's and z's gradients summed by one ScaledAddGrad, not by Adds (${kernels.join(', ')})`);
        tf.dispose([...ts, dyt]);
      }
    });

    it('a constant a (tf.scalar(1), as the skips and the backout pass it) gets no gradient and leaks nothing', async () => {
      const shape = [3, 33], [x, z, dy, b] = [randFloat(shape), randFloat(shape), randFloat(shape), randFloat([])];
      const skip = (xt: tf.Tensor, zt: tf.Tensor, bt: tf.Tensor) => T.scaledAdd(xt, zt, tf.scalar(1), bt);
      await compareWithCpu(B, `scaledAdd(x, z, 1, b) [${shape}]`, skip, [x, z, b], dy, 3, elementTol, sumTol, sumScale(dy, x, z));
      await useBackend(B);
      const [xt, zt, bt, dyt] = [x, z, b, dy].map(h => tf.tensor(h.values, h.shape));
      const numTensors = tf.memory().numTensors, bytes = bytesInUse();
      const { value, grads } = tf.valueAndGrads(skip)([xt, zt, bt], dyt);
      assert.equal(tf.memory().numTensors, numTensors + 4, 'y and three gradients, nothing else (the unused da is gone)');
      tf.dispose([value, ...grads]);
      assert.equal(bytesInUse(), bytes, 'no buffer outlives the step');
      tf.dispose([xt, zt, bt, dyt]);
    });

    it('train_gpt.ts\'s hook runs the fused kernels (keeping nothing for the backward), useFusedKernels(false) the composite', async () => {
      await useBackend(B);
      const shape = [4, 6, 8], n = 4 * 6 * 8;
      const [x, z, dy] = [randFloat(shape), randFloat(shape), randFloat(shape)].map(h => tf.tensor(h.values, h.shape));
      const [a, b] = [randFloat([]), randFloat([])].map(h => tf.tensor(h.values, h.shape));
      const run = () => { const { value, grads } = tf.valueAndGrads(scaledAdd)([x, z, a, b], dy); return [value, ...grads]; };
      /** Bytes alive right after the forward, before backprop: y and whatever the tape keeps beyond the inputs. */
      const heldAfterForward = () => {
        const before = bytesInUse();
        let held = 0;
        const { value, grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => {
          const y = T.scaledAdd(xs[0], xs[1], xs[2], xs[3]);
          held = bytesInUse() - before;
          return y.mul(dy).sum();
        })([x, z, a, b]);
        tf.dispose([value, ...grads]);
        assert.equal(bytesInUse(), before, 'no buffer outlives the step');
        return held;
      };
      assert.deepEqual(await kernelsRun(run), [SCALED_ADD, SCALED_ADD_GRAD]);
      assert.equal(heldAfterForward(), n * 4, 'fused: y only (x, z, a and b are the inputs\' own buffers)');
      await checkFusionHook(run, { fused: [SCALED_ADD, SCALED_ADD_GRAD], composite: ['Multiply', 'Add', 'Sum'] });
      await withFusedOff(() => assert.equal(heldAfterForward(), 3 * n * 4, 'composite: y, x·a and z·b (its Add keeps both)'));
      tf.dispose([x, z, a, b, dy]);
    });

    it('the gradient is bit-identical run to run (no atomics in the sums)', async () => {
      await useBackend(B);
      const shape = [target.big + 1];  // a multiple of 4 on both targets: the float4 path on the GPU
      const [x, z, dy] = [randFloat(shape), randFloat(shape), randFloat(shape)].map(h => tf.tensor(h.values, h.shape));
      const [a, b] = [randFloat([]), randFloat([])].map(h => tf.tensor(h.values, h.shape));
      const grads = () => tf.tidy(() => tf.grads(scaledAdd)([x, z, a, b], dy).map(g => g.dataSync() as Float32Array));
      const first = grads();
      for (let run = 0; run < 3; run++) {
        grads().forEach((g, i) => assert.deepEqual(g, first[i], `gradient ${i} differs on run ${run + 2}`));
      }
      tf.dispose([x, z, a, b, dy]);
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const x = tf.zeros([2, 3]), z = tf.zeros([2, 3]), a = tf.scalar(1), b = tf.scalar(2);
        const run = (kernel: string, inputs: tf.NamedTensorMap) => () => tf.engine().runKernel(kernel, inputs, {});
        assert.throws(run(SCALED_ADD, { x, z: tf.zeros([3, 2]), a, b }),
          /kernel ScaledAdd\(.*ScaledAdd: x and z must have one shape, got float32\[2,3\] and float32\[3,2\]/);
        assert.throws(run(SCALED_ADD, { x, z: tf.zeros([6]), a, b }), /ScaledAdd: x and z must have one shape/);
        assert.throws(run(SCALED_ADD, { x, z, a: tf.zeros([2]), b }), /ScaledAdd: a must be a float32 scalar \(shape \[\]\), got float32\[2\]/);
        assert.throws(run(SCALED_ADD, { x, z, a, b: tf.zeros([1]) }), /ScaledAdd: b must be a float32 scalar \(shape \[\]\), got float32\[1\]/);
        assert.throws(run(SCALED_ADD, { x, z, a: tf.scalar(1, 'int32'), b }), /ScaledAdd: a must be float32, got int32\[\]/);
        assert.throws(run(SCALED_ADD, { x: tf.zeros([2, 3], 'int32'), z, a, b }), /ScaledAdd: x must be float32, got int32\[2,3\]/);
        assert.throws(run(SCALED_ADD, { x, z, a }), /ScaledAdd: input b is missing/);
        assert.throws(run(SCALED_ADD_GRAD, { dy: tf.zeros([2, 4]), x, z, a, b }),
          /kernel ScaledAddGrad\(.*ScaledAddGrad: dy and x must have one shape, got float32\[2,4\] and float32\[2,3\]/);
        assert.throws(run(SCALED_ADD_GRAD, { x, z, a, b }), /ScaledAddGrad: input dy is missing/);
        assert.throws(run(SCALED_ADD_PAIR, { x, z, ab: tf.zeros([3]) }), /ScaledAddPair: ab must be float32 \[2\], got float32\[3\]/);
        assert.throws(run(SCALED_ADD_GRAD, { dy: x, x, z, a, b, abAccumulated: tf.zeros([2]) }), /ScaledAddGrad: abAccumulated float32\[2\] needs ab, both \[2\]/);
        // ScaledAddPair's gradient: [dx, dz, dab] with dab = [Σ dy·x, Σ dy·z] + the sum so far
        const [, , dab] = tf.engine().runKernel(SCALED_ADD_GRAD, { dy: tf.ones([2, 3]), x: tf.fill([2, 3], 2), z: tf.fill([2, 3], 3),
          ab: tf.tensor1d([1, 1]), abAccumulated: tf.tensor1d([0.5, -1]) }, {}) as tf.Tensor[];
        assert.deepEqual(Array.from(dab.dataSync()), [12.5, 17]);
        // a call the kernel does not support (z broadcast) runs the composite instead of failing
        const y = T.scaledAdd(x, tf.ones([2, 1]), a, b);
        assert.deepEqual([y.shape, Array.from(y.dataSync())], [[2, 3], [2, 2, 2, 2, 2, 2]]);
      });
    });

    it('train_gpt.ts\'s model runs it at its call sites, with the gradients of --fused off', async () => {
      await useBackend(B);
      const cfg = T.resolveConfig('tiny', {
        vocabSize: 64, bosToken: 63, numLayers: 4, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 2, noAttnLayers: [0],
        noMlpLayers: [], skip: '1-3', valueEmbeds: 1, backout: true, backoutLayer: 2, blockLambdas: true, seqLen: 16,
        windowBlock: 4, windowSchedule: [2], windowPattern: 'SLSL', valWindow: 2,
      }).cfg;
      // the skip 1 → 3 and the backout (ScaledAdd); the block lambdas in the 4 layers (ScaledAddPair, a and b from the [2]
      // parameter); the value-embedding mix happens inside the fused AttentionInputsVE where the backend has it
      await checkModelKernels(cfg, [0, 16], { [SCALED_ADD]: 1 + 1, [SCALED_ADD_PAIR]: 4, [SCALED_ADD_GRAD]: 1 + 1 + 4 });
    });
  });
}
