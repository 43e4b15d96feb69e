// train_gpt.ts's checkpoint(): the value and the gradients of the function it wraps, bit for bit, with only its inputs
// kept for the backward (the function's intermediates are made again there).
import '../tfjs_node.ts';
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../train_gpt.ts';
import { random } from './seed.ts';

const n = 4096;
/** Intermediates the tape keeps: x·w's exponential (Exp keeps its output) and its product with x (Square's input). */
const f = (x: tf.Tensor, w: tf.Tensor) => x.mul(w).exp().mul(x).square();
const fresh = (shape: number[]) => tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 2 * random() - 1), shape);

it('gives the wrapped function\'s value and gradients, bit for bit', async () => {
  await tf.setBackend('cpu');
  const [x, w, dy] = [fresh([n]), fresh([n]), fresh([n])];
  const plain = tf.grads(f)([x, w], dy), wrapped = tf.grads((a: tf.Tensor, b: tf.Tensor) => T.checkpoint(f, a, b))([x, w], dy);
  assert.deepEqual(T.checkpoint(f, x, w).dataSync(), f(x, w).dataSync(), 'value');
  plain.forEach((g, i) => assert.deepEqual(wrapped[i].dataSync(), g.dataSync(), `gradient ${i}`));
  tf.dispose([x, w, dy, ...plain, ...wrapped]);
});

it('keeps only its inputs for the backward', async () => {
  await tf.setBackend('cpu');
  const [x, w] = [fresh([n]), fresh([n])];
  /** Bytes of the distinct tensors the tape keeps at the end of the forward of sum(g(x, w)). */
  const keptBytes = (g: (x: tf.Tensor, w: tf.Tensor) => tf.Tensor) => {
    let bytes = 0;
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => {
      const y = g(a, b).sum();
      const tape = (tf.engine() as unknown as { state: { activeTape: { saved?: tf.Tensor[] }[] } }).state.activeTape, seen = new Set<object>();
      for (const node of tape) for (const t of node.saved ?? []) if (!seen.has(t.dataId)) { seen.add(t.dataId); bytes += 4 * t.size; }
      return y;
    })([x, w]);
    tf.dispose(grads);
    return bytes;
  };
  // x, w and the sum's input, against those and the two intermediates
  assert.equal(keptBytes((a, b) => T.checkpoint(f, a, b)), 3 * 4 * n);
  assert.equal(keptBytes(f), 5 * 4 * n);
  tf.dispose([x, w]);
});
