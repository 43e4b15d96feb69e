// What train_gpt.ts knows of a fused kernel: its name and the calls it supports. Each op's folder exports one
// such spec per forward kernel (from its backend-neutral <op>.ts, which also registers the gradient), and
// train_gpt.ts's runFused() hands a call to the kernel only where the current backend registers that name
// and the spec supports the call; otherwise the composite runs (said once). No backend code is imported.
import type * as tf from '@tensorflow/tfjs-core';

export interface FusedKernelSpec<A extends object = tf.NamedAttrMap> {
  /** The tfjs kernel name a backend registers. */
  name: string;
  /** true, or why the fused kernel cannot take this call (e.g. a head size it was not built for). */
  supports(inputs: tf.NamedTensorMap, attrs: A): true | string;
}

/** Every named input is float32: what most fused kernels take (int32 ids and targets are checked by name). */
export function float32Inputs(inputs: tf.NamedTensorMap, ...names: string[]): true | string {
  for (const name of names) {
    const t = inputs[name];
    if (t && t.dtype !== 'float32') return `${name} is ${t.dtype}, the kernel takes float32`;
  }
  return true;
}
