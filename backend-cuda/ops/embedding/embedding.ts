// Embedding lookup, the kernel train_gpt.ts's embed() hands to a backend that registers 'Embedding' (runFused), for its
// gradient: tf.gather's (tfjs: UnsortedSegmentSum into a zeroed table) made each micro-step of a gradient accumulation
// a fresh [V, d] table and then an Add of it to the sum so far (tfjs_node.ts's variableGradsSummed hands that sum to
// the thunks that sum). 'EmbeddingGrad' starts from the sum instead: one copy of it where the zeroed table and the Add
// read and wrote the table four times (the speedrun's four tables of 50,304 × 768). tf.gather is the composite
// everywhere else and the oracle.
//   {table [V, d] float32, ids int32 [...]} → table's rows at ids [..., d] (an id outside [0, V) reads zeros, as
//   GatherV2's kernel); on cuda a table stored in bf16 only (a bf16 parameter, §5) is read as stored, rows widened.
// Gradient 'EmbeddingGrad' ({dy [..., d], ids, accumulated? [V, d]}, {rows: V, inPlace?}) → the table's gradient:
// accumulated (or zeros) plus each dy row added at its id, by atomic adds (the order of a row's additions is not fixed,
// as UnsortedSegmentSum's); ids get none. inPlace: the caller gives accumulated up (tfjs_node.ts's backward, where it is
// the backward's alone): the rows are added into its buffer, which the result takes over, where no other tensor shares
// it (a micro-step's copy of four 50,304 × 768 tables gone); else into a copy.
import * as tf from '@tensorflow/tfjs-core';
import type { FusedKernelSpec, SummingThunk } from '../fused_kernel.ts';

export const EMBEDDING = 'Embedding';
export const EMBEDDING_GRAD = 'EmbeddingGrad';

export const embedding: FusedKernelSpec = {
  name: EMBEDDING,
  supports: ({ table, ids }) => table.rank !== 2 || table.dtype !== 'float32' ? `table ${table.dtype}[${table.shape}] is not a float32 matrix`
    : ids.dtype !== 'int32' ? `ids are ${ids.dtype}, the kernel takes int32` : true,
};

tf.registerGradient({
  kernelName: EMBEDDING,
  inputsToSave: ['table', 'ids'],  // the table for its row count: a reference to the parameter, no copy
  gradFunc: (dy, saved) => {
    const [table, ids] = saved;
    const tableGradient: SummingThunk = (accumulated, _soFar, consumable) => tf.engine().runKernel(EMBEDDING_GRAD,
      { dy: dy as tf.Tensor, ids, ...(accumulated ? { accumulated } : {}) }, { rows: table.shape[0], inPlace: !!consumable }) as tf.Tensor;
    return { table: tableGradient, ids: () => tf.zeros(ids.shape) };  // integer ids get no gradient
  },
});
