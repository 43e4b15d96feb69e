// Muon's blocks between the parameters and the stacked batches it orthogonalises: the kernels train_gpt.ts's
// gatherBlocks() and applyBlockUpdates() hand to a backend that registers them (runFused); their composites there
// (Slice, Transpose and Stack; Unstack, Transpose, Concat, ScaledAdd and the bf16 rounding) are the implementation
// everywhere else and the tests' oracle. A block is the columns [col, col + width) of a 2-D parameter, seen wide
// (transposed where it has more rows than columns).
//   'MuonGather' {x0, x1, …} (float32 [rows, cols] each), attrs params, cols, widths (one entry a block: its tensor's
//                index, first column, width) → [n, r, c]: every block turned wide, stacked (they share one wide shape)
//   'MuonMomentumGather' {g0, …, b0, …}: each Muon parameter's gradient and momentum buffer (float32 [rows, cols]);
//                attrs groupSizes, params, cols, widths (the groups' blocks in order, every column of a parameter in one
//                block), momentum and roundBf16 (one a parameter) → [the Nesterov updates' blocks stacked wide, a tensor
//                a group, …, buf'0, …]: MuonMomentum's buf' = μ·buf + (1−μ)·g and (1−μ)·g + μ·buf' (g and buf'
//                rounded to bf16 where roundBf16), one launch for every parameter
//   'MuonApply'  {p0, …, u0, …}: parameters and one stacked update [n_g, r_g, c_g] a group; attrs groupSizes (blocks an
//                update), params, cols, widths (one entry a block, the groups' blocks in order), rates and roundBf16
//                (one entry a parameter) → [p0', …]: p + rate·(each block's update turned back), in float32 as tfjs's
//                Multiply and Add round it, then rounded to bf16 where roundBf16; every column of a parameter is one
//                block's
// They run on optimiser state, outside any gradient tape: no gradient is registered.
import type * as tf from '@tensorflow/tfjs-core';
import type { FusedKernelSpec } from '../fused_kernel.ts';

export const MUON_GATHER = 'MuonGather';
export const MUON_MOMENTUM_GATHER = 'MuonMomentumGather';
export const MUON_APPLY = 'MuonApply';

export interface MuonGatherAttrs { params: number[]; cols: number[]; widths: number[] }
export interface MuonMomentumGatherAttrs extends MuonGatherAttrs { groupSizes: number[]; momentum: number; roundBf16: boolean[] }
export interface MuonApplyAttrs extends MuonGatherAttrs { groupSizes: number[]; rates: number[]; roundBf16: boolean[] }

/** The inputs named prefix0, prefix1, … in order (the kernels' lists of tensors: x, g and b, p and u). */
export function numbered<T>(inputs: Partial<Record<string, T>>, prefix: string): T[] {
  const out: T[] = [];
  for (let t = inputs[`${prefix}0`]; t; t = inputs[`${prefix}${out.length}`]) out.push(t);
  return out;
}

const float32Matrices = (ts: tf.Tensor[], what: string): true | string => {
  const bad = ts.find((t) => t.dtype !== 'float32' || t.rank !== 2);
  return bad ? `${what} ${bad.dtype}[${bad.shape}] is not a float32 matrix` : true;
};

export const muonGather: FusedKernelSpec<MuonGatherAttrs> = {
  name: MUON_GATHER,
  supports: (inputs) => float32Matrices(numbered(inputs, 'x'), 'a source'),
};
export const muonMomentumGather: FusedKernelSpec<MuonMomentumGatherAttrs> = {
  name: MUON_MOMENTUM_GATHER,
  supports: (inputs) => {
    const grads = float32Matrices(numbered(inputs, 'g'), 'a gradient');
    return grads !== true ? grads : float32Matrices(numbered(inputs, 'b'), 'a momentum buffer');
  },
};
export const muonApply: FusedKernelSpec<MuonApplyAttrs> = {
  name: MUON_APPLY,
  supports: (inputs) => {
    const params = float32Matrices(numbered(inputs, 'p'), 'a parameter');
    const bad = numbered(inputs, 'u').find((t) => t.dtype !== 'float32' || t.rank !== 3);
    return params !== true ? params : bad ? `an update ${bad.dtype}[${bad.shape}] is not float32 [n, r, c]` : true;
  },
};
