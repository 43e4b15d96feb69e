// The fused optimiser kernels ('AdamUpdate', 'MuonMomentum', optimizer.cu) against their oracles,
// train_gpt.ts's composites adamUpdate() and muonMomentum() on the cpu backend, through train_gpt.ts's own
// functions (runFused) on fresh random inputs and hyperparameters: sizes with and without a multiple of 4
// (the GPU's scalar and float4 paths), a large one, an empty one; that the hook runs the fused kernels and
// `--fused off` (useFusedKernels(false)) the composites; a whole optimizerStep (Muon + Adam, two steps)
// fused vs composite on one backend; bad inputs failing with the kernel's name. 'NorMuonUpdate' (NorMuon's
// normalisation, cautious decay and scale of a batch of orthogonalised updates) against its composite the same way. 'MatMulAdd' (Newton–Schulz's
// alpha·A·B + beta·C in one cuBLASLt call) against the composite on cpu, and orthogonalizeBatch fused vs off.
// The kernels do the composite's float32 operations in its order without contraction, so on the host
// reference device they must agree with tfjs-cpu exactly; on the GPU within a few ulps.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import { ADAM_UPDATE, MUON_MOMENTUM, NORMUON_UPDATE } from '../optimizer/optimizer.ts';
import { MATMUL_ADD } from '../matmul_add/matmul_add.ts';
import { bf16, checkFusionHook, compare, describeOrSkip, type HostTensor, kernelsRun, randFloat, random, relError, storedInBf16, targets, type Tolerance, useBackend, withFusedOff } from '../../../test/cuda_harness.ts';

const between = (lo: number, hi: number) => lo + (hi - lo) * random();

/** Random Adam hyperparameters around the speedrun's; bias corrections 1 − β^step of early steps (drawn
 * independently: at later steps both round to 1 and a kernel mixing them up would pass); bf16 rounding of p' and of
 * the moments each on or off (--bf16-state). */
function randomAdamHyper(): T.AdamHyper {
  return { beta1: between(0.5, 0.95), beta2: between(0.9, 0.999), bc1: between(0.05, 0.9), bc2: between(0.001, 0.5),
    eps: random() < 0.5 ? 1e-10 : 1e-8, lr: between(1e-3, 0.1), roundParam: random() < 0.5, roundMoments: random() < 0.5,
    roundGrad: random() < 0.5 };
}

/** p, m, g in [−2, 2]; v ≥ 0 (a second moment), some entries tiny so eps matters. */
function adamInputs(shape: number[]): HostTensor[] {
  const v = randFloat(shape, 0, 2);
  for (let i = 0; i < v.values.length; i++) if (random() < 0.05) v.values[i] *= 1e-12;
  return [randFloat(shape), randFloat(shape), v, randFloat(shape)];
}

/** A tiny model of every parameter kind (Muon matrices, merged QKV split, Adam embeddings, head and scalars). */
const MICRO: Partial<T.Config> = {
  vocabSize: 64, bosToken: 63, numLayers: 4, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 2,
  noAttnLayers: [0], noMlpLayers: [0], skip: '1-3', valueEmbeds: 1, backoutLayer: 2, seqLen: 16,
  windowBlock: 4, windowSchedule: [2], windowPattern: 'SLSL', valWindow: 2,
  // float32 state: on the GPU the fused and composite updates differ by an ulp, which rounding to bf16 can turn into
  // one bf16 step (RoundBf16 has its own test)
  bf16State: false,
  // no cautious weight decay: its mask jumps by decay·w where an update entry is within rounding of 0, and the fused
  // NorMuon sums in another order (seen once on cuda-host); NorMuonUpdate's own test covers the decay on inputs away from 0
  weightDecay: 0,
};

/** Parameters and optimiser slots after `grads.length` optimiser steps from `init`, on the current backend. */
async function optimizerSteps(cfg: T.Config, init: Map<string, HostTensor>, grads: Map<string, HostTensor>[]): Promise<Map<string, Float32Array>> {
  const m = T.createModel(cfg);
  for (const [name, v] of m.params) {
    const h = init.get(name)!;
    tf.tidy(() => v.assign(tf.tensor(h.values, h.shape)));
  }
  const st = T.createOptimizerState(m);
  grads.forEach((gs, step) => {
    const byName = new Map([...gs].map(([n, h]) => [n, tf.tensor(h.values, h.shape)] as const));
    T.optimizerStep(m, st, byName, step);
    tf.dispose([...byName.values()]);
  });
  const out = new Map<string, Float32Array>();
  for (const [n, v] of m.params) out.set(n, v.dataSync() as Float32Array);
  for (const [n, slots] of st.slots) slots.forEach((s, i) => out.set(`${n} slot ${i}`, s.dataSync() as Float32Array));
  T.disposeOptimizerState(st);
  T.disposeModel(m);
  return out;
}

for (const target of targets) {
  describeOrSkip(`fused AdamUpdate and MuonMomentum on ${target.name}`, target.skip, () => {
    const B = target.name;
    const exact = B === 'cuda-host';
    const tol: Tolerance = exact ? { rtol: 0, atol: 0 } : { rtol: 1e-6, atol: 1e-6 };
    // 7, 135, 1 and 4099 / 2^20 + 7: the scalar path; 2048 and 786432: float4; [0, 3]: empty
    const SHAPES = [[7], [3, 5, 9], [2, 16, 64], [1, 1], [0, 3], [target.big], ...(B === 'cuda' ? [[1024, 768]] : [])];

    it('AdamUpdate: p\', m\', v\' match the composite on cpu (random hyperparameters, odd, large and empty sizes)', async () => {
      for (const shape of SHAPES) {
        const h = randomAdamHyper();
        await compare(B, `adamUpdate [${shape}] ${JSON.stringify(h)}`, adamInputs(shape),
          (p, m, v, g) => T.adamUpdate(p, m, v, g, h), tol);
      }
    });

    it('AdamUpdate with the earlier steps\' gradient sum (gSum), rounded to bf16 or not, matches the composite on cpu: r(r(gSum) + r(g))', async () => {
      for (const shape of SHAPES) {
        for (const roundGrad of [false, true]) {
          const h = { ...randomAdamHyper(), roundGrad };
          await compare(B, `adamUpdate with gSum [${shape}] ${JSON.stringify(h)}`, [...adamInputs(shape), randFloat(shape)],
            (p, m, v, g, gSum) => T.adamUpdate(p, m, v, g, h, gSum), tol);
        }
      }
      // the composite itself: the sum of the rounded gradients, rounded (a mutation of either rounding fails here)
      await useBackend('cpu');
      const h = { beta1: 0.5, beta2: 0.5, bc1: 1, bc2: 1, eps: 0, lr: 1, roundParam: false, roundMoments: false, roundGrad: true };
      const [g, gSum] = [randFloat([64]), randFloat([64])];
      const m2 = tf.tidy(() => T.adamUpdate(tf.zeros([64]), tf.zeros([64]), tf.ones([64]), tf.tensor(g.values), h, tf.tensor(gSum.values))[1].dataSync());
      const want = Float32Array.from(g.values, (x, i) => bf16(Math.fround(bf16(gSum.values[i]) + bf16(x))) * 0.5);
      assert.deepEqual(m2, want, 'm\' = (1 − β1)·r(r(gSum) + r(g))');
    });

    it('AdamUpdate reads p, m and v stored in bf16 and stores what it rounds in bf16 only (§5), with the composite\'s values', async () => {
      // every combination of the inputs' storage (float32, or bf16 only as roundToBf16 and this kernel store it) and the
      // rounding, at a size of the scalar path and one of the float4 path
      for (let combo = 0; combo < 16; combo++) {
        const [pBf16, mBf16, roundParam, roundMoments] = [1, 2, 4, 8].map((bit) => (combo & bit) !== 0);
        const shape = combo % 3 === 0 ? [3, 5, 9] : [2, 16, 64], h = { ...randomAdamHyper(), roundParam, roundMoments };
        const inputs = adamInputs(shape);
        [pBf16, mBf16, mBf16].forEach((on, k) => { if (on) inputs[k].values = inputs[k].values.map(bf16); });  // bf16 values
        const storage: boolean[][] = [];
        const label = `adamUpdate [${shape}] stored bf16: p ${pBf16}, m and v ${mBf16}; ${JSON.stringify(h)}`;
        await compare(B, label, inputs, (p, m, v, g) => {
          const stored = [p, m, v].map((x, k) => ([pBf16, mBf16, mBf16][k] ? T.roundToBf16(x) : x));
          const outs = T.adamUpdate(stored[0], stored[1], stored[2], g, h);
          if (tf.getBackend() === B) storage.push(outs.map(storedInBf16), stored.map(storedInBf16));
          return outs;
        }, tol);
        assert.deepEqual(storage[0], [roundParam, roundMoments, roundMoments], `${label}: p', m', v' stored in bf16 only where rounded`);
        assert.deepEqual(storage[1], [pBf16, mBf16, mBf16], `${label}: the inputs stored in bf16 were read as stored (no float32 copy)`);
      }
    });

    it('MuonMomentum: buf\' (rounded to bf16 or not) and the Nesterov update match the composite on cpu', async () => {
      for (const shape of SHAPES) {
        const momentum = between(0.8, 0.99), roundBuf = random() < 0.5;
        await compare(B, `muonMomentum [${shape}] μ = ${momentum}, roundBuf ${roundBuf}`, [randFloat(shape), randFloat(shape)],
          (buf, g) => T.muonMomentum(buf, g, momentum, roundBuf), tol);
      }
    });

    it('the bf16 rounding: every output on the bf16 grid where asked, and the same values as rounding the unrounded ones', async () => {
      await useBackend(B);
      const h = { ...randomAdamHyper(), roundParam: false, roundMoments: false };
      const ins = adamInputs([4, 1000]).map((x) => tf.tensor(x.values, x.shape)), [p, m, v, g] = ins;
      const onGrid = (x: Float32Array) => new Uint32Array(x.buffer, x.byteOffset, x.length).every((u) => (u & 0xffff) === 0);
      const values = (ts: tf.Tensor[]) => { const out = ts.map((t) => t.dataSync() as Float32Array); tf.dispose(ts); return out; };
      const plain = values(T.adamUpdate(p, m, v, g, h)), rounded = values(T.adamUpdate(p, m, v, g, { ...h, roundParam: true, roundMoments: true }));
      const [buf, nesterov] = values(T.muonMomentum(m, g, 0.9, false)), [bufR, nesterovR] = values(T.muonMomentum(m, g, 0.9, true));
      for (const [i, name] of ['p', 'm', 'v'].entries()) {
        assert.ok(onGrid(rounded[i]), `${name}' on the bf16 grid`);
        assert.ok(!onGrid(plain[i]), `${name}' without rounding is not`);
        assert.deepEqual(rounded[i], Float32Array.from(plain[i], bf16), `${name}' = bf16(the unrounded ${name}')`);
      }
      assert.deepEqual(bufR, Float32Array.from(buf, bf16), 'buf\' = bf16(the unrounded buf\')');
      assert.deepEqual(nesterovR, nesterov, 'the Nesterov update comes from the unrounded buf\'');
      tf.dispose(ins);
    });

    /** o, w in ±[0.01, 2] (an update within rounding of 0 could flip the cautious mask: a jump of decay·w), v ≥ 0 with
     * some zeros (the 1e-10 floor), scales around the speedrun's √(out/in). */
    function norMuonInputs([n, r, c]: number[]): HostTensor[] {
      const awayFromZero = (h: HostTensor) => { h.values.forEach((x, i) => { h.values[i] = Math.sign(x || 1) * Math.max(0.01, Math.abs(x)); }); return h; };
      const v = randFloat(r === c ? [n, r, 1] : [n, 1, c], 0, 0.5);
      for (let i = 0; i < v.values.length; i++) if (random() < 0.05) v.values[i] = 0;
      return [awayFromZero(randFloat([n, r, c])), v, awayFromZero(randFloat([n, r, c])), randFloat([n], 0.5, 2)];
    }

    it('NorMuonUpdate: the update and v\' match the composite on cpu (square and wide, several chunks, decay on and off)', async () => {
      // square (a neuron is a row), wide (a column), one matrix of several 16384-element chunks, the speedrun's MLP group
      const SHAPES = [[3, 8, 8], [2, 8, 24], [1, 1, 5], [2, 130, 300], ...(B === 'cuda' ? [[4, 768, 3072], [8, 768, 768]] : [])];
      for (const shape of SHAPES) {
        for (const decay of [0, between(0.001, 0.05)]) {
          const beta2 = between(0.9, 0.99);
          await compare(B, `normuonUpdate [${shape}] β2 ${beta2} decay ${decay}`, norMuonInputs(shape),
            (o, v, w, scale) => T.normuonUpdate(o as tf.Tensor3D, v as tf.Tensor3D, w as tf.Tensor3D, scale as tf.Tensor1D, beta2, decay),
            { rtol: 2e-5, atol: 1e-6 });
        }
      }
    });

    it('NorMuonUpdate: the hook runs one fused kernel, --fused off the composite; bad inputs fail naming it', async () => {
      await useBackend(B);
      const [o, v, w, scale] = norMuonInputs([2, 4, 12]).map(h => tf.tensor(h.values, h.shape));
      const run = () => T.normuonUpdate(o as tf.Tensor3D, v as tf.Tensor3D, w as tf.Tensor3D, scale as tf.Tensor1D, 0.95, 0.01);
      await checkFusionHook(run, { fused: [NORMUON_UPDATE], composite: ['Sqrt', 'GreaterEqual', 'Maximum'] });
      const bad = (inputs: tf.NamedTensorMap) => () => tf.engine().runKernel(NORMUON_UPDATE, inputs, { beta2: 0.95, decay: 0 });
      assert.throws(bad({ o: w.transpose([0, 2, 1]), v, w: w.transpose([0, 2, 1]), scale }), /NorMuonUpdate: o must be \[n, r, c\] with r ≤ c \(wide\), got float32\[2,12,4\]/);
      assert.throws(bad({ o, v: tf.zeros([2, 4, 1]), w, scale }), /NorMuonUpdate: v must be \[2,1,12\] for o float32\[2,4,12\], got float32\[2,4,1\]/);
      assert.throws(bad({ o, v, w: tf.zeros([2, 4, 11]), scale }), /NorMuonUpdate: w \[2,4,11\] and o \[2,4,12\] differ in shape/);
      assert.throws(bad({ o, v, w, scale: tf.zeros([3]) }), /NorMuonUpdate: scale must be \[2\], got float32\[3\]/);
      assert.throws(bad({ o, v, w }), /NorMuonUpdate: input scale is missing/);
      tf.dispose([o, v, w, scale]);
    });

    it('the hooks run one fused kernel each (outputs only, no temporaries), useFusedKernels(false) the composites', async () => {
      await useBackend(B);
      const shape = [5, 37], n = 5 * 37;
      const [p, m, v, g] = adamInputs(shape).map(h => tf.tensor(h.values, h.shape));
      const h = randomAdamHyper();
      const run = () => [...T.adamUpdate(p, m, v, g, h), ...T.muonMomentum(m, g, 0.9, true)];
      const profile = await tf.profile(() => tf.dispose(run()));
      assert.deepEqual(profile.kernels.map(k => k.name), [ADAM_UPDATE, MUON_MOMENTUM]);
      const before = tf.memory().numBytes;
      const outs = run();
      assert.equal(tf.memory().numBytes - before, 5 * n * 4, 'the fused kernels allocate their outputs and nothing else');
      tf.dispose(outs);
      const names = await withFusedOff(() => kernelsRun(run));
      for (const k of [ADAM_UPDATE, MUON_MOMENTUM]) assert.ok(!names.includes(k), `${k} ran with fused kernels off`);
      for (const k of ['Multiply', 'Add', 'Sqrt', 'RealDiv', 'Sub']) assert.ok(names.includes(k), `composite kernel ${k} did not run: ${names.join(', ')}`);
      tf.dispose([p, m, v, g]);
    });

    it('a whole optimizerStep (two steps, Muon and Adam) with fused kernels equals the composites (--fused off)', async () => {
      await useBackend(B);
      const cfg = T.resolveConfig('tiny', MICRO).cfg;
      const model = T.createModel(cfg);
      const shapes = new Map([...model.params].map(([n, v]) => [n, v.shape] as const));
      T.disposeModel(model);
      const init = new Map([...shapes].map(([n, s]) => [n, randFloat(s, -0.5, 0.5)] as const));
      const grads = [0, 1].map(() => new Map([...shapes].map(([n, s]) => [n, randFloat(s, -0.1, 0.1)] as const)));
      const numTensors = tf.memory().numTensors;
      const fused = await optimizerSteps(cfg, init, grads);
      assert.equal(tf.memory().numTensors, numTensors, 'the fused steps leak no tensors');
      const composite = await withFusedOff(() => optimizerSteps(cfg, init, grads));
      assert.ok(fused.size > 2 * shapes.size, 'parameters and slots compared');
      for (const [name, want] of composite) {
        const got = fused.get(name)!;
        assert.equal(got.length, want.length, name);
        for (let i = 0; i < want.length; i++) {
          if (!(Math.abs(got[i] - want[i]) <= 1e-6 + 1e-5 * Math.abs(want[i]))) {
            assert.fail(`${name} [${i}]: fused ${got[i]}, composite ${want[i]}`);
          }
        }
        const initial = init.get(name);
        if (initial && initial.values.length > 0) assert.notDeepEqual(got, initial.values, `${name} was updated`);
      }
    });

    it('MatMulAdd: alpha·op(a)·op(b) + beta·c matches the composite on cpu (transposes, ranks 2–4, k = 0, empty)', async () => {
      // [a, b] shapes before transposition, and the transposes
      const CASES: [number[], number[], boolean, boolean][] = [
        [[1, 3, 5], [1, 5, 7], false, false], [[4, 17, 9], [4, 9, 13], false, false], [[2, 6, 5], [2, 7, 5], false, true],
        [[3, 5, 6], [3, 5, 4], true, false], [[2, 5, 6], [2, 4, 5], true, true], [[5, 6], [6, 3], false, false],
        [[2, 2, 3, 4], [2, 2, 4, 5], false, false], [[2, 3, 0], [2, 0, 4], false, false], [[0, 3, 4], [0, 4, 2], false, false],
        B === 'cuda' ? [[2, 768, 768], [2, 768, 768], false, true] : [[2, 48, 64], [2, 64, 48], false, false],
      ];
      for (const [sa, sb, transposeA, transposeB] of CASES) {
        const r = sa.length, m = sa[r - (transposeA ? 1 : 2)], n = sb[r - (transposeB ? 2 : 1)], k = sa[r - (transposeA ? 2 : 1)];
        const alpha = between(-3, 3), beta = between(-3, 3);
        const attrs = { alpha, beta, transposeA, transposeB };
        await compare(B, `matMulAdd [${sa}]${transposeA ? 'ᵀ' : ''}·[${sb}]${transposeB ? 'ᵀ' : ''} α = ${alpha} β = ${beta}`,
          [randFloat(sa), randFloat(sb), randFloat([...sa.slice(0, -2), m, n])],
          (a, b, c) => tf.engine().runKernel(MATMUL_ADD, { a, b, c }, attrs) as tf.Tensor,
          // fp32 sums of k products in a different order (cuBLAS vs tfjs-cpu): partial sums reach ~k^½·|α|·2,
          // so the rounding grows with k (1.1e-4 seen at k = 768 on an H100)
          { rtol: 1e-5, atol: 1e-4 * Math.max(1, k / 64) },
          (a, b, c) => tf.matMul(a, b, transposeA, transposeB).mul(alpha).add(c.mul(beta)));
      }
      for (const transposeB of [false, true]) {  // through train_gpt.ts's hook (the cpu reference is its composite)
        const alpha = between(-3, 3), beta = between(-3, 3);
        await compare(B, `T.matMulAdd transposeB = ${transposeB}`, [randFloat([3, 7, 11]), randFloat(transposeB ? [3, 9, 11] : [3, 11, 9]), randFloat([3, 7, 9])],
          (a, b, c) => T.matMulAdd(a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D, alpha, beta, transposeB), { rtol: 1e-5, atol: 1e-4 });
      }
    });

    it('MatMulAdd\'s gradients for a, b and c (any transposes, α, β) match the composite\'s on cpu', async () => {
      for (const [sa, sb, transposeA, transposeB] of [[[5, 6], [6, 3], false, false], [[6, 5], [6, 3], true, false],
        [[5, 6], [3, 6], false, true], [[2, 6, 5], [2, 3, 6], true, true], [[2, 4, 7], [2, 7, 3], false, false]] as const) {
        const r = sa.length, m = sa[r - (transposeA ? 1 : 2)], n = sb[r - (transposeB ? 2 : 1)];
        const [alpha, beta] = r === 2 && !transposeA && !transposeB ? [1, 1] : [between(-3, 3), between(-3, 3)];  // (1, 1): linear()'s residual
        const attrs = { alpha, beta, transposeA, transposeB };
        const outShape = [...sa.slice(0, -2), m, n];
        const valueAndGrads = (f: (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.Tensor) => (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, dy: tf.Tensor) =>
          [f(a, b, c), ...tf.grads(f)([a, b, c], dy)];
        await compare(B, `d matMulAdd [${sa}]${transposeA ? 'ᵀ' : ''}·[${sb}]${transposeB ? 'ᵀ' : ''} α = ${alpha} β = ${beta}`,
          [randFloat([...sa]), randFloat([...sb]), randFloat(outShape), randFloat(outShape)],
          valueAndGrads((a, b, c) => tf.engine().runKernel(MATMUL_ADD, { a, b, c }, attrs) as tf.Tensor), { rtol: 1e-5, atol: 1e-4 },
          valueAndGrads((a, b, c) => tf.matMul(a, b, transposeA, transposeB).mul(alpha).add(c.mul(beta))));
      }
    });

    it('orthogonalizeBatch runs MatMulAdd twice per iteration and equals the composite (--fused off)', async () => {
      await useBackend(B);
      for (const kind of ['ns5', 'polar'] as const) {
        const G = tf.tensor(randFloat([3, 8, 24]).values, [3, 8, 24]) as tf.Tensor3D;
        const run = () => T.orthogonalizeBatch(G, kind);
        const fusedNames = await kernelsRun(() => [run()]);
        const fused = tf.tidy(run);
        const [compositeNames, composite] = await withFusedOff(async () => [await kernelsRun(() => [run()]), tf.tidy(run)] as const);
        assert.equal(fusedNames.filter(k => k === MATMUL_ADD).length, 10, fusedNames.join(', '));
        assert.equal(compositeNames.filter(k => k === MATMUL_ADD).length, 0);
        assert.ok(fusedNames.length < compositeNames.length - 20, `${fusedNames.length} kernels fused vs ${compositeNames.length}`);
        const e = relError(fused.dataSync(), composite.dataSync());
        assert.ok(e < 1e-5, `${kind}: orthogonalizeBatch fused vs composite: relative error ${e}`);
        tf.dispose([G, fused, composite]);
      }
    });

    it('rejects bad inputs with an error naming the kernel; the optimiser updates have no gradient', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const x = tf.ones([3, 5]);
        const h = { beta1: 0.9, beta2: 0.95, bc1: 0.1, bc2: 0.05, eps: 1e-10, lr: 0.01, roundParam: false, roundMoments: false, roundGrad: false };
        const run = (kernel: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) => () => tf.engine().runKernel(kernel, inputs, attrs);
        assert.throws(run(ADAM_UPDATE, { p: x, m: x, v: x }, h), /kernel AdamUpdate\(.*AdamUpdate: input g is missing/);
        assert.throws(run(ADAM_UPDATE, { p: x, m: x, v: x, g: tf.ones([3, 5], 'int32') }, h), /AdamUpdate: g must be float32, got int32\[3,5\]/);
        assert.throws(run(ADAM_UPDATE, { p: x, m: x, v: tf.ones([5, 3]), g: x }, h), /AdamUpdate: v \[5,3\] and p \[3,5\] differ in shape/);
        assert.throws(run(ADAM_UPDATE, { p: x, m: x, v: x, g: x, gSum: tf.ones([15]) }, h), /AdamUpdate: gSum \[15\] and p \[3,5\] differ in shape/);
        const { roundGrad: _roundGrad, ...noRoundGrad } = h;
        assert.throws(run(ADAM_UPDATE, { p: x, m: x, v: x, g: x }, noRoundGrad), /AdamUpdate: attr roundGrad must be a boolean, got undefined/);
        assert.throws(run(ADAM_UPDATE, { p: x, m: x, v: x, g: x }, { ...h, lr: NaN }), /AdamUpdate: attr lr must be a finite number, got NaN/);
        const { eps: _eps, ...noEps } = h;
        assert.throws(run(ADAM_UPDATE, { p: x, m: x, v: x, g: x }, noEps), /AdamUpdate: attr eps must be a finite number, got undefined/);
        assert.throws(run(MUON_MOMENTUM, { buf: x, g: tf.ones([15]) }, { momentum: 0.9 }), /kernel MuonMomentum\(.*MuonMomentum: g \[15\] and buf \[3,5\] differ in shape/);
        assert.throws(run(MUON_MOMENTUM, { g: x }, { momentum: 0.9 }), /MuonMomentum: input buf is missing/);
        assert.throws(run(MUON_MOMENTUM, { buf: x, g: x }, {}), /MuonMomentum: attr momentum must be a finite number/);
        const mm = { alpha: 1, beta: 0.5, transposeA: false, transposeB: false };
        const a = tf.ones([2, 3, 4]), b = tf.ones([2, 4, 5]), c = tf.ones([2, 3, 5]);
        assert.throws(run(MATMUL_ADD, { a, b }, mm), /kernel MatMulAdd\(.*MatMulAdd: input c is missing/);
        assert.throws(run(MATMUL_ADD, { a, b: tf.ones([1, 4, 5]), c }, mm), /MatMulAdd: a \[2,3,4\] and b \[1,4,5\] must have the same batch dims/);
        assert.throws(run(MATMUL_ADD, { a, b: tf.ones([2, 5, 5]), c }, mm), /MatMulAdd: inner dimensions differ/);
        assert.throws(run(MATMUL_ADD, { a, b, c: tf.ones([2, 5, 3]) }, mm), /MatMulAdd: c must be \[2,3,5\] \(the product's shape\), got \[2,5,3\]/);
        assert.throws(run(MATMUL_ADD, { a: tf.ones([2, 3, 4], 'int32'), b, c }, mm), /MatMulAdd: a must be float32, got int32/);
        assert.throws(run(MATMUL_ADD, { a, b, c }, { ...mm, beta: Infinity }), /MatMulAdd: attr beta must be a finite number, got Infinity/);
        assert.throws(run(MATMUL_ADD, { a, b, c }, { alpha: 1, beta: 1 }), /MatMulAdd: attr transposeA must be a boolean, got undefined/);
        assert.throws(() => tf.grad((g: tf.Tensor) => T.adamUpdate(x, x, x, g, h)[0].sum())(x), /AdamUpdate/);
        assert.throws(() => tf.grad((g: tf.Tensor) => T.muonMomentum(x, g, 0.9, false)[1].sum())(x), /MuonMomentum/);
      });
    });
  });
}
