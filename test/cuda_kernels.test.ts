// Every kernel of the cuda backend against tfjs-backend-cpu on fresh random inputs of several
// shapes (broadcasting, odd and large sizes, empty axes), on each target of cuda_harness.ts.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { CudaBackend } from '../backend-cuda/backend.ts';
import { MATMUL_ADD } from '../backend-cuda/ops/matmul_add/matmul_add.ts';
import { RELU_SQUARED, RELU_SQUARED_GRAD } from '../backend-cuda/ops/relu_squared/relu_squared.ts';
import { SWIGLU_GRAD } from '../backend-cuda/ops/swiglu/swiglu.ts';
import { HEAD_GATE_GRAD } from '../backend-cuda/ops/head_gate/head_gate.ts';
import { RMS_NORM_GRAD } from '../backend-cuda/ops/rms_norm/rms_norm.ts';
import { SOFTCAP_CROSS_ENTROPY } from '../backend-cuda/ops/softcap_cross_entropy/softcap_cross_entropy.ts';
import { ATTENTION_INPUTS } from '../backend-cuda/ops/attention_inputs/attention_inputs.ts';
import { CANON_CONV } from '../backend-cuda/ops/canon_conv/canon_conv.ts';
import * as Model from '../train_gpt.ts';
import { bf16, bf16OnlyAndFloat32, bytesInUse, compare, describeOrSkip, type HostTensor, randBool, randFloat, randInt, randomRope, storedInBf16, targets, useBackend } from './cuda_harness.ts';

const roundedBf16 = (t: tf.Tensor): tf.Tensor => tf.tensor(Array.from(t.dataSync(), bf16), t.shape);

for (const target of targets) {
  describeOrSkip(`cuda backend kernels on ${target.name}`, target.skip, () => {
    const T = target.name;
    const big = target.big;

    it('unary float ops', async () => {
      const ops: Array<[string, (x: tf.Tensor) => tf.Tensor, [number, number]]> = [
        ['abs', tf.abs, [-3, 3]], ['neg', tf.neg, [-3, 3]], ['exp', tf.exp, [-5, 5]], ['log', tf.log, [0.01, 10]],
        ['log1p', tf.log1p, [-0.9, 5]], ['sqrt', tf.sqrt, [0, 10]], ['rsqrt', tf.rsqrt, [0.01, 10]],
        ['square', tf.square, [-3, 3]], ['tanh', tf.tanh, [-5, 5]], ['sigmoid', tf.sigmoid, [-8, 8]],
        ['relu', tf.relu, [-3, 3]], ['step', x => tf.step(x, 0.25), [-3, 3]], ['sin', tf.sin, [-4, 4]], ['cos', tf.cos, [-4, 4]],
        ['reciprocal', tf.reciprocal, [0.1, 5]], ['floor', tf.floor, [-5, 5]], ['ceil', tf.ceil, [-5, 5]],
        ['round', tf.round, [-5, 5]], ['sign', tf.sign, [-3, 3]], ['erf', tf.erf, [-3, 3]], ['softplus', tf.softplus, [-30, 30]],
        ['clipByValue', x => tf.clipByValue(x, -0.5, 0.75), [-2, 2]], ['leakyRelu', x => tf.leakyRelu(x, 0.1), [-3, 3]],
        ['expm1', tf.expm1, [-3, 3]], ['elu', tf.elu, [-3, 3]], ['relu6', tf.relu6, [-3, 9]], ['atan', tf.atan, [-5, 5]],
        ['selu', tf.selu, [-3, 3]],
      ];
      for (const shape of [[7], [3, 5, 2], [big], [0, 4]]) {
        for (const [name, f, [lo, hi]] of ops) await compare(T, `${name} [${shape}]`, [randFloat(shape, lo, hi)], f, { rtol: 2e-6, atol: 2e-6 });
      }
    });

    it('unary int32 and bool ops', async () => {
      for (const shape of [[9], [4, 33]]) {
        const xi = randInt(shape, -50, 50);
        for (const [name, f] of [['abs', tf.abs], ['neg', tf.neg], ['square', tf.square], ['sign', tf.sign], ['relu', tf.relu],
          ['exp→float', (x: tf.Tensor) => tf.exp(tf.div(x, 10))]] as const) {
          await compare(T, `${name} int32 [${shape}]`, [xi], f as (x: tf.Tensor) => tf.Tensor);
        }
        await compare(T, `logicalNot [${shape}]`, [randBool(shape)], tf.logicalNot);
      }
    });

    it('binary float ops with broadcasting', async () => {
      const ops: Array<[string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor]> = [
        ['add', tf.add], ['sub', tf.sub], ['mul', tf.mul], ['div', tf.div], ['floorDiv', tf.floorDiv], ['maximum', tf.maximum],
        ['minimum', tf.minimum], ['squaredDifference', tf.squaredDifference], ['mod', tf.mod], ['atan2', tf.atan2],
        ['pow', (a, b) => tf.pow(tf.abs(a), b)],
        ['equal', tf.equal], ['notEqual', tf.notEqual], ['less', tf.less], ['lessEqual', tf.lessEqual], ['greater', tf.greater],
        ['greaterEqual', tf.greaterEqual],
      ];
      const shapes: Array<[number[], number[]]> = [
        [[3, 4], [3, 4]], [[2, 3, 4], [4]], [[2, 1, 4], [1, 3, 1]], [[5], []], [[], [6]], [[0, 3], [1, 3]],
        [[Math.ceil(big / 37), 37], [37]], [[2, 3, 1, 5, 1, 2], [3, 4, 1, 1, 2]],
      ];
      for (const [sa, sb] of shapes) {
        const a = randFloat(sa, -3, 3), b = randFloat(sb, 0.5, 3);
        for (const [name, f] of ops) await compare(T, `${name} [${sa}]·[${sb}]`, [a, b], f, { rtol: 3e-6, atol: 1e-6 });
      }
    });

    it('binary float ops read a bf16-only operand as stored (either side, broadcast too): its float32 values\' result, no float32 copy', async () => {
      await useBackend(T);
      const t = (shape: number[]) => tf.tensor(randFloat(shape, 0.5, 3).values, shape);
      for (const [sa, sb] of [[[3, 40], [3, 40]], [[2, 3, 4], [4]], [[5], []]] as [number[], number[]][]) {
        for (const [name, f] of [['add', tf.add], ['mul', tf.mul], ['sub', tf.sub], ['greater', tf.greater]] as const) {
          const [a, b] = [t(sa), t(sb)], [[a16, aw], [b16, bw]] = [a, b].map(bf16OnlyAndFloat32);
          for (const [x, y, xw, yw, which] of [[a16, b, aw, b, 'a'], [a, b16, a, bw, 'b'], [a16, b16, aw, bw, 'both']] as const) {
            const fromStored = f(x, y), fromValues = f(xw, yw);
            assert.deepEqual(Array.from(fromStored.dataSync()), Array.from(fromValues.dataSync()), `${name} [${sa}]·[${sb}], ${which} bf16 only`);
            tf.dispose([fromStored, fromValues]);
          }
          assert.deepEqual([a16, b16].map(storedInBf16), [true, true], `${name}: the bf16-only operands were not widened`);
          tf.dispose([a, b, a16, b16, aw, bw]);
        }
      }
    });

    it('binary int32 and bool ops', async () => {
      const ops: Array<[string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor]> = [
        ['add', tf.add], ['sub', tf.sub], ['mul', tf.mul], ['floorDiv', tf.floorDiv], ['div', tf.div], ['maximum', tf.maximum],
        ['minimum', tf.minimum], ['mod', tf.mod], ['equal', tf.equal], ['less', tf.less], ['greaterEqual', tf.greaterEqual],
      ];
      for (const [sa, sb] of [[[4, 6], [6]], [[3, 1, 5], [1, 2, 5]]] as Array<[number[], number[]]>) {
        const a = randInt(sa, -20, 20), b = randInt(sb, 1, 7);
        for (const [name, f] of ops) await compare(T, `${name} int32 [${sa}]·[${sb}]`, [a, b], f);
        await compare(T, `pow int32 [${sa}]`, [randInt(sa, -4, 5), randInt(sb, 0, 4)], tf.pow);
        await compare(T, `logicalAnd [${sa}]`, [randBool(sa), randBool(sb)], tf.logicalAnd);
        await compare(T, `logicalOr [${sa}]`, [randBool(sa), randBool(sb)], tf.logicalOr);
      }
      await compare(T, 'addN', [randFloat([3, 4]), randFloat([3, 4]), randFloat([3, 4])], (a, b, c) => tf.addN([a, b, c]));
    });

    it('reductions over any axes', async () => {
      const cases: Array<[number[], number | number[] | undefined]> = [
        [[17], undefined], [[4, 5], 0], [[4, 5], 1], [[3, 4, 5], [0, 2]], [[2, 3, 4, 5], [1, 3]], [[3, 2000], -1],
        [[Math.ceil(big / 64), 64], 0], [[big], 0], [[3, 0, 4], 1], [[6, 7], [0, 1]],
        [[3, big], -1], [[2, 5, Math.ceil(big / 5)], [0, 2]],  // a few very long rows: the two-pass path on the GPU
      ];
      for (const [shape, axis] of cases) {
        const x = randFloat(shape);
        const tol = { rtol: 1e-4, atol: 1e-4 * Math.sqrt(tf.util.sizeFromShape(shape) + 1) };
        for (const keep of [false, true]) {
          await compare(T, `sum [${shape}] ${axis} ${keep}`, [x], t => tf.sum(t, axis, keep), tol);
          await compare(T, `mean [${shape}] ${axis} ${keep}`, [x], t => tf.mean(t, axis, keep), tol);
          if (tf.util.sizeFromShape(shape) > 0) {
            await compare(T, `max [${shape}] ${axis}`, [x], t => tf.max(t, axis, keep));
            await compare(T, `min [${shape}] ${axis}`, [x], t => tf.min(t, axis, keep));
          }
        }
        if (shape.length <= 3 && tf.util.sizeFromShape(shape) < 5000 && tf.util.sizeFromShape(shape) > 0) {
          await compare(T, `prod [${shape}] ${axis}`, [randFloat(shape, 0.9, 1.1)], t => tf.prod(t, axis), { rtol: 1e-4 });
          await compare(T, `all [${shape}]`, [randBool(shape)], t => tf.all(t, axis));
          await compare(T, `any [${shape}]`, [randBool(shape)], t => tf.any(t, axis));
        }
      }
      await compare(T, 'sum int32', [randInt([5, 300], -1000, 1000)], t => tf.sum(t, 1));
      await compare(T, 'sum int32 long rows', [randInt([2, big], -1000, 1000)], t => tf.sum(t, 1));
      await compare(T, 'max int32 long rows', [randInt([2, big], -1000000, 1000000)], t => tf.max(t, 1));
      await compare(T, 'sum bool', [randBool([5, 30])], t => tf.sum(t, 0));
      await compare(T, 'max int32', [randInt([5, 3000], -1000000, 1000000)], t => tf.max(t, 1));
      for (const [shape, axis] of [[[7, 9], 1], [[7, 9], 0], [[3, 2000], 1], [[2, 3, 4], 1]] as Array<[number[], number]>) {
        await compare(T, `argMax [${shape}] ${axis}`, [randFloat(shape)], t => tf.argMax(t, axis));
        await compare(T, `argMin [${shape}] ${axis}`, [randFloat(shape)], t => tf.argMin(t, axis));
      }
    });

    it('layout: transpose, reshape, slice, stridedSlice, reverse, broadcastTo', async () => {
      const x = randFloat([2, 3, 4, 5]);
      for (const perm of [[0, 1, 2, 3], [3, 2, 1, 0], [0, 2, 1, 3], [1, 0, 3, 2], [2, 3, 0, 1]]) {
        await compare(T, `transpose ${perm}`, [x], t => tf.transpose(t, perm));
      }
      await compare(T, 'transpose int32 2-D large', [randInt([Math.ceil(big / 129), 129], -9, 9)], t => tf.transpose(t));
      await compare(T, 'transpose bool', [randBool([3, 7])], t => tf.transpose(t));
      // Permutations that move no element (only unit dims change place) are views: no new buffer, same values.
      const y = randFloat([3, 1, 4, 1]);
      for (const perm of [[0, 1, 2, 3], [1, 0, 2, 3], [0, 2, 1, 3], [3, 0, 2, 1], [0, 2, 3, 1]]) {
        await compare(T, `transpose ${perm} of [3,1,4,1]`, [y], t => tf.transpose(t, perm));
      }
      await useBackend(T);
      tf.tidy(() => {
        const t = tf.tensor(y.values, y.shape), bytes = bytesInUse;
        const before = bytes();
        tf.transpose(t, [1, 0, 2, 3]);
        tf.transpose(t, [0, 2, 3, 1]);
        assert.equal(bytes(), before, 'views: no new buffer');
        tf.transpose(t, [2, 1, 0, 3]);
        assert.equal(bytes() - before, 4 * 12, 'a permutation of the longer dims copies');
      });
      await compare(T, 'reshape', [x], t => tf.reshape(t, [6, 20]));
      await compare(T, 'slice', [x], t => tf.slice(t, [1, 0, 1, 2], [1, 2, 3, -1]));
      await compare(T, 'slice empty', [x], t => tf.slice(t, [0, 0, 0, 0], [2, 0, 4, 5]));
      await compare(T, 'stridedSlice', [x], t => tf.stridedSlice(t, [0, 2, 3, 0], [2, 0, 0, 5], [1, -1, -2, 2]));
      await compare(T, 'stridedSlice shrink + new axis', [x], t => tf.stridedSlice(t, [1, 0, 0, 1], [2, 3, 4, 4], [1, 1, 1, 1], 0, 0, 0, 2, 1));
      await compare(T, 'stridedSlice masks', [x], t => tf.stridedSlice(t, [0, 1, 0, 0], [0, 3, 0, 0], [1, 1, 1, 1], 13, 13));
      await compare(T, 'reverse', [x], t => tf.reverse(t, [1, 3]));
      await compare(T, 'broadcastTo', [randFloat([3, 1, 2])], t => tf.broadcastTo(t, [4, 3, 5, 2]));
    });

    it('layout: concat, split, stack, unstack, pad, tile', async () => {
      const a = randFloat([2, 3, 4]), b = randFloat([2, 5, 4]), c = randFloat([2, 0, 4]);
      await compare(T, 'concat axis 1', [a, b, c], (p, q, r) => tf.concat([p, q, r], 1));
      await compare(T, 'concat axis 0', [a, a], (p, q) => tf.concat([p, q], 0));
      await compare(T, 'concat axis -1', [a, randFloat([2, 3, 1])], (p, q) => tf.concat([p, q], -1));
      await compare(T, 'concat int32', [randInt([3, 2], 0, 9), randInt([3, 4], 0, 9)], (p, q) => tf.concat([p, q], 1));
      await compare(T, 'split sizes', [b], t => tf.split(t, [1, 3, 1], 1));
      await compare(T, 'split even', [randFloat([6, 4])], t => tf.split(t, 3, 0));
      await compare(T, 'stack', [a, a, a], (p, q, r) => tf.stack([p, q, r], 1));
      await compare(T, 'unstack', [a], t => tf.unstack(t, 2));
      await compare(T, 'pad', [a], t => tf.pad(t, [[1, 0], [0, 2], [3, 1]], 0.5));
      await compare(T, 'pad int32', [randInt([3, 3], 0, 9)], t => tf.pad(t, [[1, 1], [2, 0]], 7));
      await compare(T, 'tile', [a], t => tf.tile(t, [2, 1, 3]));
      await compare(T, 'tile 1-D', [randInt([5], 0, 9)], t => tf.tile(t, [4]));
    });

    it('gather, unsortedSegmentSum, oneHot', async () => {
      const table = randFloat([50, 8]);
      const idx = randInt([4, 6], 0, 50);
      await compare(T, 'gather axis 0', [table, idx], (p, i) => tf.gather(p, i, 0));
      await compare(T, 'gather axis 1', [randFloat([3, 10, 4]), randInt([7], 0, 10)], (p, i) => tf.gather(p, i, 1));
      await compare(T, 'gather batchDims 1', [randFloat([3, 10, 4]), randInt([3, 5], 0, 10)], (p, i) => tf.gather(p, i, 1, 1));
      await compare(T, 'gather int32', [randInt([20], -5, 5), randInt([30], 0, 20)], (p, i) => tf.gather(p, i));
      await compare(T, 'gather large', [randFloat([1000, 64]), randInt([Math.ceil(big / 64)], 0, 1000)], (p, i) => tf.gather(p, i));
      await compare(T, 'unsortedSegmentSum', [randFloat([40, 6]), randInt([40], 0, 9)], (x, s) => tf.unsortedSegmentSum(x, s as tf.Tensor1D, 9), { rtol: 1e-5, atol: 1e-5 });
      // rows of a multiple of 4 floats: the row path (a warp a row, float4 atomics on Hopper), many rows a segment
      await compare(T, 'unsortedSegmentSum rows', [randFloat([300, 12]), randInt([300], 0, 9)], (x, s) => tf.unsortedSegmentSum(x, s as tf.Tensor1D, 9), { rtol: 1e-5, atol: 1e-4 });
      // int32 stays int32 here; tfjs-backend-cpu returns float32, so compare values through a cast.
      await compare(T, 'unsortedSegmentSum int32', [randInt([40, 3], -5, 5), randInt([40], 0, 4)], (x, s) => tf.cast(tf.unsortedSegmentSum(x, s as tf.Tensor1D, 4), 'float32'));
      await compare(T, 'oneHot', [randInt([5, 3], 0, 7)], i => tf.oneHot(i, 7, 2, -1));
      await compare(T, 'oneHot out of range', [randInt([9], -2, 9)], i => tf.oneHot(i, 6));
    });

    it('creation, cast, select, softmax', async () => {
      await compare(T, 'fill', [], () => tf.fill([3, 4], 2.5));
      await compare(T, 'fill int32', [], () => tf.fill([5], 7, 'int32'));
      await compare(T, 'zeros/ones like', [randFloat([2, 3])], x => [tf.zerosLike(x), tf.onesLike(x)]);
      await compare(T, 'range', [], () => [tf.range(0, 10, 3), tf.range(5, -3, -2, 'int32'), tf.range(2, 2), tf.range(1.5, 8.25, 0.5)]);
      const f = randFloat([4, 9], -100, 100);
      await compare(T, 'cast float→int32/bool', [f], x => [tf.cast(x, 'int32'), tf.cast(x, 'bool')]);
      await compare(T, 'cast int32→float/bool', [randInt([7], -3, 3)], x => [tf.cast(x, 'float32'), tf.cast(x, 'bool')]);
      await compare(T, 'cast bool→float/int32', [randBool([7])], x => [tf.cast(x, 'float32'), tf.cast(x, 'int32')]);
      await compare(T, 'where', [randBool([3, 4]), randFloat([3, 4]), randFloat([3, 4])], (c, a, b) => tf.where(c, a, b));
      await compare(T, 'where broadcast', [randBool([4]), randFloat([3, 4]), randFloat([1, 4])], (c, a, b) => tf.where(c, a, b));
      await compare(T, 'where int32', [randBool([6]), randInt([6], 0, 9), randInt([6], 0, 9)], (c, a, b) => tf.where(c, a, b));
      for (const shape of [[3, 5], [2, 3, 50304 % 997], [7, 1], [Math.ceil(big / 2048), 2048]]) {
        await compare(T, `softmax [${shape}]`, [randFloat(shape, -10, 10)], x => tf.softmax(x), { rtol: 1e-5, atol: 1e-7 });
      }
    });

    it('batchMatMul with transposes and broadcast batch dims (fp32)', async () => {
      const cases: Array<[number[], number[], boolean, boolean]> = [
        [[4, 6], [6, 5], false, false], [[6, 4], [6, 5], true, false], [[4, 6], [5, 6], false, true], [[6, 4], [5, 6], true, true],
        [[3, 4, 6], [3, 6, 5], false, false], [[3, 4, 6], [6, 5], false, false], [[6, 5], [3, 5, 4], false, false],
        [[3, 1, 4, 6], [1, 6, 5], false, false], [[2, 3, 6, 4], [2, 3, 5, 6], true, true], [[4, 0], [0, 5], false, false],
        [[0, 3], [3, 2], false, false], [[65, 129], [129, 33], false, false], [[1, 257], [257, 1], false, false],
      ];
      for (const [sa, sb, ta, tb] of cases) {
        const k = ta ? sa[sa.length - 2] : sa[sa.length - 1];
        await compare(T, `matMul [${sa}]${ta ? 'ᵀ' : ''}·[${sb}]${tb ? 'ᵀ' : ''}`, [randFloat(sa), randFloat(sb)],
          (a, b) => tf.matMul(a, b, ta, tb), { rtol: 1e-4, atol: 1e-5 * Math.sqrt(k + 1) });
      }
      // Batch dims broadcast on both sides (tfjs-backend-cpu gets this one wrong: the reference broadcasts first).
      await compare(T, 'matMul [2,1,4,6]·[1,3,6,5]', [randFloat([2, 1, 4, 6]), randFloat([1, 3, 6, 5])], (a, b) => tf.matMul(a, b),
        { rtol: 1e-4, atol: 1e-5 }, (a, b) => tf.matMul(tf.broadcastTo(a, [2, 3, 4, 6]), tf.broadcastTo(b, [2, 3, 6, 5])));
      await compare(T, 'matMul int32', [randInt([3, 4], -9, 9), randInt([4, 2], -9, 9)], (a, b) => tf.matMul(a, b));
    });

    it('bf16 matmuls: operands rounded to bf16 once per tensor, the copy freed with it', async () => {
      await useBackend(T);
      const backend = tf.backend() as CudaBackend;
      const device = backend.device, toBf16 = device.toBf16;
      let conversions = 0;
      device.toBf16 = (x, y, n) => { conversions++; toBf16.call(device, x, y, n); };
      const counted = (fn: () => void): number => { const before = conversions; fn(); return conversions - before; };
      const bytes = bytesInUse;
      backend.setMatmulPrecision('bf16');
      try {
        // Rounding, exactly: A·I = bf16(A), with ties (1 + 2^-8 → 1, 1 + 3·2^-8 → 1 + 2^-6) and tiny/huge values.
        const special = [1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 3e-39, 1e30, -7.3e-12];
        const a: HostTensor = randFloat([6, 8]);
        special.forEach((v, i) => { a.values[i * 9 % 48] = v; });
        await compare(T, 'bf16 A·I', [a], x => tf.matMul(x, tf.eye(8)), { rtol: 0, atol: 0 }, x => tf.matMul(roundedBf16(x), tf.eye(8)));
        await compare(T, 'bf16 (Aᵀ)ᵀ·I', [a], x => tf.matMul(x.transpose(), tf.eye(8), true, false), { rtol: 0, atol: 0 },
          x => roundedBf16(x));
        // Products of the rounded operands in fp32, any layout.
        for (const [sa, sb, ta, tb] of [[[33, 65], [65, 17], false, false], [[65, 33], [17, 65], true, true], [[3, 9, 20], [20, 7], false, false]] as const) {
          await compare(T, `bf16 matMul [${sa}]·[${sb}]`, [randFloat([...sa]), randFloat([...sb])], (x, w) => tf.matMul(x, w, ta, tb),
            { rtol: 1e-4, atol: 1e-4 }, (x, w) => tf.matMul(roundedBf16(x), roundedBf16(w), ta, tb));
        }
        // alpha·A·B + beta·C: A and B rounded, C not.
        await compare(T, 'bf16 MatMulAdd', [randFloat([2, 9, 12]), randFloat([2, 12, 5]), randFloat([2, 9, 5])],
          (x, w, c) => tf.engine().runKernel(MATMUL_ADD, { a: x, b: w, c }, { alpha: 0.75, beta: -1.5, transposeA: false, transposeB: false }) as tf.Tensor,
          { rtol: 1e-4, atol: 1e-4 }, (x, w, c) => tf.matMul(roundedBf16(x), roundedBf16(w)).mul(0.75).add(c.mul(-1.5)));
        await compare(T, 'int32 matMul stays exact', [randInt([3, 4], -999, 999), randInt([4, 2], -999, 999)], (x, w) => tf.matMul(x, w));

        // One conversion per tensor, however many matmuls read it, through views (reshape) too; the copies are
        // freed with their tensors.
        const before = bytes();
        const x = tf.tensor(randFloat([16, 24]).values, [16, 24]), w1 = tf.tensor(randFloat([24, 8]).values, [24, 8]);
        const w2 = tf.tensor(randFloat([24, 8]).values, [24, 8]), dy = tf.tensor(randFloat([16, 8]).values, [16, 8]);
        const live: tf.Tensor[] = [];
        assert.equal(counted(() => live.push(tf.matMul(x, w1))), 2, 'x and w1 converted');
        assert.equal(counted(() => live.push(tf.matMul(x, w2))), 1, 'only w2 converted: x is cached');
        assert.equal(counted(() => live.push(tf.tidy(() => tf.matMul(x.reshape([2, 8, 24]), w1)))), 0, 'a view reuses the copy');
        assert.equal(bytes() - before, 4 * (16 * 24 + 2 * 24 * 8 + 16 * 8) + 3 * 4 * 16 * 8 + 2 * (16 * 24 + 2 * 24 * 8),
          'tensors, products and one bf16 copy each of x, w1, w2');
        // The backward of x·w1: dy converted once for both products, x and w1 not again.
        assert.equal(counted(() => live.push(...tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.matMul(p, q))([x, w1], dy))), 1, 'only dy converted');
        const [dxGot, dwGot] = [live[3].dataSync(), live[4].dataSync()];
        await useBackend('cpu');
        const [xr, w1r, dyr] = [x, w1, dy].map(t => roundedBf16(tf.tensor(t.dataSync(), t.shape)));
        const [dxWant, dwWant] = [tf.matMul(dyr, w1r, false, true).dataSync(), tf.matMul(xr, dyr, true, false).dataSync()];
        tf.dispose([xr, w1r, dyr]);
        await useBackend(T);
        dxWant.forEach((v, i) => assert.ok(Math.abs(dxGot[i] - v) <= 1e-4 + 1e-4 * Math.abs(v), `dx[${i}] ${dxGot[i]} vs ${v}`));
        dwWant.forEach((v, i) => assert.ok(Math.abs(dwGot[i] - v) <= 1e-4 + 1e-4 * Math.abs(v), `dw[${i}] ${dwGot[i]} vs ${v}`));
        tf.dispose([x, w1, w2, dy, ...live]);
        assert.equal(bytes(), before, 'every bf16 copy freed with its tensor');
        backend.setMatmulPrecision('fp32');
        const [p, q] = [tf.ones([4, 4]), tf.ones([4, 4])];
        assert.equal(counted(() => tf.dispose(tf.matMul(p, q))), 0, 'fp32 matmuls make no copies');
        tf.dispose([p, q]);
      } finally {
        device.toBf16 = toBf16;
        backend.setMatmulPrecision('fp32');
      }
    });

    it('bf16-only outputs: ReLU², its gradient, dlogits and dqkv are written in bf16 for the matmuls that read them', async () => {
      await useBackend(T);
      const backend = tf.backend() as CudaBackend;
      const device = backend.device, { toBf16, fromBf16 } = device;
      const count = { toBf16: 0, fromBf16: 0 };
      device.toBf16 = (x, y, n) => { count.toBf16++; toBf16.call(device, x, y, n); };
      device.fromBf16 = (x, y, n) => { count.fromBf16++; fromBf16.call(device, x, y, n); };
      const bytes = bytesInUse;
      const relu2 = (x: tf.Tensor) => tf.engine().runKernel(RELU_SQUARED, { x }) as tf.Tensor;
      const ce = (logits: tf.Tensor, targets: tf.Tensor) =>
        tf.engine().runKernel(SOFTCAP_CROSS_ENTROPY, { logits, targets }, { cap: 'sigmoid', scale: 30, temp: 7.5, reduction: 'sum' }) as tf.Scalar;
      // AttentionInputs on [B=2, T=3, 3 heads (q, k, v) of 8]: the gradient of Σ q·rq + k·rk + v·rv for qkv.
      const [qkv, cos, sin, lambdas, rq, rk, rv] = [[2, 3, 24], [1, 3, 1, 4], [1, 3, 1, 4], [2], [2, 3, 1, 8], [2, 3, 1, 8], [2, 3, 1, 8]]
        .map(shape => tf.tensor(randFloat(shape).values, shape));
      const qkvLoss = (t: tf.Tensor) => {
        const [q, k, v] = tf.engine().runKernel(ATTENTION_INPUTS, { qkv: t, cos, sin, lambdas },
          { numHeads: 1, kvHeads: 1, qkNorm: true, eps: 1e-6 }) as tf.Tensor[];
        return tf.addN([q.mul(rq).sum(), k.mul(rk).sum(), v.mul(rv).sum()]) as tf.Scalar;
      };
      /** [relu²(x), its dx for dy, dlogits of the summed loss, dqkv] at a precision, as host arrays. */
      const outputs = (x: tf.Tensor, dy: tf.Tensor, logits: tf.Tensor, targets: tf.Tensor) => {
        const y = relu2(x), dx = tf.grad(relu2)(x, dy), dl = tf.grad((l: tf.Tensor) => ce(l, targets))(logits), dqkv = tf.grad(qkvLoss)(qkv);
        const res = [y, dx, dl, dqkv].map(t => t.dataSync().slice());
        tf.dispose([y, dx, dl, dqkv]);
        return res;
      };
      try {
        const x = tf.tensor(randFloat([16, 24]).values, [16, 24]), dy = tf.tensor(randFloat([16, 24]).values, [16, 24]);
        const w = tf.tensor(randFloat([24, 8]).values, [24, 8]);
        const logits = tf.tensor(randFloat([6, 50], -40, 40).values, [6, 50]), targets = tf.tensor(randInt([6], 0, 50).values, [6], 'int32');
        backend.setMatmulPrecision('fp32');
        const want = outputs(x, dy, logits, targets).map(v => v.map(bf16));
        backend.setMatmulPrecision('bf16');
        // The bf16 results are the float32 kernels' results rounded to nearest even, bit for bit.
        outputs(x, dy, logits, targets).forEach((got, o) => got.forEach((v, i) => assert.equal(v, want[o][i], `output ${o} [${i}]`)));

        // Only the bf16 buffer exists until something other than a matmul reads the tensor; a matmul takes it as is.
        const before = bytes();
        const y = relu2(x);
        assert.equal(bytes() - before, 2 * 16 * 24, 'relu²(x) holds only its bf16 values');
        count.toBf16 = count.fromBf16 = 0;
        const yw = tf.matMul(y, w);
        assert.deepEqual(count, { toBf16: 1, fromBf16: 0 }, 'the matmul converts w only and reads y\'s bf16 values');
        // A read widens the bf16 values into a scratch buffer: no float32 copy is kept beside them (the bf16 state, §5,
        // stays at half its bytes through checkpoints and logs).
        assert.deepEqual(Array.from(y.dataSync()), Array.from(want[0]), 'read back: the bf16 values');
        assert.equal(count.fromBf16, 1, 'a read widens');
        assert.equal(bytes() - before, 2 * 16 * 24 + 4 * 16 * 8 + 2 * 24 * 8, 'a read keeps no float32 copy of y');
        // A kernel that reads float32 (a unary op; the binary ones read bf16 as stored) makes the float32 buffer once (the
        // bf16 values widened); every later reader uses it.
        tf.dispose(tf.neg(y));
        tf.dispose(tf.neg(y));
        y.dataSync();
        assert.equal(count.fromBf16, 2, 'widened once for the kernels, whose float32 buffer the later read uses');
        assert.equal(bytes() - before, 2 * 16 * 24 + 4 * 16 * 24 + 4 * 16 * 8 + 2 * 24 * 8, 'both buffers of y, the product and w\'s bf16 copy');
        tf.dispose([y, yw]);
        assert.equal(bytes() - before, 2 * 24 * 8, 'both buffers of y freed with it (w keeps its bf16 copy)');
        // Under fp32 precision the outputs are ordinary float32 tensors.
        backend.setMatmulPrecision('fp32');
        const y32 = relu2(x);
        assert.equal(bytes() - before, 2 * 24 * 8 + 4 * 16 * 24, 'fp32: a float32 output');
        tf.dispose([y32, x, dy, w, logits, targets, qkv, cos, sin, lambdas, rq, rk, rv]);
      } finally {
        Object.assign(device, { toBf16, fromBf16 });
        backend.setMatmulPrecision('fp32');
      }
    });

    it('bf16 activations: Linear and RMSNorm write bf16 only, and ReLU², SwiGLU, AttentionInputs, RMSNorm, CanonConv, Slice and Concat read them as stored', async () => {
      await useBackend(T);
      const backend = tf.backend() as CudaBackend;
      try {
        backend.setMatmulPrecision('bf16');
        const [x, w, r48, r24, docIds] = [randFloat([2, 5, 24]), randFloat([24, 48]), randFloat([2, 5, 48]), randFloat([2, 5, 24]),
          { shape: [2, 5], dtype: 'int32', values: Int32Array.from([0, 0, 1, 1, 1, 0, 0, 0, 2, 2]) } as HostTensor]
          .map(h => tf.tensor(h.values, h.shape, h.dtype));
        // Linear: x·w rounded to bf16 from the fp32 sum of the bf16 operands (the record's activation, §5), kept in bf16 only
        const y = Model.linear(x, w);
        assert.equal(backend.storedValues(y).bf16, true, 'Linear: bf16 only');
        backend.setMatmulPrecision('fp32');
        const exact = tf.tidy(() => tf.matMul(roundedBf16(x).reshape([10, 24]), roundedBf16(w)).dataSync());
        backend.setMatmulPrecision('bf16');
        // A second call's output, read back (widened): the same values in float32, the twin every consumer is checked against.
        const twin = Model.linear(x, w), wide = tf.tensor(twin.dataSync(), y.shape);
        // (within one bf16 step: the GPU's fp32 sum may round the other way at a tie of the bf16 grid)
        Array.from(wide.dataSync()).forEach((v, i) => assert.ok(Math.abs(v - exact[i]) <= 2 ** -8 * Math.abs(exact[i]) + 1e-6,
          `Linear [${i}]: ${v} is not bf16 of ${exact[i]}`));
        assert.deepEqual(Array.from(wide.dataSync()), Array.from(wide.dataSync(), bf16), 'Linear: bf16 values');
        const rope = randomRope(16, 'half'), lambdas = tf.tensor([0.7, 0.4]), cw = tf.tensor(randFloat([48, 4]).values, [48, 4]);
        /** Each consumer's outputs and its input gradient (for a random weighting), read back. */
        const consumers: Record<string, (t: tf.Tensor) => tf.Tensor[]> = {
          ReluSquared: t => [Model.reluSquared(t), tf.grad(v => Model.reluSquared(v).mul(r48).sum())(t)],
          Swiglu: t => [Model.swiglu(t), tf.grad(v => Model.swiglu(v).mul(r24).sum())(t)],
          AttentionInputs: t => {
            const f = (v: tf.Tensor) => Model.attentionInputs(v, rope, null, lambdas, { H: 1, Hk: 1, h: 16, qkNorm: true });
            return [...f(t), tf.grad(v => tf.addN(f(v).map(o => o.reshape([2, 5, 16]).mul(r48.slice([0, 0, 0], [2, 5, 16])).sum())))(t)];
          },
          RMSNorm: t => [Model.rmsNorm(t), tf.grad(v => Model.rmsNorm(v).mul(r48).sum())(t)],
          CanonConv: t => {
            const f = (v: tf.Tensor) => tf.engine().runKernel(CANON_CONV, { x: v, w: cw, docIds }, { normChannels: 0, normGroup: 1, eps: 1e-6, rowNorm: false, xFromProjection: false, relu2: false }) as tf.Tensor;
            return [f(t), ...tf.grads((v: tf.Tensor, u: tf.Tensor) => f(v).mul(r48).sum().add(u.sum()))([t, cw])];
          },
          Slice: t => [t.slice([0, 0, 0], [2, 5, 12])],
        };
        for (const [name, run] of Object.entries(consumers)) {
          const [got, want] = [y, wide].map(t => tf.tidy(() => run(t)).map(o => { const v = o.dataSync().slice(); o.dispose(); return v; }));
          got.forEach((v, o) => assert.deepEqual(Array.from(v), Array.from(want[o]), `${name}: output ${o} as from the widened values`));
          assert.equal(backend.storedValues(y).bf16, true, `${name} made no float32 copy of its bf16 input`);
        }
        // RMSNorm's own output: bf16 only, the float32 norm rounded
        const n = Model.rmsNorm(x);
        assert.equal(backend.storedValues(n).bf16, true, 'RMSNorm: bf16 only under bf16 precision');
        const sliced = n.slice([0, 0, 0], [2, 5, 12]);
        assert.equal(backend.storedValues(sliced).bf16, true, 'a slice of a bf16-only tensor stays bf16 only');
        // Concat of bf16-only inputs (Canon B's normed q, k and v) is bf16 only with the same values; with a float32
        // input it is float32
        const [p0, p1] = tf.split(y, [16, 32], -1);
        const joined = tf.concat([p1, p0], -1), mixed = tf.concat([p1, wide.slice([0, 0, 0], [2, 5, 16])], -1);
        assert.equal(backend.storedValues(joined).bf16, true, 'Concat of bf16-only inputs stays bf16 only');
        assert.equal(backend.storedValues(mixed).bf16, false, 'Concat with a float32 input is float32');
        const wantJoined = tf.tidy(() => tf.concat(tf.split(wide, [16, 32], -1).reverse(), -1).dataSync());
        assert.deepEqual(Array.from(joined.dataSync()), Array.from(wantJoined), 'Concat: the inputs\' values, in bf16');
        assert.deepEqual(Array.from(mixed.dataSync()), Array.from(wantJoined), 'Concat of bf16-only and float32 inputs: their values');
        backend.setMatmulPrecision('fp32');
        const n32 = Model.rmsNorm(x);
        assert.equal(backend.storedValues(n32).bf16, false, 'RMSNorm: float32 under fp32 precision');
        assert.deepEqual(Array.from(n.dataSync()), Array.from(n32.dataSync(), bf16), 'RMSNorm: the float32 norm rounded to bf16');
        const y32 = Model.linear(x, w);
        assert.equal(backend.storedValues(y32).bf16, false, 'Linear: float32 under fp32 precision');
        tf.dispose([x, w, r48, r24, docIds, y, twin, wide, lambdas, cw, n, sliced, p0, p1, joined, mixed, n32, y32]);
      } finally {
        backend.setMatmulPrecision('fp32');
      }
    });

    it('the residual stream in bf16: MatMulAdd over a bf16-only c and ScaledAdd over bf16-only x and z write bf16 only, read as stored', async () => {
      await useBackend(T);
      const backend = tf.backend() as CudaBackend;
      try {
        backend.setMatmulPrecision('bf16');
        const [x, w, stream, lambdas, r] = [randFloat([2, 5, 24]), randFloat([24, 16]), randFloat([2, 5, 16]), randFloat([2]), randFloat([2, 5, 16])]
          .map(h => tf.tensor(h.values, h.shape));
        // bf16-only tensors: RMSNorm's outputs (and its float32 output rounded, for the widened twins)
        const [c, z] = [Model.rmsNorm(stream), Model.rmsNorm(stream.mul(-0.5))];
        const [cWide, zWide] = [stream, stream.mul(-0.5)].map(t => tf.tensor(Array.from(Model.rmsNorm(t).dataSync()), t.shape));
        const [a, b] = tf.unstack(lambdas);
        const cases: Record<string, (c: tf.Tensor, z: tf.Tensor) => tf.Tensor[]> = {
          MatMulAdd: (ct) => [Model.linear(x, w, ct), ...tf.grads((u: tf.Tensor, v: tf.Tensor) => Model.linear(u, w, v).mul(r).sum())([x, ct])],
          ScaledAdd: (ct, zt) => [Model.scaledAdd(ct, zt, a, b), ...tf.grads((u: tf.Tensor, v: tf.Tensor) => Model.scaledAdd(u, v, a, b).mul(r).sum())([ct, zt])],
        };
        for (const [name, run] of Object.entries(cases)) {
          const outs = run(c, z);
          assert.equal(backend.storedValues(outs[0]).bf16, true, `${name}: the sum is bf16 only`);
          const got = outs.map(o => o.dataSync().slice()), want = run(cWide, zWide).map(o => o.dataSync().slice());
          assert.deepEqual(Array.from(got[0]), Array.from(got[0], bf16), `${name}: bf16 values`);
          // the float32 sum of the same values rounded once: bit for bit for ScaledAdd, within a bf16 step for cuBLASLt's sum
          const step = name === 'MatMulAdd' ? 2 ** -8 : 0;
          got[0].forEach((v, i) => assert.ok(Math.abs(v - bf16(want[0][i])) <= step * Math.abs(want[0][i]) + 1e-7, `${name} [${i}]: ${v} against ${want[0][i]}`));
          got.slice(1).forEach((g, o) => assert.deepEqual(Array.from(g), Array.from(want[o + 1]), `${name}: gradient ${o} as from the widened values`));
          assert.equal(backend.storedValues(c).bf16 && backend.storedValues(z).bf16, true, `${name} made no float32 copy of its bf16 inputs`);
          tf.dispose(outs);
        }
        backend.setMatmulPrecision('fp32');
        assert.equal(backend.storedValues(Model.scaledAdd(cWide, zWide, a, b)).bf16, false, 'float32 inputs: a float32 sum');
        tf.dispose([x, w, stream, lambdas, r, c, z, cWide, zWide, a, b]);
      } finally {
        backend.setMatmulPrecision('fp32');
      }
    });

    it('an activation\'s gradient through MatMulAdd and Linear is bf16 only under bf16 (§5), and ReLU², SwiGLU, the head gate and the norm read such a dy as stored', async () => {
      await useBackend(T);
      const backend = tf.backend() as CudaBackend;
      try {
        const [x, w, c, r] = [randFloat([10, 24]), randFloat([24, 16]), randFloat([10, 16]), randFloat([10, 16])].map(h => tf.tensor(h.values, h.shape));
        // d/dx Σ (x·w [+ c])·r = r·wᵀ, through MatMulAdd (with c) and Linear (without)
        for (const residual of [c, undefined]) {
          const op = residual ? 'MatMulAdd' : 'Linear';
          const gradOfX = () => tf.grad((u: tf.Tensor) => Model.linear(u, w, residual).mul(r).sum())(x);
          backend.setMatmulPrecision('fp32');
          const g32 = gradOfX();
          assert.equal(backend.storedValues(g32).bf16, false, `${op}, fp32: a float32 gradient`);
          backend.setMatmulPrecision('bf16');
          const g16 = gradOfX(), product = tf.matMul(r, w, false, true);  // the same bf16 operands' product in float32
          assert.equal(backend.storedValues(g16).bf16, true, `${op}, bf16: the gradient is stored in bf16 only`);
          const got = g16.dataSync(), want = product.dataSync();
          // rounded once from cuBLASLt's float32 sum: within a bf16 step of the float32 product's (another algorithm's sum)
          got.forEach((v, i) => assert.ok(v === bf16(v) && Math.abs(v - want[i]) <= 2 ** -8 * Math.abs(want[i]) + 1e-7, `${op} [${i}]: ${v} against ${want[i]}`));
          tf.dispose([g32, g16, product]);
        }
        tf.dispose([x, w, c, r]);

        // the readers: a bf16-only dy (as MatMulAdd's gradient is; dLead for the norm's second case) gives what its values
        // in float32 give, and stays bf16 only
        const t = (shape: number[]) => tf.tensor(randFloat(shape).values, shape);
        const [xRelu, xGlu, o, g, xNorm, dLead, dNorm] = [t([6, 16]), t([6, 16]), t([1, 3, 2, 8]), t([1, 3, 2]), t([5, 32]), t([5, 4]), t([5, 32])];
        const readers: [string, number[], (dy: tf.Tensor) => tf.Tensor[]][] = [
          [RELU_SQUARED_GRAD, [6, 16], (dy) => [tf.engine().runKernel(RELU_SQUARED_GRAD, { dy, x: xRelu }) as tf.Tensor]],
          [SWIGLU_GRAD, [6, 8], (dy) => [tf.engine().runKernel(SWIGLU_GRAD, { dy, x: xGlu }) as tf.Tensor]],
          [HEAD_GATE_GRAD, [1, 3, 2, 8], (dy) => tf.engine().runKernel(HEAD_GATE_GRAD, { dy, o, g }) as tf.Tensor[]],
          [RMS_NORM_GRAD, [5, 32], (dy) => [tf.engine().runKernel(RMS_NORM_GRAD, { dy, x: xNorm, dLead }, { eps: 1e-6, leading: 4 }) as tf.Tensor]],
          // the gate's gradient dLead bf16 only too (the gate projection's gradient of its input)
          [`${RMS_NORM_GRAD} (dLead)`, [5, 4], (dLead) => [tf.engine().runKernel(RMS_NORM_GRAD, { dy: dNorm, x: xNorm, dLead }, { eps: 1e-6, leading: 4 }) as tf.Tensor]],
          [`${RMS_NORM_GRAD} (channels)`, [5, 12], (dy) => [tf.engine().runKernel(RMS_NORM_GRAD, { dy, x: xNorm }, { eps: 1e-6, channels: 12 }) as tf.Tensor]],
        ];
        for (const [name, shape, run] of readers) {
          const [dy, dyValues] = bf16OnlyAndFloat32(t(shape));
          const fromStored = run(dy), fromValues = run(dyValues);
          assert.equal(storedInBf16(dy), true, `${name} read dy as stored: no float32 copy beside it`);
          fromStored.forEach((out, n) => assert.deepEqual(Array.from(out.dataSync()), Array.from(fromValues[n].dataSync()), `${name}: output ${n}`));
          tf.dispose([dy, dyValues, ...fromStored, ...fromValues]);
        }
        tf.dispose([xRelu, xGlu, o, g, xNorm, dLead, dNorm]);
      } finally {
        backend.setMatmulPrecision('fp32');
      }
    });
  });
}
