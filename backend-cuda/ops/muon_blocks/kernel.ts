// The Muon blocks' cuda kernels: 'MuonGather' ({x0, …} → the blocks stacked wide), 'MuonMomentumGather' ({g0, …, b0, …}
// → the Nesterov updates stacked wide a group, and the new buffers) and 'MuonApply' ({p0, …, u0, …} → the updated
// parameters), over muon_blocks.cu's launchers, which take every block's place as one table.
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { describe } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { MUON_APPLY, MUON_GATHER, MUON_MOMENTUM_GATHER, numbered } from './muon_blocks.ts';

/** muon_blocks.cu's launchers (host.ts is their CPU reference). */
export interface MuonBlocksNative {
  /** Each row of 6 numbers {source, rows, cols, col, width, stacked}: the source's columns [col, col + width), turned
   * wide (transposed where rows > width), written to the stacked slot. */
  muonGather(table: Float64Array): void;
  /** Each row of 9 numbers {g, rows, cols, col, width, stacked, buf, bufOut, roundBf16}: buf' = μ·buf + (1−μ)·g into
   * bufOut's block and (1−μ)·g + μ·buf' turned wide into the stacked slot (g and buf' rounded to bf16 where roundBf16 ≠ 0). */
  muonMomentumGather(table: Float64Array, momentum: number): void;
  /** Each row of 9 numbers {p, rows, cols, col, width, stacked, out, rate, roundBf16}: out's block = p's + rate·the
   * stacked slot turned back (float32 products and sums), rounded to bf16 where roundBf16 ≠ 0. */
  muonApply(table: Float64Array): void;
}

/** The float32 tensors of `rank` prefix0, prefix1, … (at least one). */
function matrices(kernel: string, inputs: NamedTensorInfoMap, prefix: string, rank = 2): TensorInfo[] {
  const out = numbered(inputs, prefix);
  if (out.length === 0) throw new Error(`${kernel}: input ${prefix}0 is missing`);
  out.forEach((t, i) => {
    if (t.dtype !== 'float32' || t.shape.length !== rank) throw new Error(`${kernel}: ${prefix}${i} must be float32 of rank ${rank}, got ${describe(t)}`);
  });
  return out;
}

/** The blocks' places (attrs params, cols, widths), each checked against its tensor; with each block's wide shape. */
function places(kernel: string, attrs: NamedAttrMap, sources: TensorInfo[], count?: number) {
  const [params, cols, widths] = ['params', 'cols', 'widths'].map((name) => {
    const a = attrs[name];
    if (!Array.isArray(a) || a.some((v) => typeof v !== 'number' || !Number.isInteger(v))) {
      throw new Error(`${kernel}: attr ${name} must be a list of integers, got ${String(a)}`);
    }
    return a as number[];
  });
  if (cols.length !== params.length || widths.length !== params.length || (count !== undefined && params.length !== count)) {
    throw new Error(`${kernel}: attrs params, cols and widths must have one entry a block (${count ?? params.length}), got ${params.length}, ${cols.length} and ${widths.length}`);
  }
  return params.map((param, b) => {
    const x = sources[param], col = cols[b], width = widths[b];
    if (!x) throw new Error(`${kernel}: block ${b} names tensor ${param}, of ${sources.length}`);
    const [rows, all] = x.shape;
    if (col < 0 || width < 1 || col + width > all) throw new Error(`${kernel}: block ${b}'s columns [${col}, ${col + width}) are not within ${describe(x)}`);
    return { param, x, rows, cols: all, col, width, wide: rows > width ? [width, rows] : [rows, width] };
  });
}

const muonGatherKernel: CudaKernel = {
  kernelName: MUON_GATHER,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const blocks = places(MUON_GATHER, attrs, matrices(MUON_GATHER, inputs, 'x'));
    if (blocks.length === 0) throw new Error(`${MUON_GATHER}: no blocks`);
    const [r, c] = blocks[0].wide;
    const odd = blocks.find((b) => b.wide[0] !== r || b.wide[1] !== c);
    if (odd) throw new Error(`${MUON_GATHER}: the blocks differ in their wide shape: [${blocks[0].wide}] and [${odd.wide}]`);
    const out = backend.makeOutput([blocks.length, r, c], 'float32'), base = backend.ptr(out);
    backend.device.muonGather(Float64Array.from(blocks.flatMap((b, i) =>
      [backend.ptr(b.x), b.rows, b.cols, b.col, b.width, base + i * r * c * 4])));
    return out;
  },
};

/**
 * The grouped blocks of MuonMomentumGather and MuonApply over `params` (attrs groupSizes, params, cols, widths), every
 * column of every parameter in one block, each of its group's wide shape: with each block's group and index in it, and
 * the groups' stacked shapes [n_g, r_g, c_g] (`given`: MuonApply's updates'; else each group's first block's).
 */
function groupedBlocks(kernel: string, attrs: NamedAttrMap, params: TensorInfo[], given: number[][] | null, groupLabel: (g: number) => string) {
  const groupSizes = attrs.groupSizes as number[];
  if (!Array.isArray(groupSizes) || groupSizes.some((n) => !Number.isInteger(n) || n < 1)
    || (given && (groupSizes.length !== given.length || groupSizes.some((n, g) => n !== given[g][0])))) {
    throw new Error(`${kernel}: attr groupSizes must give each group's blocks (${given ? given.map((u) => u[0]) : 'positive'}), got ${String(groupSizes)}`);
  }
  const blocks = places(kernel, attrs, params, groupSizes.reduce((a, b) => a + b, 0));
  let first = 0;
  const shapes = given ?? groupSizes.map((n) => { const [r, c] = blocks[first].wide; first += n; return [n, r, c]; });
  const covered = params.map((p) => new Uint8Array(p.shape[1]));
  let b = 0;
  const grouped = shapes.flatMap((shape, g) => Array.from({ length: groupSizes[g] }, (_, i) => {
    const blk = blocks[b++];
    if (blk.wide[0] !== shape[1] || blk.wide[1] !== shape[2]) {
      throw new Error(`${kernel}: block ${b - 1} is [${blk.wide}] seen wide, its ${groupLabel(g)} [${shape}]`);
    }
    const seen = covered[blk.param];
    for (let k = blk.col; k < blk.col + blk.width; k++) {
      if (seen[k]++) throw new Error(`${kernel}: column ${k} of parameter ${blk.param} is in two blocks`);
    }
    return { ...blk, group: g, index: i };
  }));
  covered.forEach((seen, p) => {
    const k = seen.indexOf(0);
    if (k >= 0) throw new Error(`${kernel}: column ${k} of parameter ${p} ${describe(params[p])} is in no block`);
  });
  return { blocks: grouped, shapes };
}

/** Attr `name`: one boolean a parameter. */
function flagsAttr(kernel: string, attrs: NamedAttrMap, name: string, count: number): boolean[] {
  const a = attrs[name];
  if (!Array.isArray(a) || a.length !== count || a.some((v) => typeof v !== 'boolean')) {
    throw new Error(`${kernel}: attr ${name} must have a boolean a parameter (${count}), got ${String(a)}`);
  }
  return a as boolean[];
}

const muonMomentumGatherKernel: CudaKernel = {
  kernelName: MUON_MOMENTUM_GATHER,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const K = MUON_MOMENTUM_GATHER, grads = matrices(K, inputs, 'g'), bufs = matrices(K, inputs, 'b');
    if (bufs.length !== grads.length || bufs.some((t, i) => t.shape.join() !== grads[i].shape.join())) {
      throw new Error(`${K}: b0, … must be the gradients' shapes (${grads.map(describe)}), got ${bufs.map(describe)}`);
    }
    const momentum = attrs.momentum;
    if (typeof momentum !== 'number' || !Number.isFinite(momentum)) throw new Error(`${K}: attr momentum must be a finite number, got ${String(momentum)}`);
    const round = flagsAttr(K, attrs, 'roundBf16', grads.length);
    const { blocks, shapes } = groupedBlocks(K, attrs, grads, null, (g) => `group ${g}'s stacked update`);
    const stacked = shapes.map((shape) => backend.makeOutput(shape, 'float32')), newBufs = bufs.map((t) => backend.makeOutput(t.shape, 'float32'));
    backend.device.muonMomentumGather(Float64Array.from(blocks.flatMap((blk) => {
      const [, r, c] = shapes[blk.group];
      return [backend.ptr(blk.x), blk.rows, blk.cols, blk.col, blk.width, backend.ptr(stacked[blk.group]) + blk.index * r * c * 4,
        backend.ptr(bufs[blk.param]), backend.ptr(newBufs[blk.param]), round[blk.param] ? 1 : 0];
    })), momentum);
    return [...stacked, ...newBufs];
  },
};

const muonApplyKernel: CudaKernel = {
  kernelName: MUON_APPLY,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const params = matrices(MUON_APPLY, inputs, 'p'), updates = matrices(MUON_APPLY, inputs, 'u', 3);
    const rates = attrs.rates as number[];
    if (!Array.isArray(rates) || rates.length !== params.length || rates.some((v) => typeof v !== 'number' || !Number.isFinite(v))) {
      throw new Error(`${MUON_APPLY}: attr rates must have a finite number a parameter (${params.length}), got ${String(rates)}`);
    }
    const round = flagsAttr(MUON_APPLY, attrs, 'roundBf16', params.length);
    const { blocks } = groupedBlocks(MUON_APPLY, attrs, params, updates.map((u) => u.shape), (g) => `update u${g}`);
    const outs = params.map((p) => backend.makeOutput(p.shape, 'float32'));
    backend.device.muonApply(Float64Array.from(blocks.flatMap((blk) => {
      const [, r, c] = updates[blk.group].shape;
      return [backend.ptr(blk.x), blk.rows, blk.cols, blk.col, blk.width, backend.ptr(updates[blk.group]) + blk.index * r * c * 4,
        backend.ptr(outs[blk.param]), Math.fround(rates[blk.param]), round[blk.param] ? 1 : 0];
    })));
    return outs;
  },
};

export const muonBlocksKernels: CudaKernel[] = [muonGatherKernel, muonMomentumGatherKernel, muonApplyKernel];
