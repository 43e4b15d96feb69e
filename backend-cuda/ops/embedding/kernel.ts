// The embedding lookup's cuda kernels (embedding.ts): 'Embedding' ({table, ids} → rows) over the device's gather, or
// embedding.cu's launcher where the table is stored in bf16 (a bf16 parameter as Adam stores it: read as it is, no float32
// copy), and 'EmbeddingGrad' ({dy, ids, accumulated?} → the table's gradient) over its copy (or fill, or accumulated's own
// buffer taken over) and segmentSum.
import * as tf from '@tensorflow/tfjs-core';
import { DTYPE } from '../../device.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { describe, input, numberAttr } from '../check.ts';
import { EMBEDDING, EMBEDDING_GRAD } from './embedding.ts';

/** embedding.cu's launcher (host.ts is its CPU reference). */
export interface EmbeddingNative {
  /** out [n, d] float32 = the rows of the bf16 table [V, d] at ids [n], widened; an id outside [0, V) gives zeros. */
  embeddingBf16(table: number, ids: number, out: number, V: number, d: number, n: number): void;
}

export const embeddingKernels: CudaKernel[] = [
  {
    kernelName: EMBEDDING,
    kernelFunc: ({ inputs, backend }) => {
      const table = input(EMBEDDING, inputs, 'table'), ids = input(EMBEDDING, inputs, 'ids', 'int32');
      if (table.shape.length !== 2) throw new Error(`${EMBEDDING}: table must be a float32 matrix [V, d], got ${describe(table)}`);
      const [V, d] = table.shape, n = tf.util.sizeFromShape(ids.shape);
      const out = backend.makeOutput([...ids.shape, d], 'float32'), stored = backend.storedValues(table);
      if (n * d === 0) return out;
      if (stored.bf16) backend.device.embeddingBf16(stored.ptr, backend.ptr(ids), backend.ptr(out), V, d, n);
      else backend.device.gather(4, stored.ptr, backend.ptr(ids), backend.ptr(out), 1, 1, V, d, n);
      return out;
    },
  },
  {
    kernelName: EMBEDDING_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const K = EMBEDDING_GRAD, dy = input(K, inputs, 'dy'), ids = input(K, inputs, 'ids', 'int32'), V = numberAttr(K, attrs, 'rows');
      const d = dy.shape[dy.shape.length - 1] ?? 0, n = tf.util.sizeFromShape(ids.shape);
      if (dy.shape.length !== ids.shape.length + 1 || !tf.util.arraysEqual(dy.shape.slice(0, -1), ids.shape)) {
        throw new Error(`${K}: dy must be [...ids' shape, d], got dy ${describe(dy)} and ids ${describe(ids)}`);
      }
      const acc = inputs.accumulated === undefined ? undefined : input(K, inputs, 'accumulated');
      if (acc && !tf.util.arraysEqual(acc.shape, [V, d])) throw new Error(`${K}: accumulated must be float32 [${V},${d}] (the table's shape), got ${describe(acc)}`);
      // accumulated given up (attr inPlace) and no other tensor on its buffer: the rows are added into it; else into a copy
      const taken = acc && attrs.inPlace === true ? backend.takeOver(acc) : null;
      const out = taken ?? backend.makeOutput([V, d], 'float32'), o = backend.ptr(out);
      if (acc && !taken) backend.device.copy(4, backend.ptr(acc), o, [V * d], [1], [1]);
      else if (!acc) backend.device.fill(DTYPE.float32, o, V * d, 0);
      if (n * d > 0) backend.device.segmentSum(DTYPE.float32, backend.ptr(dy), backend.ptr(ids), o, n, d, V);
      return out;
    },
  },
];
