// The fused Canon layer ('CanonConv', canon_conv.cu) against its oracle, train_gpt.ts's composite canon() on the
// cpu backend: the output (bit for bit: the same products and sums in the same order) and dx, dw for a random dy,
// on fresh random inputs and random document boundaries; channels that are not a multiple of 4, T < 4, more rows
// than one partial sum of dw; the head norm of Canon B against the composite's split, norms and concatenation, and the
// row norm of Canon A and C against the composite's norm, with its leading channels as a second output (Canon A's z as
// the attention gate's input) against rmsNormLeading; relu2 (Canon D with the MLP's relu²) against
// relu(canon(x))²; a bf16-only x and dy read as stored; every Canon position in the model against --fused off (B through
// CanonAttentionInputs, tested in its own folder); bad inputs failing with the kernel's name.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import { bf16, checkModelKernels, compare, describeOrSkip, kernelsRun, randFloat, randomDocIds, targets, useBackend } from '../../../test/cuda_harness.ts';
import type { CudaBackend } from '../../backend.ts';
import { CANON_ATTENTION_INPUTS, CANON_ATTENTION_INPUTS_GRAD } from '../canon_attention_inputs/canon_attention_inputs.ts';
import { CANON_CONV, CANON_CONV_GRAD } from './canon_conv.ts';

const canonOut = (x: tf.Tensor, w: tf.Tensor, docIds: tf.Tensor) => [T.canon(x, w, new T.ForwardContext(docIds as tf.Tensor2D))];
const canonAndGrads = (x: tf.Tensor, w: tf.Tensor, docIds: tf.Tensor, dy: tf.Tensor) => {
  const ctx = new T.ForwardContext(docIds as tf.Tensor2D);
  return [T.canon(x, w, ctx), ...tf.grads((a: tf.Tensor, b: tf.Tensor) => T.canon(a, b, ctx))([x, w], dy)];
};

/** The kernels' attrs without the head norm. */
const NO_NORM = { normChannels: 0, normGroup: 1, eps: 2 ** -23, rowNorm: false, xFromProjection: false, relu2: false };

for (const target of targets) {
  describeOrSkip(`fused CanonConv on ${target.name}`, target.skip, () => {
    const B = target.name;
    // [B, T, C]: C = 5 and 3 (not multiples of 4: one channel a thread), T = 2 and 1 (fewer tokens than taps), B·T = 600
    // and 2100 (3 and 9 partial sums of dw, rows not a multiple of a thread's 32, sequences starting inside a thread's
    // rows); on cuda C = 96 and 1300 (blocks of 32 channel vectors, the last one partial)
    const SHAPES = [[2, 7, 5], [3, 2, 8], [1, 1, 3], [2, 300, 12], [3, 700, 5], ...(target.name === 'cuda' ? [[4, 2048, 96], [1, 3000, 1300]] : [])];

    it('output (bit for bit) and dx, dw match the composite on cpu, across document boundaries', async () => {
      for (const [b, t, c] of SHAPES) {
        const x = randFloat([b, t, c]), w = randFloat([c, 4], -0.5, 0.5), docIds = randomDocIds(b, t), dy = randFloat([b, t, c]);
        await compare(B, `canon [${b},${t},${c}]`, [x, w, docIds], canonOut, { rtol: 0, atol: 0 });
        await compare(B, `canon and gradients [${b},${t},${c}]`, [x, w, docIds, dy], canonAndGrads, { rtol: 1e-4, atol: 1e-4 });
      }
    });

    it('with the head norm (Canon B under QK-norm): output and dx, dw match the composite (split, RMS norms, concat) on cpu', async () => {
      // [B, T, C, normed channels, head]: heads of 16 and 4 channels with channels left unnormed; on cuda the speedrun's
      // q|k|v row (heads of 128: a warp each) and heads of 64
      const cases = [[2, 40, 48, 32, 16], [1, 300, 20, 8, 4], ...(target.name === 'cuda' ? [[1, 1000, 2304, 1536, 128], [2, 300, 384, 256, 64]] : [])];
      for (const [b, t, c, channels, group] of cases) {
        const x = randFloat([b, t, c], -2, 2), w = randFloat([c, 4], -0.5, 0.5), docIds = randomDocIds(b, t), dy = randFloat([b, t, c]);
        const normedAndGrads = (x: tf.Tensor, w: tf.Tensor, docIds: tf.Tensor, dy: tf.Tensor) => {
          const ctx = new T.ForwardContext(docIds as tf.Tensor2D), f = (a: tf.Tensor, v: tf.Tensor) => T.canon(a, v, ctx, { headNorm: { channels, group } });
          return [f(x, w), ...tf.grads(f)([x, w], dy)];
        };
        await compare(B, `canon with heads of ${group} normed over ${channels} of [${b},${t},${c}]`, [x, w, docIds, dy], normedAndGrads, { rtol: 1e-3, atol: 1e-3 });
      }
    });

    it('with the row norm (Canon A and C on the residual stream): output and dx, dw match the composite (RMS norm, conv) on cpu', async () => {
      // C = 5 (one channel a thread), 48, and on cuda the model's 768 (both ways take whole rows a block: 2000 rows are 63
      // blocks of 32 rows, the last partial; 1300 channels: 325 threads, the last warp partly idle; 2048: 512 threads, the
      // most)
      const cases = [[2, 40, 5], [3, 700, 48], ...(target.name === 'cuda' ? [[1, 2000, 768], [2, 300, 1300], [1, 100, 2048]] : [])];
      for (const [b, t, c] of cases) {
        const x = randFloat([b, t, c], -2, 2), w = randFloat([c, 4], -0.5, 0.5), docIds = randomDocIds(b, t), dy = randFloat([b, t, c]);
        // and x read by another op too (the residual stream: its gradient so far is summed into dx by CanonConvGrad)
        for (const residual of [false, true]) {
          const normedAndGrads = (x: tf.Tensor, w: tf.Tensor, docIds: tf.Tensor, dy: tf.Tensor) => {
            const ctx = new T.ForwardContext(docIds as tf.Tensor2D);
            const f = (a: tf.Tensor, v: tf.Tensor) => { const y = T.canon(a, v, ctx, { rowNorm: true }); return residual ? y.add(a.mul(0.75)) : y; };
            return [f(x, w), ...tf.grads(f)([x, w], dy)];
          };
          await compare(B, `canon with the row norm [${b},${t},${c}]${residual ? ' and a residual' : ''}`, [x, w, docIds, dy], normedAndGrads,
            { rtol: 1e-3, atol: 1e-3 });
        }
      }
      // the residual's gradient is summed in CanonConvGrad's stores: the one Add is the forward's
      await useBackend(B);
      const [x, w, dy] = [randFloat([2, 40, 8]), randFloat([8, 4], -0.5, 0.5), randFloat([2, 40, 8])].map((h) => tf.tensor(h.values, h.shape));
      const docIds = tf.tensor(randomDocIds(2, 40).values, [2, 40], 'int32'), ctx = new T.ForwardContext(docIds as tf.Tensor2D);
      const names = await kernelsRun(() => tf.grads((a: tf.Tensor, v: tf.Tensor) => T.canon(a, v, ctx, { rowNorm: true }).add(a.mul(0.75)))([x, w], dy));
      assert.deepEqual([names.filter((k) => k === 'Add').length, names.filter((k) => k === 'RMSNormGrad').length], [1, 0], names.join(', '));
      tf.dispose([x, w, dy, docIds]);
    });

    it('with the row norm and its leading channels as a second output (Canon A\'s z as the attention gate\'s input): both outputs and dx, dw match the composite (canon, rmsNormLeading) on cpu', async () => {
      // [B, T, C, leading]: C = 5 (one channel a thread: 4 leading channels), 20 and 48 (the gate's 12), and on cuda the
      // model's 768 and 1300 channels with the most leading channels (32)
      const cases = [[2, 40, 5, 4], [1, 300, 20, 12], [3, 200, 48, 12], ...(target.name === 'cuda' ? [[1, 2000, 768, 12], [2, 300, 1300, 32]] : [])];
      for (const [b, t, c, leading] of cases) {
        const x = randFloat([b, t, c], -2, 2), w = randFloat([c, 4], -0.5, 0.5), docIds = randomDocIds(b, t), dy = randFloat([b, t, c]);
        const dLead = randFloat([b, t, leading]);
        // with x read by another op too (the residual stream: its gradient so far is summed in as well)
        for (const residual of [false, true]) {
          const outputsAndGrads = (x: tf.Tensor, w: tf.Tensor, docIds: tf.Tensor, dy: tf.Tensor, dLead: tf.Tensor) => {
            const ctx = new T.ForwardContext(docIds as tf.Tensor2D);
            const loss = (a: tf.Tensor, v: tf.Tensor) => {
              const [y, lead] = T.canonWithLeading(a, v, ctx, leading);
              const sum = y.mul(dy).sum().add(lead.mul(dLead).sum());
              return residual ? sum.add(a.mul(0.75).mul(dy).sum()) : sum;
            };
            return [...T.canonWithLeading(x, w, ctx, leading), ...tf.grads(loss)([x, w])];
          };
          await compare(B, `canon with the row norm and ${leading} leading channels [${b},${t},${c}]${residual ? ' and a residual' : ''}`,
            [x, w, docIds, dy, dLead], outputsAndGrads, { rtol: 1e-3, atol: 1e-3 });
        }
      }
      // one CanonConv each way, no RMSNorm or RMSNormGrad of the leading channels
      await useBackend(B);
      const [x, w, dy, dLead] = [randFloat([2, 40, 8]), randFloat([8, 4], -0.5, 0.5), randFloat([2, 40, 8]), randFloat([2, 40, 4])]
        .map((h) => tf.tensor(h.values, h.shape));
      const docIds = tf.tensor(randomDocIds(2, 40).values, [2, 40], 'int32'), ctx = new T.ForwardContext(docIds as tf.Tensor2D);
      const names = await kernelsRun(() => tf.grads((a: tf.Tensor, v: tf.Tensor) => {
        const [y, lead] = T.canonWithLeading(a, v, ctx, 4);
        return y.mul(dy).sum().add(lead.mul(dLead).sum());
      })([x, w]));
      const count = (k: string) => names.filter((n) => n === k).length;
      assert.deepEqual([count(CANON_CONV), count(CANON_CONV_GRAD), count('RMSNorm'), count('RMSNormGrad')], [1, 1, 0, 0], names.join(', '));
      tf.dispose([x, w, dy, dLead, docIds]);
    });

    it('the row norm with a bf16-only x, and its gradient with a bf16-only dy and dLead (the gate\'s) and the residual\'s gradient so far, at the model\'s 768 channels: as from float32 copies, bit for bit', async () => {
      // on cuda its rings of x, dy and the sum so far take exactly 48 KiB beside its static shared memory: past the
      // default limit, so the kernel must opt in (it failed to launch when the opt-in began above 48 KiB)
      await useBackend(B);
      const backend = tf.backend() as CudaBackend, [b, t, c, leading] = [1, 96, 768, 12];
      const [x, dy, acc, dLead] = [randFloat([b, t, c]), randFloat([b, t, c]), randFloat([b, t, c]), randFloat([b, t, leading])]
        .map((h) => tf.tensor(h.values, h.shape));
      const w = tf.tensor(randFloat([c, 4], -0.5, 0.5).values, [c, 4]), docIds = tf.tensor(randomDocIds(b, t).values, [b, t], 'int32');
      const attrs = { ...NO_NORM, rowNorm: true, eps: 1e-6, leading };
      try {
        backend.setMatmulPrecision('bf16');
        const [xn, dyn, dLeadn] = [T.rmsNorm(x), T.rmsNorm(dy), T.rmsNorm(dLead)];  // bf16-only activations
        assert.deepEqual([xn, dyn, dLeadn].map((h) => backend.storedValues(h).bf16), [true, true, true], 'x, dy and dLead stored in bf16 only');
        const [dx, dw] = tf.engine().runKernel(CANON_CONV_GRAD, { dy: dyn, x: xn, w, docIds, dLead: dLeadn, accumulated: acc }, attrs) as tf.Tensor[];
        const [xv, dyv, dLeadv] = [xn, dyn, dLeadn].map((h) => tf.tensor(h.dataSync(), h.shape));  // the same values in float32
        // y and lead in bf16 both times (bf16 precision)
        const [[y, lead], [wantY, wantLead]] = [xn, xv].map((a) => tf.engine().runKernel(CANON_CONV, { x: a, w, docIds }, attrs) as tf.Tensor[]);
        backend.setMatmulPrecision('fp32');
        const [wantDx, wantDw] = tf.engine().runKernel(CANON_CONV_GRAD, { dy: dyv, x: xv, w, docIds, dLead: dLeadv, accumulated: acc },
          attrs) as tf.Tensor[];
        assert.deepEqual(Array.from(y.dataSync()), Array.from(wantY.dataSync()), 'y as from float32 copies');
        assert.deepEqual(Array.from(lead.dataSync()), Array.from(wantLead.dataSync()), 'lead as from float32 copies');
        assert.deepEqual(Array.from(dx.dataSync()), Array.from(wantDx.dataSync()), 'dx as from float32 copies');
        assert.deepEqual(Array.from(dw.dataSync()), Array.from(wantDw.dataSync()), 'dw as from float32 copies');
        tf.dispose([xn, dyn, dLeadn, y, lead, dx, dw, xv, dyv, dLeadv, wantY, wantLead, wantDx, wantDw]);
      } finally {
        backend.setMatmulPrecision('fp32');
        tf.dispose([x, dy, acc, dLead, w, docIds]);
      }
    });

    it('with relu2 (Canon D and the relu2 MLP\'s activation): output and dx, dw match relu(canon(x))² on cpu', async () => {
      // C = 5 (one channel a thread) and 48; rows of 300 (sequences and documents starting inside a thread's rows, where
      // the backward's look-ahead of four rows crosses them); on cuda the model's 3072 channels
      const cases = [[2, 40, 5], [3, 300, 48], [1, 3, 8], ...(target.name === 'cuda' ? [[1, 2000, 3072]] : [])];
      for (const [b, t, c] of cases) {
        const x = randFloat([b, t, c], -2, 2), w = randFloat([c, 4], -0.5, 0.5), docIds = randomDocIds(b, t), dy = randFloat([b, t, c]);
        const activatedAndGrads = (x: tf.Tensor, w: tf.Tensor, docIds: tf.Tensor, dy: tf.Tensor) => {
          const ctx = new T.ForwardContext(docIds as tf.Tensor2D), f = (a: tf.Tensor, v: tf.Tensor) => T.canon(a, v, ctx, { relu2: true });
          return [f(x, w), ...tf.grads(f)([x, w], dy)];
        };
        await compare(B, `canon with relu2 [${b},${t},${c}]`, [x, w, docIds, dy], activatedAndGrads, { rtol: 1e-4, atol: 1e-4 });
      }
    });

    it('a bf16-only x and dy (the normed input; ReLU²\'s and AttentionInputs\' gradients under bf16 precision) are read as stored: the gradients of their bf16 values, no float32 copy; a projection\'s dx in bf16', async () => {
      await useBackend(B);
      const backend = tf.backend() as CudaBackend, [b, t, c] = [2, 40, 12];
      const [x, dy] = [randFloat([b, t, c]), randFloat([b, t, c])].map((h) => tf.tensor(h.values, h.shape));
      const w = tf.tensor(randFloat([c, 4], -0.5, 0.5).values, [c, 4]), docIds = tf.tensor(randomDocIds(b, t).values, [b, t], 'int32');
      try {
        backend.setMatmulPrecision('bf16');
        const [xn, dyn] = [T.rmsNorm(x), T.rmsNorm(dy)];  // bf16-only activations
        const [dx, dw] = tf.engine().runKernel(CANON_CONV_GRAD, { dy: dyn, x: xn, w, docIds }, NO_NORM) as tf.Tensor[];
        // x a projection's output (Canon B, D): dx stored in bf16, as the projection's gradient matmuls read it
        const [dxP, dwP] = tf.engine().runKernel(CANON_CONV_GRAD, { dy: dyn, x: xn, w, docIds }, { ...NO_NORM, xFromProjection: true }) as tf.Tensor[];
        assert.deepEqual([backend.storedValues(xn).bf16, backend.storedValues(dyn).bf16], [true, true], 'CanonConvGrad made no float32 copy of x or dy');
        assert.deepEqual([backend.storedValues(dx).bf16, backend.storedValues(dxP).bf16], [false, true], 'dx in bf16 only for a projection\'s output');
        backend.setMatmulPrecision('fp32');
        const [xv, dyv] = [xn, dyn].map((h) => tf.tensor(h.dataSync(), h.shape));  // the same values in float32
        const [wantDx, wantDw] = tf.engine().runKernel(CANON_CONV_GRAD, { dy: dyv, x: xv, w, docIds }, NO_NORM) as tf.Tensor[];
        assert.deepEqual(Array.from(dx.dataSync()), Array.from(wantDx.dataSync()), 'dx as from float32 copies');
        assert.deepEqual(Array.from(dw.dataSync()), Array.from(wantDw.dataSync()), 'dw as from float32 copies');
        assert.deepEqual(Array.from(dxP.dataSync()), Array.from(wantDx.dataSync(), bf16), 'a projection\'s dx: the float32 dx rounded to bf16');
        assert.deepEqual(Array.from(dwP.dataSync()), Array.from(wantDw.dataSync()), 'a projection\'s dw: unchanged');
        tf.dispose([xn, dyn, dx, dw, dxP, dwP, xv, dyv, wantDx, wantDw]);
      } finally {
        backend.setMatmulPrecision('fp32');
        tf.dispose([x, dy, w, docIds]);
      }
    });

    it('every Canon position of the model but B (A, C, D: B runs inside CanonAttentionInputs) runs it, with the loss and gradients of --fused off; only D before SwiGLU runs it again in the backward', async () => {
      await useBackend(B);
      const cfg = T.resolveConfig('tiny', {
        vocabSize: 64, bosToken: 63, numLayers: 2, modelDim: 32, numHeads: 2, headDim: 16, kvHeads: 2, noAttnLayers: [],
        noMlpLayers: [], skip: 'none', valueEmbeds: 0, backout: false, canon: 'ABCD', seqLen: 16, windowBlock: 4,
        windowSchedule: [2], windowPattern: 'SL', valWindow: 2,
      }).cfg;
      // A, C, D in 2 layers, once each way: A and C norm their input inside the kernel and D applies relu² (the relu2 MLP),
      // so each keeps only x and nothing runs again in the backward; with SwiGLU, D is checkpointed with its activation and
      // runs again
      await checkModelKernels(cfg, [0, 9, 16], {
        [CANON_CONV]: 3 * 2, [CANON_CONV_GRAD]: 3 * 2, [CANON_ATTENTION_INPUTS]: 2, [CANON_ATTENTION_INPUTS_GRAD]: 2, ReluSquared: 0,
        ReluSquaredGrad: 0,
      });
      // with A, the attention gate's 12 normed channels are CanonConv's second output (attr leading): no RMSNorm of them
      // each way (their RMSNormGrad read x and the residual's gradient so far and wrote dx whole), no slice and no
      // zero-padded gradient (PadV2: none, the smear's being fused too); A's and C's norms finish in CanonConvGrad
      // (RMSNorm and RMSNormGrad: 2 each left, 4 when the gate's channels had their own, 8 RMSNormGrad when CanonConvGrad
      // returned dz)
      await checkModelKernels({ ...cfg, canon: 'AC' }, [0, 9, 16], { [CANON_CONV]: 2 * 2, [CANON_CONV_GRAD]: 2 * 2, PadV2: 0, RMSNorm: 2, RMSNormGrad: 2 });
      await checkModelKernels({ ...cfg, mlp: 'swiglu' }, [0, 9, 16], { [CANON_CONV]: 3 * 2 + 2, [CANON_CONV_GRAD]: 3 * 2 });
    });

    it('adds w\'s gradient so far (a gradient accumulation\'s) in dw\'s store, as tfjs\'s Add would, with and without the row norm', async () => {
      await useBackend(B);
      const [b, t, c] = [2, 300, 12], attrsOf = (rowNorm: boolean) => ({ ...NO_NORM, rowNorm });
      const [x, dy] = [randFloat([b, t, c]), randFloat([b, t, c])].map((h) => tf.tensor(h.values, h.shape));
      const w = tf.tensor(randFloat([c, 4], -0.5, 0.5).values, [c, 4]), wAccumulated = tf.tensor(randFloat([c, 4]).values, [c, 4]);
      const docIds = tf.tensor(randomDocIds(b, t).values, [b, t], 'int32');
      for (const rowNorm of [false, true]) {
        const grad = (extra: tf.NamedTensorMap) => tf.engine().runKernel(CANON_CONV_GRAD, { dy, x, w, docIds, ...extra }, attrsOf(rowNorm)) as tf.Tensor[];
        const [plain, summed] = [grad({}), grad({ wAccumulated })], sum = tf.add(wAccumulated, plain[1]);
        assert.deepEqual(Array.from(summed[1].dataSync()), Array.from(sum.dataSync()), `rowNorm ${rowNorm}: dw with wAccumulated, against the sum + dw`);
        assert.deepEqual(Array.from(summed[0].dataSync()), Array.from(plain[0].dataSync()), `rowNorm ${rowNorm}: dx`);
        tf.dispose([...plain, ...summed, sum]);
      }
      assert.throws(() => tf.engine().runKernel(CANON_CONV_GRAD, { dy, x, w, docIds, wAccumulated: dy }, NO_NORM),
        /CanonConvGrad: wAccumulated float32\[2,300,12\] must have w's shape \[12,4\]/);
      tf.dispose([x, dy, w, wAccumulated, docIds]);
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const x = tf.zeros([2, 5, 8]), w = tf.zeros([8, 4]), docIds = tf.zeros([2, 5], 'int32');
        const run = (kernel: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap = NO_NORM) => () => tf.engine().runKernel(kernel, inputs, attrs);
        assert.throws(run(CANON_CONV, { x, w: tf.zeros([8, 3]), docIds }), /kernel CanonConv\(.*CanonConv: w must be \[8,4\] for x float32\[2,5,8\], got float32\[8,3\]/);
        assert.throws(run(CANON_CONV, { x: tf.zeros([10, 8]), w, docIds }), /CanonConv: x must be \[B,T,C\]/);
        assert.throws(run(CANON_CONV, { x, w, docIds: tf.zeros([2, 5]) }), /CanonConv: docIds must be int32, got float32\[2,5\]/);
        assert.throws(run(CANON_CONV, { x, w, docIds: tf.zeros([2, 4], 'int32') }), /CanonConv: docIds must be \[2,5\]/);
        assert.throws(run(CANON_CONV, { x, w }), /CanonConv: input docIds is missing/);
        assert.throws(run(CANON_CONV_GRAD, { dy: tf.zeros([2, 5, 4]), x, w, docIds }), /CanonConvGrad: dy float32\[2,5,4\] must have x's shape \[2,5,8\]/);
        assert.throws(run(CANON_CONV, { x, w, docIds }, { ...NO_NORM, normChannels: 6, normGroup: 6 }), /CanonConv: a head norm over 6 of 8 channels in heads of 6 \(the kernel takes heads of 4 to 128/);
        assert.throws(run(CANON_CONV_GRAD, { dy: x, x, w, docIds }, { normChannels: 8, normGroup: 4, rowNorm: false, relu2: false }), /CanonConvGrad: attr eps must be a finite number, got undefined/);
        assert.throws(run(CANON_CONV, { x, w, docIds }, { ...NO_NORM, normChannels: 8, normGroup: 4, rowNorm: true }), /CanonConv: a head norm \(over 8 channels\) and the row norm together/);
        assert.throws(run(CANON_CONV_GRAD, { dy: x, x, w, docIds }, { ...NO_NORM, rowNorm: true, relu2: true }), /CanonConvGrad: relu2 with a norm/);
        // the leading channels: with the row norm only, a multiple of 4 up to 32, and the gradient needs dLead of their shape
        assert.throws(run(CANON_CONV, { x, w, docIds }, { ...NO_NORM, leading: 4 }), /CanonConv: 4 leading channels without the row norm/);
        assert.throws(run(CANON_CONV, { x, w, docIds }, { ...NO_NORM, rowNorm: true, leading: 6 }), /CanonConv: 6 leading channels of 8 \(the kernel takes a multiple of 4 up to 8\)/);
        assert.throws(run(CANON_CONV_GRAD, { dy: x, x, w, docIds }, { ...NO_NORM, rowNorm: true, leading: 4 }), /CanonConvGrad: input dLead is missing/);
        assert.throws(run(CANON_CONV_GRAD, { dy: x, x, w, docIds, dLead: tf.zeros([2, 5, 8]) }, { ...NO_NORM, rowNorm: true, leading: 4 }),
          /CanonConvGrad: dLead float32\[2,5,8\] must be \[2,5,4\] \(attr leading\)/);
        assert.throws(run(CANON_CONV_GRAD, { dy: x, x, w, docIds, dLead: tf.zeros([2, 5, 4]) }, { ...NO_NORM, rowNorm: true }), /CanonConvGrad: dLead without attr leading/);
      });
    });
  });
}
