// Fused attention output gate y = o·σ(g): the kernel train_gpt.ts's headGate() hands to a backend that
// registers 'HeadGate' (runFused), and its gradient. The composite o.mul(tf.sigmoid(g).expandDims(3)) is the
// implementation everywhere else and the tests' oracle.
//   inputs o [B,T,H,h] (the attention's output) and g [B,T,H] (the gate's logits), float32;
//   gradient ('HeadGateGrad', one kernel): do = dy·σ(g), dg = σ(g)(1 − σ(g))·Σ_h dy·o.
// The gradient kernel runs once in gradFunc (both thunks take its outputs; see scaled_add.ts).
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const HEAD_GATE = 'HeadGate';
export const HEAD_GATE_GRAD = 'HeadGateGrad';

export const headGate: FusedKernelSpec = { name: HEAD_GATE, supports: inputs => float32Inputs(inputs, 'o', 'g') };

tf.registerGradient({
  kernelName: HEAD_GATE,
  inputsToSave: ['o', 'g'],
  gradFunc: (dy, saved) => {
    const [o, g] = saved;
    const [dO, dg] = tf.engine().runKernel(HEAD_GATE_GRAD, { dy: dy as tf.Tensor, o, g }, {}) as tf.Tensor[];
    return { o: () => dO, g: () => dg };
  },
});
