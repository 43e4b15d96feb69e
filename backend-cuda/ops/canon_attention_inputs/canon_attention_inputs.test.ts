// Canon B inside the attention's inputs ('CanonAttentionInputs' / 'CanonAttentionInputsVE' and 'CanonAttentionInputsGrad',
// canon_attention_inputs.cu) against their oracle, train_gpt.ts's composite canonAttentionInputs() (canon() with the
// heads' norm, then attentionInputs()) on the cpu backend: q, k, v and the gradients for x, w, lambdas and ve for random
// dq, dk, dv, on fresh random inputs, tables and document boundaries: QK-norm on and off, with and without value
// embeddings, GQA, h = 8 (a pair's lanes side by side), 16, 64 and 128 (a head a warp), more rows than a block's 256 and
// T not a multiple of a thread's 32 rows, half and no rotary; the gradients so far of ve and the lambdas summed in; q, k,
// v and dx in bf16 only under bf16 matmul precision, and x, dk, dv read as stored where bf16 only; bit-identical reruns;
// that train_gpt.ts's hook and the model run the fused kernels and `--fused off` the composite; bad inputs failing with
// the kernel's name.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { CudaBackend } from '../../backend.ts';
import * as T from '../../../train_gpt.ts';
import { bf16, bf16OnlyAndFloat32, checkFusionHook, checkModelKernels, compare, describeOrSkip, type HostTensor, randFloat, randomDocIds, randomRope, storedInBf16, targets, useBackend } from '../../../test/cuda_harness.ts';
import { CANON_ATTENTION_INPUTS, CANON_ATTENTION_INPUTS_GRAD, CANON_ATTENTION_INPUTS_VE } from './canon_attention_inputs.ts';

interface Case { B: number; T: number; H: number; Hk: number; h: number; rope: 'half' | 'none' }
type Opts = { H: number; Hk: number; h: number; qkNorm: boolean };

const ropeOf = (c: Case): T.RopeState =>
  c.rope === 'none' ? { freqs: new Float32Array(c.h / 2), attnScale: 1, version: 0 } : randomRope(c.h, c.rope);

/** Σ q·dq + Σ k·dk + Σ v·dv: its gradient with respect to (q, k, v) is (dq, dk, dv). */
const weightedSum = (outs: tf.Tensor[], dys: tf.Tensor[]): tf.Scalar =>
  outs.map((o, i) => o.mul(dys[i]).sum()).reduce((a, b) => a.add(b)) as tf.Scalar;

/** Random inputs of a case: x, w, docIds, lambdas, dq, dk, dv(, ve). */
function inputsOf(c: Case, withVe: boolean): HostTensor[] {
  const { B, T: Tn, H, Hk, h } = c, C = (H + 2 * Hk) * h;
  const ins = [randFloat([B, Tn, C]), randFloat([C, 4], -0.5, 0.5), randomDocIds(B, Tn), randFloat([2], -1.5, 1.5), randFloat([B, Tn, H, h]),
    randFloat([B, Tn, Hk, h]), randFloat([B, Tn, Hk, h])];
  return withVe ? [...ins, randFloat([B, Tn, Hk, h])] : ins;
}

const tensorOf = (h: HostTensor) => tf.tensor(h.values, h.shape, h.dtype);

/** [q, k, v, dx, dw, dlambdas(, dve)]: the fused kernels where the backend has them, the composite on cpu. */
const valuesAndGrads = (rope: T.RopeState, o: Opts) => (...xs: tf.Tensor[]): tf.Tensor[] => {
  const [x, w, docIds, lambdas, dq, dk, dv, ve] = xs;  // inputsOf's order
  const ctx = new T.ForwardContext(docIds as tf.Tensor2D);
  const run = (a: tf.Tensor, b: tf.Tensor, l: tf.Tensor, e?: tf.Tensor) => T.canonAttentionInputs(a, b, ctx, rope, e ?? null, l, o);
  const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, l: tf.Tensor, e?: tf.Tensor) => weightedSum(run(a, b, l, e), [dq, dk, dv]));
  return [...run(x, w, lambdas, ve), ...grads(ve ? [x, w, lambdas, ve] : [x, w, lambdas])];
};

const ATTRS = (c: Case, qkNorm: boolean) => ({ numHeads: c.H, kvHeads: c.Hk, qkNorm, eps: 2 ** -23 });

for (const target of targets) {
  describeOrSkip(`fused CanonAttentionInputs on ${target.name}`, target.skip, () => {
    const name = target.name;
    // the taps and the heads' norm as canon_conv's tests, the rotation and mix as attention_inputs'
    const tol = { rtol: 1e-3, atol: 1e-3 };
    const CASES: Case[] = [
      { B: 2, T: 7, H: 2, Hk: 2, h: 8, rope: 'half' },     // a pair's lanes side by side
      { B: 1, T: 300, H: 4, Hk: 2, h: 16, rope: 'half' },  // GQA; 300 rows: two blocks of 256, the second partial
      { B: 3, T: 40, H: 1, Hk: 1, h: 128, rope: 'none' },  // a head a warp; no rotary (the tables turn by 0)
      ...(name === 'cuda' ? [{ B: 2, T: 600, H: 2, Hk: 1, h: 64, rope: 'half' }, { B: 1, T: 1100, H: 6, Hk: 6, h: 128, rope: 'half' }] as Case[] : []),
    ];

    it('q, k, v and the gradients for x, w, lambdas and ve match the composite on cpu, across document boundaries', async () => {
      for (const c of CASES) {
        for (const qkNorm of [true, false]) {
          for (const withVe of [true, false]) {
            const label = `[B ${c.B}, T ${c.T}, H ${c.H}, Hk ${c.Hk}, h ${c.h}] ${c.rope} rotary, qkNorm ${qkNorm}, ${withVe ? 'with' : 'without'} ve`;
            await compare(name, label, inputsOf(c, withVe), valuesAndGrads(ropeOf(c), { H: c.H, Hk: c.Hk, h: c.h, qkNorm }), tol);
          }
        }
      }
    });

    it('adds the gradients so far of ve, w and the lambdas in its stores, as tfjs\'s Add would', async () => {
      await useBackend(name);
      const c: Case = { B: 2, T: 9, H: 2, Hk: 1, h: 16, rope: 'half' };
      const [x, w, docIds, lambdas, dq, dk, dv, ve] = inputsOf(c, true).map(tensorOf), { cos, sin } = T.rotaryTables(ropeOf(c), c.T);
      const veAcc = tensorOf(randFloat(ve.shape)), wAcc = tensorOf(randFloat(w.shape)), lambdasAcc = tensorOf(randFloat([2]));
      const grad = (extra: tf.NamedTensorMap) => tf.engine().runKernel(CANON_ATTENTION_INPUTS_GRAD,
        { dq, dk, dv, x, w, docIds, cos, sin, lambdas, ve, ...extra }, ATTRS(c, true)) as tf.Tensor[];
      const [plain, summed] = [grad({}), grad({ veAccumulated: veAcc, wAccumulated: wAcc, lambdasAccumulated: lambdasAcc })];
      const sums = [tf.add(wAcc, plain[1]), tf.add(lambdasAcc, plain[2]), tf.add(veAcc, plain[3])];
      ['dw', 'dlambdas', 'dve'].forEach((what, i) =>
        assert.deepEqual(Array.from(summed[i + 1].dataSync()), Array.from(sums[i].dataSync()), `${what} with its sum so far, against the sum + ${what}`));
      assert.deepEqual(Array.from(summed[0].dataSync()), Array.from(plain[0].dataSync()), 'dx');
      assert.throws(() => grad({ wAccumulated: lambdas }), /CanonAttentionInputsGrad: wAccumulated must be float32 \[64,4\], got float32\[2\]/);
      tf.dispose([x, w, docIds, lambdas, dq, dk, dv, ve, veAcc, wAcc, lambdasAcc, ...plain, ...summed, ...sums]);
    });

    it('the gradients are bit-identical on a rerun (deterministic sums for dw and dlambdas)', async () => {
      await useBackend(name);
      const c: Case = name === 'cuda' ? { B: 2, T: 700, H: 6, Hk: 6, h: 128, rope: 'half' } : { B: 2, T: 7, H: 2, Hk: 2, h: 8, rope: 'half' };
      const xs = inputsOf(c, true).map(tensorOf), fn = valuesAndGrads(ropeOf(c), { H: c.H, Hk: c.Hk, h: c.h, qkNorm: true });
      const once = () => tf.tidy(() => fn(...xs).map((t) => t.dataSync()));
      const [a, b] = [once(), once()];
      for (let i = 0; i < a.length; i++) assert.deepEqual(b[i], a[i], `output ${i} differs between two runs`);
      tf.dispose(xs);
    });

    it('under bf16 matmul precision writes q, k, v and dx in bf16 only, and reads x, dk and dv bf16-only as stored: what their float32 values give, rounded', async () => {
      await useBackend(name);
      const backend = tf.backend() as CudaBackend, before = backend.matmulPrecision;
      const c: Case = { B: 2, T: 40, H: 2, Hk: 1, h: 16, rope: 'half' }, attrs = ATTRS(c, true);
      const [x, w, docIds, lambdas, dq, dk, dv, ve] = inputsOf(c, true).map(tensorOf), { cos, sin } = T.rotaryTables(ropeOf(c), c.T);
      const [[x16, xValues], [dk16, dkValues], [dv16, dvValues]] = [x, dk, dv].map(bf16OnlyAndFloat32);
      const forward = (a: tf.Tensor) => tf.engine().runKernel(CANON_ATTENTION_INPUTS_VE, { x: a, w, docIds, cos, sin, lambdas, ve }, attrs) as tf.Tensor[];
      const gradient = (a: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
        tf.engine().runKernel(CANON_ATTENTION_INPUTS_GRAD, { dq, dk: k, dv: v, x: a, w, docIds, cos, sin, lambdas, ve }, attrs) as tf.Tensor[];
      try {
        backend.setMatmulPrecision('bf16');
        const [half, halfGrads] = [forward(x16), gradient(x16, dk16, dv16)];
        assert.deepEqual([x16, dk16, dv16].map(storedInBf16), [true, true, true], 'x, dk and dv read as stored, not widened');
        assert.deepEqual(half.map(storedInBf16), [true, true, true], 'q, k and v in bf16 only');
        assert.deepEqual(halfGrads.map(storedInBf16), [true, false, false, false], 'dx in bf16 only (the projection\'s gradient matmuls read it)');
        backend.setMatmulPrecision('fp32');
        const [exact, exactGrads] = [forward(xValues), gradient(xValues, dkValues, dvValues)];
        half.forEach((t, i) => assert.deepEqual(t.dataSync(), Float32Array.from(exact[i].dataSync(), bf16), `${'qkv'[i]}: the float32 output rounded`));
        assert.deepEqual(halfGrads[0].dataSync(), Float32Array.from(exactGrads[0].dataSync(), bf16), 'dx: the float32 dx rounded');
        for (const i of [1, 2, 3]) assert.deepEqual(halfGrads[i].dataSync(), exactGrads[i].dataSync(), `gradient output ${i} as from float32 copies`);
        tf.dispose([...half, ...halfGrads, ...exact, ...exactGrads]);
      } finally {
        backend.setMatmulPrecision(before);
        tf.dispose([x, w, docIds, lambdas, dq, dk, dv, ve, x16, xValues, dk16, dkValues, dv16, dvValues]);
      }
    });

    it('train_gpt.ts\'s hook runs the fused kernels, and useFusedKernels(false) (--fused off) the composite', async () => {
      await useBackend(name);
      const c: Case = { B: 2, T: 5, H: 2, Hk: 1, h: 8, rope: 'half' }, rope = ropeOf(c);
      for (const withVe of [true, false]) {
        const xs = inputsOf(c, withVe).map(tensorOf), fn = () => valuesAndGrads(rope, { H: 2, Hk: 1, h: 8, qkNorm: true })(...xs);
        const forward = withVe ? CANON_ATTENTION_INPUTS_VE : CANON_ATTENTION_INPUTS, other = withVe ? CANON_ATTENTION_INPUTS : CANON_ATTENTION_INPUTS_VE;
        await checkFusionHook(fn, { fused: [forward, CANON_ATTENTION_INPUTS_GRAD], composite: ['SplitV', 'Concat'],
          compositeOnly: [other, 'CanonConv', 'AttentionInputs', 'AttentionInputsVE', 'SplitV', 'Concat'] });
        tf.dispose(xs);
      }
    });

    it('the model\'s attention layers with Canon B run them, with and without value embeddings, with the loss and gradients of --fused off', async () => {
      await useBackend(name);
      const cfg = T.resolveConfig('tiny', { vocabSize: 64, bosToken: 63, numLayers: 3, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 1,
        valueEmbeds: 1, backoutLayer: 1, skip: 'none', seqLen: 16, windowBlock: 4, windowSchedule: [2], windowPattern: 'SLS', valWindow: 2, canon: 'B' }).cfg;
      // the value-embedding table serves layers 0 and 2; layer 1 has none; no Canon layer or attention inputs on their own
      await checkModelKernels(cfg, [0, 5, 16, 27], {
        [CANON_ATTENTION_INPUTS_VE]: 2, [CANON_ATTENTION_INPUTS]: 1, [CANON_ATTENTION_INPUTS_GRAD]: 3, CanonConv: 0, AttentionInputs: 0,
        AttentionInputsVE: 0,
      });
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(name);
      tf.tidy(() => {
        const attrs = { numHeads: 2, kvHeads: 1, qkNorm: true, eps: 1e-6 };
        const x = tf.zeros([2, 5, 32]), w = tf.zeros([32, 4]), docIds = tf.zeros([2, 5], 'int32'), cos = tf.ones([1, 5, 1, 4]);
        const sin = tf.zeros([1, 5, 1, 4]), lambdas = tf.ones([2]), ve = tf.zeros([2, 5, 1, 8]), fwd = { x, w, docIds, cos, sin, lambdas };
        const run = (kernel: string, inputs: tf.NamedTensorMap, a: tf.NamedAttrMap = attrs) => () => tf.engine().runKernel(kernel, inputs, a);
        assert.throws(run(CANON_ATTENTION_INPUTS, { ...fwd, x: tf.zeros([2, 5, 30]) }),
          /kernel CanonAttentionInputs\(.*CanonAttentionInputs: x must be \[B,T,\(H\+2·Hk\)·h\] for H = 2, Hk = 1, got float32\[2,5,30\]/);
        assert.throws(run(CANON_ATTENTION_INPUTS, { ...fwd, x: tf.zeros([2, 5, 48]), w: tf.zeros([48, 4]) }),
          /CanonAttentionInputs: heads of 12 channels \(the kernel takes a power of two from 8 to 128\)/);
        assert.throws(run(CANON_ATTENTION_INPUTS, { ...fwd, w: tf.zeros([32, 3]) }), /CanonAttentionInputs: w must be \[32,4\] for x float32\[2,5,32\], got float32\[32,3\]/);
        assert.throws(run(CANON_ATTENTION_INPUTS, { ...fwd, docIds: tf.zeros([2, 5]) }), /CanonAttentionInputs: docIds must be int32, got float32\[2,5\]/);
        assert.throws(run(CANON_ATTENTION_INPUTS, { ...fwd, docIds: tf.zeros([2, 4], 'int32') }), /CanonAttentionInputs: docIds must be \[2,5\]/);
        assert.throws(run(CANON_ATTENTION_INPUTS, { ...fwd, cos: tf.ones([1, 5, 1, 8]) }), /CanonAttentionInputs: cos must be \[1,5,1,4\] for x float32\[2,5,32\]/);
        assert.throws(run(CANON_ATTENTION_INPUTS, { x, w, docIds, cos, lambdas }), /CanonAttentionInputs: input sin is missing/);
        assert.throws(run(CANON_ATTENTION_INPUTS, { ...fwd, ve }), /CanonAttentionInputs: takes no ve \(CanonAttentionInputsVE does\)/);
        assert.throws(run(CANON_ATTENTION_INPUTS_VE, fwd), /CanonAttentionInputsVE: input ve is missing/);
        assert.throws(run(CANON_ATTENTION_INPUTS, fwd, { ...attrs, kvHeads: 0 }), /CanonAttentionInputs: attr kvHeads must be a positive integer, got 0/);
        assert.throws(run(CANON_ATTENTION_INPUTS, fwd, { ...attrs, qkNorm: 1 }), /CanonAttentionInputs: attr qkNorm must be a boolean/);
        const dq = tf.zeros([2, 5, 2, 8]), dk = tf.zeros([2, 5, 1, 8]), dv = tf.zeros([2, 5, 1, 8]);
        assert.throws(run(CANON_ATTENTION_INPUTS_GRAD, { ...fwd, dq: dk, dk, dv }),
          /kernel CanonAttentionInputsGrad\(.*CanonAttentionInputsGrad: dq must be float32 \[2,5,2,8\], got float32\[2,5,1,8\]/);
        assert.throws(run(CANON_ATTENTION_INPUTS_GRAD, { ...fwd, dq, dk }), /CanonAttentionInputsGrad: input dv is missing/);
        assert.throws(run(CANON_ATTENTION_INPUTS_GRAD, { ...fwd, dq, dk, dv, veAccumulated: ve }), /CanonAttentionInputsGrad: veAccumulated float32\[2,5,1,8\] needs a ve of its shape, got none/);
        assert.throws(run(CANON_ATTENTION_INPUTS_GRAD, { ...fwd, dq, dk, dv, lambdasAccumulated: tf.ones([3]) }), /CanonAttentionInputsGrad: lambdasAccumulated must be float32 \[2\]/);
      });
    });
  });
}
