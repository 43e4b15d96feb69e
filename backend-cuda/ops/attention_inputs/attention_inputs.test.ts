// The fused attention inputs ('AttentionInputs' / 'AttentionInputsVE' and 'AttentionInputsGrad', and without v
// 'AttentionInputsQK' and 'AttentionInputsQKGrad', attention_inputs.cu) against their oracle, train_gpt.ts's composite
// attentionInputs() on the cpu backend: q, k, v and the gradients with respect to qkv, lambdas and ve for random dq, dk,
// dv, through train_gpt.ts's own hook (runFused), on fresh random inputs and tables: H = Hk and GQA, with and without
// value embeddings, without v (the shaped blocks' q and k), QK-norm on and off, h = 128 and 64 (the GPU's float4 paths),
// 16, and 6 and 10 (its scalar path), full, half and no rotary, B > 1, T = 1; outputs the loss does not use (tfjs passes
// zeros for their gradients); q, k, v in bf16 only under bf16 matmul precision; bit-identical reruns; the bytes kept for
// the gradient; that the hook and the model (the baseline's and the shaped blocks') run the fused kernels and
// `--fused off` the composite; bad inputs failing with the kernel's name.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { CudaBackend } from '../../backend.ts';
import * as T from '../../../train_gpt.ts';
import { ATTENTION_INPUTS, ATTENTION_INPUTS_GRAD, ATTENTION_INPUTS_QK, ATTENTION_INPUTS_QK_GRAD, ATTENTION_INPUTS_VE } from '../attention_inputs/attention_inputs.ts';
import { bf16, bf16OnlyAndFloat32, bytesInUse, checkFusionHook, checkModelKernels, compare, describeOrSkip, type HostTensor, kernelsRun, randFloat, randomRope, storedInBf16, targets, useBackend, withFusedOff } from '../../../test/cuda_harness.ts';

interface Case { B: number; T: number; H: number; Hk: number; h: number; rope: 'full' | 'half' | 'none' }
type Opts = { H: number; Hk: number; h: number; qkNorm: boolean };

const ropeOf = (c: Case): T.RopeState =>
  c.rope === 'none' ? { freqs: new Float32Array(c.h / 2), attnScale: 1, version: 0 } : randomRope(c.h, c.rope);

/** Σ q·dq + Σ k·dk + Σ v·dv: its gradient with respect to (q, k, v) is (dq, dk, dv). Any of dq, dk, dv may be null (unused). */
function weightedSum(outs: tf.Tensor[], dys: (tf.Tensor | null)[]): tf.Scalar {
  return outs.map((o, i) => (dys[i] ? o.mul(dys[i]!).sum() : null)).filter((t) => t != null).reduce((a, b) => a.add(b)) as tf.Scalar;
}

/** [q, k, v, dqkv, dlambdas(, dve)]: the fused kernels where the backend has them, the composite on cpu. */
const valuesAndGrads = (rope: T.RopeState, o: Opts) => (...xs: tf.Tensor[]): tf.Tensor[] => {
  const [qkv, lambdas, dq, dk, dv, ve] = xs;  // inputsOf's order
  const run = (x: tf.Tensor, l: tf.Tensor, e?: tf.Tensor) => T.attentionInputs(x, rope, e ?? null, l, o);
  const grads = tf.grads((x: tf.Tensor, l: tf.Tensor, e?: tf.Tensor) => weightedSum(run(x, l, e), [dq, dk, dv]));
  return [...run(qkv, lambdas, ve), ...grads(ve ? [qkv, lambdas, ve] : [qkv, lambdas])];
};

/** [q, k, dqkv] without v (qkv of q and k heads only, no lambdas): the fused kernels where the backend has them, the
 * composite on cpu. */
const qkValuesAndGrads = (rope: T.RopeState, o: Opts) => (qkv: tf.Tensor, dq: tf.Tensor, dk: tf.Tensor): tf.Tensor[] => {
  const run = (x: tf.Tensor) => T.attentionInputs(x, rope, null, null, o);
  return [...run(qkv), tf.grad((x: tf.Tensor) => weightedSum(run(x), [dq, dk]))(qkv)];
};

/** Random inputs of a case without v: qkv [B,T,(H+Hk)·h], dq, dk. */
const qkInputsOf = ({ B, T: Tn, H, Hk, h }: Case): HostTensor[] =>
  [randFloat([B, Tn, (H + Hk) * h]), randFloat([B, Tn, H, h]), randFloat([B, Tn, Hk, h])];

/** qkv [B,T,(H+2·Hk)·h] less its v heads: an input of the kernels without v. */
const withoutV = (qkv: tf.Tensor, H: number, Hk: number, h: number) => qkv.slice([0, 0, 0], [-1, -1, (H + Hk) * h]);

/** Random inputs of a case: qkv, lambdas, dq, dk, dv(, ve). */
function inputsOf(c: Case, withVe: boolean): HostTensor[] {
  const { B, T: Tn, H, Hk, h } = c;
  const ins = [randFloat([B, Tn, (H + 2 * Hk) * h]), randFloat([2], -1.5, 1.5), randFloat([B, Tn, H, h]), randFloat([B, Tn, Hk, h]), randFloat([B, Tn, Hk, h])];
  return withVe ? [...ins, randFloat([B, Tn, Hk, h])] : ins;
}

const tensorOf = (h: HostTensor) => tf.tensor(h.values, h.shape, h.dtype);

for (const target of targets) {
  describeOrSkip(`fused AttentionInputs on ${target.name}`, target.skip, () => {
    const name = target.name;
    const tol = name === 'cuda' ? { rtol: 1e-4, atol: 1e-4 } : { rtol: 1e-5, atol: 1e-5 };
    const CASES: Case[] = [
      { B: 2, T: 5, H: 2, Hk: 2, h: 128, rope: 'half' },
      { B: 1, T: 9, H: 4, Hk: 2, h: 64, rope: 'full' },  // GQA
      { B: 3, T: 1, H: 3, Hk: 1, h: 6, rope: 'full' },   // half = 3: the scalar path
      { B: 2, T: 4, H: 2, Hk: 1, h: 16, rope: 'none' },  // no rotary: the tables turn by 0
      { B: 1, T: 3, H: 1, Hk: 1, h: 10, rope: 'half' },  // half = 5: the scalar path
    ];
    // The GPU's grid-stride loops (more rows than its grids' blocks hold): cases whose composite on cpu takes ~50 s
    // each, so one setting each (the small cases above run every setting on the same paths)
    const LARGE: [Case, boolean, boolean][] = name === 'cuda'
      ? [[{ B: 4, T: 512, H: 6, Hk: 6, h: 128, rope: 'half' }, true, true], [{ B: 2, T: 256, H: 6, Hk: 2, h: 64, rope: 'full' }, false, false]]
      : [];

    it('q, k, v and the gradients for qkv, lambdas and ve match the composite on cpu', async () => {
      const settings: [Case, boolean, boolean][] = [
        ...CASES.flatMap((c) => [true, false].flatMap((qkNorm) => [true, false].map((withVe): [Case, boolean, boolean] => [c, qkNorm, withVe]))),
        ...LARGE,
      ];
      for (const [c, qkNorm, withVe] of settings) {
        const label = `[B ${c.B}, T ${c.T}, H ${c.H}, Hk ${c.Hk}, h ${c.h}] ${c.rope} rotary, qkNorm ${qkNorm}, ${withVe ? 'with' : 'without'} ve`;
        await compare(name, label, inputsOf(c, withVe), valuesAndGrads(ropeOf(c), { H: c.H, Hk: c.Hk, h: c.h, qkNorm }), tol);
      }
    });

    it('without v (AttentionInputsQK): q, k and the gradient for qkv match the composite on cpu', async () => {
      // on the GPU also the shaped blocks' heads (6 of 128 each for q and k) over more rows than its grids' blocks hold
      const settings: [Case, boolean][] = [...CASES.flatMap((c) => [true, false].map((qkNorm): [Case, boolean] => [c, qkNorm])),
        ...(name === 'cuda' ? [[{ B: 4, T: 512, H: 6, Hk: 6, h: 128, rope: 'half' }, true] as [Case, boolean]] : [])];
      for (const [c, qkNorm] of settings) {
        const label = `no v: [B ${c.B}, T ${c.T}, H ${c.H}, Hk ${c.Hk}, h ${c.h}] ${c.rope} rotary, qkNorm ${qkNorm}`;
        await compare(name, label, qkInputsOf(c), qkValuesAndGrads(ropeOf(c), { H: c.H, Hk: c.Hk, h: c.h, qkNorm }), tol);
      }
    });

    it('outputs the loss does not use: tfjs passes zeros for their gradients', async () => {
      const c: Case = { B: 2, T: 3, H: 2, Hk: 1, h: 8, rope: 'full' }, rope = ropeOf(c), o = { H: 2, Hk: 1, h: 8, qkNorm: true };
      const [qkv, lambdas, dq, , dv, ve] = inputsOf(c, true);
      // only q: the gradient reaches qkv's q part only (lambdas and ve reach no used output in the composite)
      await compare(name, 'q only', [qkv, lambdas, dq], (x, l, d) =>
        [tf.grad((y: tf.Tensor) => weightedSum(T.attentionInputs(y, rope, null, l, o), [d, null, null]))(x)], tol);
      // only v: dq and dk are zeros
      await compare(name, 'v only', [qkv, lambdas, dv, ve], (x, l, d, e) =>
        tf.grads((y: tf.Tensor, m: tf.Tensor, f: tf.Tensor) => weightedSum(T.attentionInputs(y, rope, f, m, o), [null, null, d]))([x, l, e]), tol);
      // without v, only k: dq is zeros
      const [qk, , dk] = qkInputsOf(c);
      await compare(name, 'no v, k only', [qk, dk], (x, d) =>
        [tf.grad((y: tf.Tensor) => weightedSum(T.attentionInputs(y, rope, null, null, o), [null, d]))(x)], tol);
    });

    it("ve's gradient so far is added in dve's store as tfjs's Add would; a ve that feeds two layers gets no Add of its shape", async () => {
      await useBackend(name);
      const c: Case = { B: 2, T: 6, H: 4, Hk: 2, h: 16, rope: 'full' }, rope = ropeOf(c), o = { H: c.H, Hk: c.Hk, h: c.h, qkNorm: true };
      const [qkv, lambdas, dq, dk, dv, ve] = inputsOf(c, true).map(tensorOf), acc = tensorOf(randFloat(ve.shape));
      const { cos, sin } = T.rotaryTables(rope, c.T), attrs = { numHeads: c.H, kvHeads: c.Hk, qkNorm: true, eps: 2 ** -23 };
      const grad = (extra: tf.NamedTensorMap) =>
        tf.engine().runKernel(ATTENTION_INPUTS_GRAD, { dq, dk, dv, qkv, cos, sin, lambdas, ve, ...extra }, attrs) as tf.Tensor[];
      const [plain, summed] = [grad({}), grad({ veAccumulated: acc })];
      const sum = tf.add(acc, plain[2]);
      assert.deepEqual(Array.from(summed[2].dataSync()), Array.from(sum.dataSync()), 'dve with veAccumulated, against acc + dve');
      for (const i of [0, 1]) assert.deepEqual(Array.from(summed[i].dataSync()), Array.from(plain[i].dataSync()), `output ${i}`);
      assert.throws(() => grad({ veAccumulated: dq }), /AttentionInputsGrad: veAccumulated float32\[2,6,4,16\] needs a ve of its shape, got float32\[2,6,2,16\]/);
      // the model's value embedding feeds two layers: its two gradients meet in the kernel (fails with an Add: 1)
      const qkv2 = tensorOf(randFloat(qkv.shape)), w = tensorOf(randFloat(dv.shape));
      const loss = (e: tf.Tensor) => tf.add(tf.sum(tf.mul(T.attentionInputs(qkv, rope, e, lambdas, o)[2], w)),
        tf.sum(tf.mul(T.attentionInputs(qkv2, rope, e, lambdas, o)[2], w)));
      let de: tf.Tensor | null = null;
      const profile = await tf.profile(() => { de = tf.grad(loss)(ve); return de; });
      const adds = profile.kernels.filter((k) => k.name === 'Add' && k.inputShapes[0]?.join() === ve.shape.join()).length;
      assert.equal(adds, 0, `Adds of ve's shape in the backward: ${adds}`);
      // the same as the composite's: λb·(w + w)
      const want = tf.mul(tf.add(w, w), lambdas.slice(1, 1).reshape([]));
      assert.deepEqual(Array.from(de!.dataSync()), Array.from(want.dataSync()), 'dve of two layers');
      tf.dispose([qkv, lambdas, dq, dk, dv, ve, acc, ...plain, ...summed, sum, qkv2, w, de!, want]);  // cos, sin: the model's cached tables
    });

    it('the gradients are bit-identical on a rerun (deterministic sums for dlambdas)', async () => {
      await useBackend(name);
      const c: Case = name === 'cuda' ? { B: 4, T: 512, H: 6, Hk: 6, h: 128, rope: 'half' } : { B: 2, T: 7, H: 2, Hk: 2, h: 16, rope: 'half' };
      const xs = inputsOf(c, true).map(tensorOf), fn = valuesAndGrads(ropeOf(c), { H: c.H, Hk: c.Hk, h: c.h, qkNorm: true });
      const once = () => tf.tidy(() => fn(...xs).map((t) => t.dataSync()));
      const [a, b] = [once(), once()];
      for (let i = 0; i < a.length; i++) assert.deepEqual(b[i], a[i], `output ${i} differs between two runs`);
      tf.dispose(xs);
    });

    it('under bf16 matmul precision writes q, k, v in bf16 only: the float32 outputs rounded to nearest even', async () => {
      await useBackend(name);
      const backend = tf.backend() as CudaBackend, before = backend.matmulPrecision;
      // h 128 and 64: the float4 path; 10: the scalar path (both write bf16)
      for (const c of [{ B: 2, T: 9, H: 2, Hk: 1, h: 128, rope: 'half' }, { B: 1, T: 5, H: 4, Hk: 2, h: 64, rope: 'full' },
        { B: 1, T: 3, H: 1, Hk: 1, h: 10, rope: 'half' }] as Case[]) {
        const xs = inputsOf(c, true).map(tensorOf), [qkv, lambdas, , , , ve] = xs, rope = ropeOf(c), qk = withoutV(qkv, c.H, c.Hk, c.h);
        const o = { H: c.H, Hk: c.Hk, h: c.h, qkNorm: true };
        // with v ([q, k, v]) and without ([q, k])
        const run = (precision: 'fp32' | 'bf16', withV: boolean) => {
          backend.setMatmulPrecision(precision);
          const outs = withV ? T.attentionInputs(qkv, rope, ve, lambdas, o) : T.attentionInputs(qk, rope, null, null, o);
          const stored = outs.map((t) => backend.storedValues(t).bf16), values = outs.map((t) => t.dataSync() as Float32Array);
          tf.dispose(outs);
          return { stored, values };
        };
        try {
          for (const withV of [true, false]) {
            const exact = run('fp32', withV), half = run('bf16', withV), n = withV ? 3 : 2, what = `h ${c.h}, ${withV ? 'with' : 'without'} v`;
            assert.deepEqual(exact.stored, Array(n).fill(false));
            assert.deepEqual(half.stored, Array(n).fill(true), `${what}: the outputs kept in bf16 only`);
            half.values.forEach((got, i) => assert.deepEqual(got, Float32Array.from(exact.values[i], bf16), `${what}: ${'qkv'[i]} is the float32 output rounded`));
          }
        } finally {
          backend.setMatmulPrecision(before);
          tf.dispose([...xs, qk]);
        }
      }
    });

    it('reads dk and dv bf16-only as stored (the tensor-core attention\'s): the gradients their float32 values give, no float32 copy', async () => {
      await useBackend(name);
      // h 128: the float4 path, GQA, with ve; h 10: the scalar path, without
      for (const [c, withVe] of [[{ B: 2, T: 5, H: 4, Hk: 2, h: 128, rope: 'half' }, true], [{ B: 1, T: 3, H: 2, Hk: 1, h: 10, rope: 'full' }, false]] as [Case, boolean][]) {
        const [qkv, lambdas, dq, dk, dv, ve] = inputsOf(c, withVe).map(tensorOf), { cos, sin } = T.rotaryTables(ropeOf(c), c.T);
        const attrs = { numHeads: c.H, kvHeads: c.Hk, qkNorm: true, eps: 2 ** -23 };
        const grad = (k: tf.Tensor, v: tf.Tensor) =>
          tf.engine().runKernel(ATTENTION_INPUTS_GRAD, { dq, dk: k, dv: v, qkv, cos, sin, lambdas, ...(ve ? { ve } : {}) }, attrs) as tf.Tensor[];
        // without v: dk alone, from the same dq and dk
        const qk = withoutV(qkv, c.H, c.Hk, c.h);
        const qkGrad = (k: tf.Tensor) => tf.engine().runKernel(ATTENTION_INPUTS_QK_GRAD, { dq, dk: k, qkv: qk, cos, sin }, attrs) as tf.Tensor;
        const [[dk16, dkValues], [dv16, dvValues]] = [dk, dv].map(bf16OnlyAndFloat32);
        const fromStored = [...grad(dk16, dv16), qkGrad(dk16)], fromValues = [...grad(dkValues, dvValues), qkGrad(dkValues)];
        assert.deepEqual([dk16, dv16].map(storedInBf16), [true, true], `h ${c.h}: dk and dv read as stored, not widened`);
        fromStored.forEach((t, i) => assert.deepEqual(Array.from(t.dataSync()), Array.from(fromValues[i].dataSync()), `h ${c.h}: output ${i}`));
        tf.dispose([qkv, lambdas, dq, dk, dv, qk, dk16, dv16, dkValues, dvValues, ...fromStored, ...fromValues, ...(ve ? [ve] : [])]);
      }
    });

    it('keeps nothing for the gradient beyond its inputs (the composite keeps q, k, v before the norm and mix)', async () => {
      await useBackend(name);
      const c: Case = { B: 2, T: 5, H: 2, Hk: 1, h: 16, rope: 'half' }, rope = ropeOf(c), o = { H: 2, Hk: 1, h: 16, qkNorm: true };
      const xs = inputsOf(c, true).map(tensorOf), [qkv, lambdas, , , , ve] = xs;
      const outBytes = qkv.size * 4;  // q, k and v together are qkv's size
      /** Bytes alive right after the forward, before backprop: the outputs and whatever the tape saved. */
      const heldAfterForward = () => {
        tf.dispose(T.attentionInputs(qkv, rope, ve, lambdas, o));  // the rotary tables are made (and cached) here, not below
        const before = bytesInUse();
        let held = 0;
        const { value, grads } = tf.valueAndGrads((x: tf.Tensor) => {
          const [q, k, v] = T.attentionInputs(x, rope, ve, lambdas, o);
          held = bytesInUse() - before;
          return q.sum().add(k.sum()).add(v.sum()) as tf.Scalar;
        })([qkv]);
        tf.dispose([value, grads[0]]);
        assert.equal(bytesInUse(), before, 'no buffer outlives the step');
        return held;
      };
      assert.equal(heldAfterForward(), outBytes, 'fused: q, k and v only (the saved qkv, tables, lambdas and ve share their buffers)');
      await withFusedOff(() => assert.ok(heldAfterForward() > 2 * outBytes, 'the composite keeps its intermediates'));
      // without v: q and k only (qk's size)
      const qk = withoutV(qkv, 2, 1, 16), before = bytesInUse();
      const { value, grads } = tf.valueAndGrads((x: tf.Tensor) => {
        const [q, k] = T.attentionInputs(x, rope, null, null, o);
        assert.equal(bytesInUse() - before, qk.size * 4, 'without v: q and k only');
        return q.sum().add(k.sum()) as tf.Scalar;
      })([qk]);
      tf.dispose([value, grads[0], qk, ...xs]);
    });

    it('train_gpt.ts\'s hook runs the fused kernels, and useFusedKernels(false) (--fused off) the composite', async () => {
      await useBackend(name);
      const c: Case = { B: 2, T: 5, H: 2, Hk: 1, h: 8, rope: 'half' }, rope = ropeOf(c);
      for (const withVe of [true, false]) {
        const xs = inputsOf(c, withVe).map(tensorOf), fn = () => valuesAndGrads(rope, { H: 2, Hk: 1, h: 8, qkNorm: true })(...xs);
        const forward = withVe ? ATTENTION_INPUTS_VE : ATTENTION_INPUTS, other = withVe ? ATTENTION_INPUTS : ATTENTION_INPUTS_VE;
        await checkFusionHook(fn, { fused: [forward, ATTENTION_INPUTS_GRAD], composite: ['SplitV', 'Concat', 'Unpack'],
          compositeOnly: [other, 'SplitV', 'Concat', 'RMSNorm', 'Rotary', 'Unpack'] });
        tf.dispose(xs);
      }
      const xs = qkInputsOf(c).map(tensorOf), fn = () => qkValuesAndGrads(rope, { H: 2, Hk: 1, h: 8, qkNorm: true })(xs[0], xs[1], xs[2]);
      await checkFusionHook(fn, { fused: [ATTENTION_INPUTS_QK, ATTENTION_INPUTS_QK_GRAD], composite: ['SplitV', 'Concat'],
        compositeOnly: [ATTENTION_INPUTS, ATTENTION_INPUTS_VE, 'SplitV', 'Concat', 'RMSNorm', 'Rotary'] });
      tf.dispose(xs);
    });

    it('the model\'s attention layers run them, with and without value embeddings (under Canon B: CanonAttentionInputs\'s test)', async () => {
      await useBackend(name);
      const cfg = T.resolveConfig('tiny', { vocabSize: 64, bosToken: 63, numLayers: 3, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 1,
        valueEmbeds: 1, backoutLayer: 1, skip: 'none', seqLen: 16, windowBlock: 4, windowSchedule: [2], windowPattern: 'SLS', valWindow: 2 }).cfg;
      // the value-embedding table serves layers 0 and 2; layer 1 has none
      await checkModelKernels(cfg, [0, 5, 16, 27], { [ATTENTION_INPUTS_VE]: 2, [ATTENTION_INPUTS]: 1, [ATTENTION_INPUTS_GRAD]: 3 });
    });

    for (const [block, qkNorm] of [['sas', true], ['sas-p', false]] as const) {
      it(`--block ${block} (qkNorm ${qkNorm}) runs the kernels without v in every layer, with the loss and gradients of --fused off`, async () => {
        await useBackend(name);
        const cfg = T.resolveConfig('tiny', {
          block, qkNorm, rotary: 'half', vocabSize: 64, bosToken: 63, numLayers: 2, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 2,
          noAttnLayers: [], noMlpLayers: [], seqLen: 16, windowBlock: 4, windowSchedule: [2], windowPattern: 'SL', valWindow: 2,
        }).cfg;
        // q and k from one projection, normed and turned by the one kernel each way: no RMSNorm or Rotary of theirs
        await checkModelKernels(cfg, [0, 5, 16, 27], { [ATTENTION_INPUTS_QK]: 2, [ATTENTION_INPUTS_QK_GRAD]: 2, Rotary: 0, RotaryGrad: 0 });
      });
    }

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(name);
      tf.tidy(() => {
        const attrs = { numHeads: 2, kvHeads: 1, qkNorm: true, eps: 1e-6 };
        const qkv = tf.zeros([2, 5, 32]), cos = tf.ones([1, 5, 1, 4]), sin = tf.zeros([1, 5, 1, 4]), lambdas = tf.ones([2]), ve = tf.zeros([2, 5, 1, 8]);
        const run = (kernel: string, inputs: tf.NamedTensorMap, a: tf.NamedAttrMap = attrs) => () => tf.engine().runKernel(kernel, inputs, a);
        const fwd = { qkv, cos, sin, lambdas };
        assert.throws(run(ATTENTION_INPUTS, { ...fwd, qkv: tf.zeros([2, 5, 4, 8]) }),
          /kernel AttentionInputs\(.*AttentionInputs: qkv must be \[B,T,\(H\+2·Hk\)·h\] with h even for H = 2, Hk = 1, got float32\[2,5,4,8\]/);
        assert.throws(run(ATTENTION_INPUTS, { ...fwd, qkv: tf.zeros([2, 5, 30]) }), /AttentionInputs: qkv must be \[B,T,\(H\+2·Hk\)·h\]/);
        assert.throws(run(ATTENTION_INPUTS, { ...fwd, qkv: tf.zeros([2, 5, 12]) }), /AttentionInputs: qkv must be .* with h even/);  // h = 3
        assert.throws(run(ATTENTION_INPUTS, { ...fwd, qkv: tf.zeros([2, 5, 32], 'int32') }), /AttentionInputs: qkv must be float32, got int32\[2,5,32\]/);
        assert.throws(run(ATTENTION_INPUTS, { ...fwd, cos: tf.ones([1, 5, 1, 8]) }),
          /AttentionInputs: cos must be \[1,5,1,4\] for qkv float32\[2,5,32\], got float32\[1,5,1,8\]/);
        assert.throws(run(ATTENTION_INPUTS, { qkv, cos, lambdas }), /AttentionInputs: input sin is missing/);
        assert.throws(run(ATTENTION_INPUTS, { ...fwd, lambdas: tf.ones([3]) }), /AttentionInputs: lambdas must be \[2\]/);
        assert.throws(run(ATTENTION_INPUTS, { ...fwd, ve }), /AttentionInputs: takes no ve \(AttentionInputsVE does\)/);
        assert.throws(run(ATTENTION_INPUTS_VE, fwd), /kernel AttentionInputsVE\(.*AttentionInputsVE: input ve is missing/);
        assert.throws(run(ATTENTION_INPUTS_VE, { ...fwd, ve: tf.zeros([2, 5, 2, 8]) }), /AttentionInputsVE: ve must be \[2,5,1,8\]/);
        assert.throws(run(ATTENTION_INPUTS, fwd, { ...attrs, numHeads: 0 }), /AttentionInputs: attr numHeads must be a positive integer, got 0/);
        assert.throws(run(ATTENTION_INPUTS, fwd, { ...attrs, kvHeads: 1.5 }), /AttentionInputs: attr kvHeads must be a positive integer/);
        assert.throws(run(ATTENTION_INPUTS, fwd, { ...attrs, qkNorm: 'yes' }), /AttentionInputs: attr qkNorm must be a boolean/);
        assert.throws(run(ATTENTION_INPUTS, fwd, { ...attrs, eps: NaN }), /AttentionInputs: attr eps must be a finite number/);
        const dq = tf.zeros([2, 5, 2, 8]), dk = tf.zeros([2, 5, 1, 8]), dv = tf.zeros([2, 5, 1, 8]);
        assert.throws(run(ATTENTION_INPUTS_GRAD, { ...fwd, dq: dk, dk, dv }), /kernel AttentionInputsGrad\(.*AttentionInputsGrad: dq must be float32 \[2,5,2,8\], got float32\[2,5,1,8\]/);
        assert.throws(run(ATTENTION_INPUTS_GRAD, { ...fwd, dq, dk }), /AttentionInputsGrad: input dv is missing/);
        assert.throws(run(ATTENTION_INPUTS_GRAD, { ...fwd, dq, dk, dv, ve: tf.zeros([2, 5, 8]) }), /AttentionInputsGrad: ve must be \[2,5,1,8\]/);
        // without v: qkv of H + Hk heads (24 = 3 heads of 8), no lambdas
        const qk = tf.zeros([2, 5, 24]), noV = { qkv: qk, cos, sin };
        assert.throws(run(ATTENTION_INPUTS_QK, { ...noV, qkv }),
          /kernel AttentionInputsQK\(.*AttentionInputsQK: qkv must be \[B,T,\(H\+Hk\)·h\] with h even for H = 2, Hk = 1, got float32\[2,5,32\]/);
        assert.throws(run(ATTENTION_INPUTS_QK, { ...noV, lambdas }), /AttentionInputsQK: takes no lambdas or ve, nor their gradients so far \(its qkv holds no v heads\)/);
        assert.throws(run(ATTENTION_INPUTS_QK, { qkv: qk, cos }), /AttentionInputsQK: input sin is missing/);
        assert.throws(run(ATTENTION_INPUTS_QK, { ...noV, cos: tf.ones([1, 4, 1, 4]) }), /AttentionInputsQK: cos must be \[1,5,1,4\] for qkv float32\[2,5,24\]/);
        assert.throws(run(ATTENTION_INPUTS_QK_GRAD, { ...noV, dq }), /kernel AttentionInputsQKGrad\(.*AttentionInputsQKGrad: input dk is missing/);
        assert.throws(run(ATTENTION_INPUTS_QK_GRAD, { ...noV, dq: dk, dk }), /AttentionInputsQKGrad: dq must be float32 \[2,5,2,8\], got float32\[2,5,1,8\]/);
        assert.throws(run(ATTENTION_INPUTS_QK_GRAD, { ...noV, qkv, dq, dk }), /AttentionInputsQKGrad: qkv must be \[B,T,\(H\+Hk\)·h\]/);
        assert.throws(run(ATTENTION_INPUTS_QK_GRAD, { ...noV, dq, dk, lambdas, dv }), /AttentionInputsQKGrad: takes no lambdas or ve/);
        assert.throws(run(ATTENTION_INPUTS_QK_GRAD, { ...noV, dq, dk, lambdasAccumulated: lambdas }), /AttentionInputsQKGrad: takes no lambdas or ve/);
      });
    });
  });
}
