// Muon's blocks ('MuonGather', 'MuonMomentumGather', 'MuonApply', muon_blocks.cu) against their oracles, train_gpt.ts's
// composites of gatherBlocks(), momentumBlocks() and applyBlockUpdates() on the cpu backend, on fresh random matrices: blocks that are whole
// parameters, column blocks (q, k, v), tall blocks (transposed: the MLP's projection, the gates), sizes off the
// kernel's 32-value tiles and, on the GPU, the speedrun's own shapes; random rates, momenta and bf16 rounding. Copies are exact
// and the update is the composite's two float32 roundings, so every target must agree with cpu bit for bit. Also that
// the hook runs the fused kernels and --fused off the composites, and that bad calls fail naming the kernel.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import { checkFusionHook, compare, describeOrSkip, type HostTensor, randFloat, random, targets, useBackend } from '../../../test/cuda_harness.ts';
import { MUON_APPLY, MUON_GATHER, MUON_MOMENTUM_GATHER } from './muon_blocks.ts';

/** Parameters and their blocks, grouped by wide shape as the optimiser groups them. */
interface Layout { shapes: number[][]; groups: T.BlockPlace[][] }

/** Each parameter cut into column blocks of `widths` (its whole width where none), grouped by wide shape. */
function layout(params: { shape: number[]; widths?: number[] }[]): Layout {
  const groups = new Map<string, T.BlockPlace[]>();
  params.forEach(({ shape: [rows, cols], widths }, param) => {
    let col = 0;
    for (const width of widths ?? [cols]) {
      const key = (rows > width ? [width, rows] : [rows, width]).join('x');
      groups.set(key, [...(groups.get(key) ?? []), { param, col, width }]);
      col += width;
    }
  });
  return { shapes: params.map((p) => p.shape), groups: [...groups.values()] };
}

const exact = { rtol: 0, atol: 0 };

for (const target of targets) {
  describeOrSkip(`Muon blocks (MuonGather, MuonMomentumGather, MuonApply) on ${target.name}`, target.skip, () => {
    const B = target.name;
    const LAYOUTS: [string, Layout][] = [
      // q, k, v of a merged projection and o (square blocks); the MLP's up and (tall) down projection; gates [12, 6]
      ['attention, MLP and gates', layout([{ shape: [40, 120], widths: [40, 40, 40] }, { shape: [40, 40] }, { shape: [40, 160] },
        { shape: [160, 40] }, { shape: [12, 6] }, { shape: [12, 6] }])],
      // off the 32-value tiles, tall and wide blocks of one wide shape, blocks of different widths in one parameter
      ['odd sizes', layout([{ shape: [70, 33] }, { shape: [33, 140], widths: [70, 70] }, { shape: [5, 77], widths: [70, 7] }, { shape: [7, 5] }])],
      ...(B === 'cuda' ? [['the speedrun\'s shapes', layout([{ shape: [768, 2304], widths: [768, 768, 768] }, { shape: [768, 768] },
        { shape: [768, 3072] }, { shape: [3072, 768] }, { shape: [12, 6] }])] as [string, Layout]] : []),
    ];

    it('gatherBlocks equals the composite on cpu, bit for bit', async () => {
      for (const [label, { shapes, groups }] of LAYOUTS) {
        const inputs = shapes.map((s) => randFloat(s));
        for (const [g, places] of groups.entries()) {
          await compare(B, `${label}, group ${g}`, inputs, (...xs) => T.gatherBlocks(xs as tf.Tensor2D[], places), exact);
        }
      }
    });

    it('applyBlockUpdates equals the composite on cpu, bit for bit (random rates, bf16 rounding on and off)', async () => {
      for (const [label, { shapes, groups }] of LAYOUTS) {
        const params = shapes.map((s) => randFloat(s));
        const updates: HostTensor[] = groups.map((places) => {
          const rows = shapes[places[0].param][0], width = places[0].width;
          return randFloat([places.length, ...(rows > width ? [width, rows] : [rows, width])]);
        });
        const rates = shapes.map(() => -(10 ** (-4 * random())) * (random() < 0.9 ? 1 : -1));
        const round = shapes.map(() => random() < 0.5);
        await compare(B, label, [...params, ...updates], (...xs) => T.applyBlockUpdates(xs.slice(0, params.length) as tf.Tensor2D[],
          xs.slice(params.length) as tf.Tensor3D[], groups, rates, round), exact);
      }
    });

    it('momentumBlocks equals the composite on cpu, bit for bit: the buffers and the stacked Nesterov updates (random momentum, bf16 parameters)', async () => {
      for (const [label, { shapes, groups }] of LAYOUTS) {
        const inputs = [...shapes.map((s) => randFloat(s)), ...shapes.map((s) => randFloat(s))];
        const momentum = 0.8 + 0.19 * random(), round = shapes.map(() => random() < 0.5);
        await compare(B, label, inputs, (...xs) => {
          const { stacked, bufs } = T.momentumBlocks(xs.slice(0, shapes.length) as tf.Tensor2D[], xs.slice(shapes.length) as tf.Tensor2D[], groups, momentum, round);
          return [...stacked, ...bufs];
        }, exact);
      }
    });

    it('the hook runs one fused kernel each, --fused off the composites; bad calls fail naming the kernel', async () => {
      await useBackend(B);
      const { shapes, groups } = LAYOUTS[0][1];
      const xs = shapes.map((s) => tf.randomNormal(s as [number, number], 0, 1, "float32", Math.floor(random() * 2 ** 31)) as tf.Tensor2D);
      const updates = groups.map((places) => T.gatherBlocks(xs, places));
      await checkFusionHook(() => T.gatherBlocks(xs, groups[0]), { fused: [MUON_GATHER], composite: ['Slice', 'Pack'] });
      await checkFusionHook(() => T.gatherBlocks(xs, groups[1]), { fused: [MUON_GATHER], composite: ['Transpose', 'Pack'] });
      await checkFusionHook(() => T.applyBlockUpdates(xs, updates, groups, shapes.map(() => -0.01), shapes.map(() => true)),
        { fused: [MUON_APPLY], composite: ['Unpack', 'Transpose', 'Concat', 'Multiply', 'Add'] });
      await checkFusionHook(() => { const r = T.momentumBlocks(xs, xs, groups, 0.9, shapes.map((_, k) => k % 2 === 0)); return [...r.stacked, ...r.bufs]; },
        { fused: [MUON_MOMENTUM_GATHER], composite: ['Multiply', 'Add', 'Pack'] });
      assert.throws(() => tf.engine().runKernel(MUON_MOMENTUM_GATHER, { g0: xs[0], b0: xs[1] }, { params: [0], cols: [0], widths: [120], groupSizes: [1], momentum: 0.9, roundBf16: [false] }),
        /MuonMomentumGather: b0, … must be the gradients' shapes/);
      assert.throws(() => tf.engine().runKernel(MUON_MOMENTUM_GATHER, { g0: xs[0], b0: xs[0] }, { params: [0], cols: [0], widths: [40], groupSizes: [1], momentum: 0.9, roundBf16: [false] }),
        /MuonMomentumGather: column 40 of parameter 0 float32\[40,120\] is in no block/);

      const gather = (attrs: object, inputs: tf.NamedTensorMap = { x0: xs[0], x1: xs[1] }) => () => tf.engine().runKernel(MUON_GATHER, inputs, attrs as tf.NamedAttrMap);
      assert.throws(gather({ params: [0, 1], cols: [0, 0], widths: [40, 40] }, { x0: xs[0], x1: tf.zeros([40, 40], 'int32') }), /MuonGather: x1 must be float32 of rank 2, got int32\[40,40\]/);
      assert.throws(gather({ params: [0, 2], cols: [0, 0], widths: [40, 40] }), /MuonGather: block 1 names tensor 2, of 2/);
      assert.throws(gather({ params: [0], cols: [100], widths: [40] }), /MuonGather: block 0's columns \[100, 140\) are not within float32\[40,120\]/);
      assert.throws(gather({ params: [0, 1], cols: [0], widths: [40, 40] }), /MuonGather: attrs params, cols and widths must have one entry a block/);
      assert.throws(gather({ params: [0, 0], cols: [0, 40], widths: [40, 80] }), /MuonGather: the blocks differ in their wide shape: \[40,40\] and \[40,80\]/);
      assert.throws(gather({ params: [0], cols: [0], widths: [40] }, {}), /MuonGather: input x0 is missing/);

      const qkvUpdate = updates[0].slice([0, 0, 0], [3, 40, 40]);  // group 0's first three blocks are p0's
      const apply = (places: T.BlockPlace[], attrs: object = {}) => () => tf.engine().runKernel(MUON_APPLY, { p0: xs[0], u0: qkvUpdate },
        { params: places.map((b) => b.param), cols: places.map((b) => b.col), widths: places.map((b) => b.width), groupSizes: [3],
          rates: [-0.01], roundBf16: [false], ...attrs } as tf.NamedAttrMap);
      const qkv = groups[0].filter((b) => b.param === 0);
      assert.throws(apply([qkv[0], qkv[1], qkv[1]]), /MuonApply: column 40 of parameter 0 is in two blocks/);
      assert.throws(apply(qkv, { groupSizes: [2] }), /MuonApply: attr groupSizes must give each group's blocks \(3\), got 2/);
      assert.throws(apply([qkv[0], qkv[1], { param: 0, col: 80, width: 20 }]), /MuonApply: block 2 is \[20,40\] seen wide, its update u0 \[3,40,40\]/);
      assert.throws(apply(qkv, { rates: [Number.NaN] }), /MuonApply: attr rates must have a finite number a parameter/);
      assert.throws(apply(qkv, { roundBf16: [] }), /MuonApply: attr roundBf16 must have a boolean a parameter \(1\)/);
      tf.dispose([...xs, ...updates, qkvUpdate]);
    });
  });
}
