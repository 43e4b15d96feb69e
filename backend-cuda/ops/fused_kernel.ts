// What train_gpt.ts knows of a fused kernel: its name and the calls it supports. Each op's folder exports one
// such spec per forward kernel (from its backend-neutral <op>.ts, which also registers the gradient), and
// train_gpt.ts's runFused() hands a call to the kernel only where the current backend registers that name
// and the spec supports the call; otherwise the composite runs (said once). No backend code is imported.
import * as tf from '@tensorflow/tfjs-core';

export interface FusedKernelSpec<A extends object = tf.NamedAttrMap> {
  /** The tfjs kernel name a backend registers. */
  name: string;
  /** true, or why the fused kernel cannot take this call (e.g. a head size it was not built for). */
  supports(inputs: tf.NamedTensorMap, attrs: A): true | string;
}

/** A gradient thunk that sums (tfjs_node.ts's backward): handed its input's gradient so far, a lookup of another
 * input's, for a kernel that sums several inputs' in one run, and whether the gradient so far is the backward's alone and
 * dropped once the thunk returns (a kernel may then add into it in place). */
export type SummingThunk = (accumulated?: tf.Tensor, soFar?: (input: string) => tf.Tensor | undefined, consumable?: boolean) => tf.Tensor;

/**
 * The gradients of a node whose one kernel computes several inputs' (ScaledAddGrad, CausalAttentionGrad,
 * AttentionInputsGrad), shared by its thunks: `run(sums)` runs the kernel with the named inputs' gradients so far added
 * in its stores. The first thunk to ask runs it and the others take its results, or run it again where tfjs's own
 * backward (higher orders: a tidy per thunk) freed them. output(i) is the kernel's output i; summing(i, input, others)
 * the thunk of an input whose gradient sums: it runs the kernel with its sum so far and those of `others` (tfjs_node.ts's
 * lookup), and where the results came without its sum (another thunk ran first: an input that is the same tensor as an
 * earlier one), adds it with an Add, as tfjs's backward would.
 */
export function sharedGradients(run: (sums: Partial<Record<string, tf.Tensor>>) => tf.Tensor[]) {
  let results: tf.Tensor[] | null = null, added: Partial<Record<string, tf.Tensor>> = {};
  const ready = (i: number) => results !== null && !results[i].isDisposed;
  const runWith = (sums: Partial<Record<string, tf.Tensor>>) => { added = sums; return (results = run(sums)); };
  const output = (i: number) => (ready(i) ? results! : runWith({}))[i];
  const summing = (i: number, input: string, others: string[] = []): SummingThunk => (accumulated, soFar) => {
    if (!ready(i)) runWith(Object.fromEntries([...others.map((o) => [o, soFar?.(o)]), [input, accumulated]].filter(([, t]) => t)));
    return !accumulated || added[input] === accumulated ? results![i] : tf.add(accumulated, results![i]);
  };
  return { output, summing };
}

/** Every named input is float32: what most fused kernels take (int32 ids and targets are checked by name). */
export function float32Inputs(inputs: tf.NamedTensorMap, ...names: string[]): true | string {
  for (const name of names) {
    const t = inputs[name];
    if (t && t.dtype !== 'float32') return `${name} is ${t.dtype}, the kernel takes float32`;
  }
  return true;
}
