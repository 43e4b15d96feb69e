// A fused op, the pattern for the rest: a custom tfjs kernel name with its own registered gradient.
// train_gpt.ts's rmsNorm() runs this kernel where the active backend has it and its composite tfjs
// version elsewhere (cpu, wasm); the composite is also the tests' oracle.
//   rmsNorm(x) = x / sqrt(mean(x², last axis) + eps)   (the model's weightless norm())
// attr channels (optional): only each row's first `channels` of that (the attention gate's input where the block needs
// no other part of the normed row). attr leading (optional): a second output, each row's first `leading` normed channels
// (the gate's input where the block needs the whole normed row too).
// Gradient ('RMSNormGrad'): dx = rstd·dy − x·rstd³·mean(dy·x) (dy 0 past `channels`; with leading, dy plus the second
// output's gradient dLead in its channels), plus the input `accumulated` where given.
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const RMS_NORM = 'RMSNorm';
export const RMS_NORM_GRAD = 'RMSNormGrad';

export interface RmsNormAttrs { eps: number; channels?: number; leading?: number }

export const rmsNorm: FusedKernelSpec<RmsNormAttrs> = { name: RMS_NORM, supports: inputs => float32Inputs(inputs, 'x') };

tf.registerGradient({
  kernelName: RMS_NORM,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved;
    // with attr leading, dy is both outputs' gradients (tfjs gives zeros for an unused one)
    const [dyNormed, dLead] = Array.isArray(dy) ? dy : [dy];
    // accumulated: x's gradient so far (tfjs_node.ts's backward: the residual add's), summed into dx by the kernel
    return { x: (accumulated?: tf.Tensor) => tf.engine().runKernel(RMS_NORM_GRAD,
      { dy: dyNormed, x, ...(dLead ? { dLead } : {}), ...(accumulated ? { accumulated } : {}) }, attrs) as tf.Tensor };
  },
});
