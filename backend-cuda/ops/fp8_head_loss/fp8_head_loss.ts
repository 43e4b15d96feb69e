// The training loss's head in one kernel: the FP8 head matmul (ops/fp8_matmul), the logit soft cap and the summed
// cross-entropy (ops/softcap_cross_entropy), with the gradients of x and w computed in the same pass, chunk by chunk of
// rows: the [N, V] logits (6.6 GB in float32 at the speedrun's 32,768 × 50,304), their gradient and its FP8 codes
// never exist whole (the two-op path keeps the logits from the forward to the backward and adds bf16 dlogits and two
// FP8 layouts of them: 13 GB at once).
//   inputs x [N, d] float32 (the final normed hidden states), w [d, V] float32 (the head), targets int32 [N];
//   attrs the FP8 scales (Fp8MatmulAttrs), the soft cap {cap, scale, temp} (SoftcapCrossEntropyAttrs) and chunkRows;
//   output: the scalar loss = Σ_i lse_i − z_i,t_i over z = cap(FP8 head(x, w)). The kernel keeps with it (attachSaved)
//   dx [N, d] and dw [d, V], the loss's gradients for a unit upstream gradient through Fp8MatmulGrad's FP8 rounding of
//   dloss/dz; its gradient kernel ('Fp8HeadLossGrad', {dy, x, w, loss, dwAccumulated?} → [dx, dw]; x and w give the
//   shapes) scales them by dy, adding w's gradient so far to dw where given (the earlier micro-steps' sum:
//   tfjs_node.ts's variableGradsSummed). (A single output: tfjs uploads zeros from the host for the unused outputs of a
//   kernel of several.)
// The gradient of x and w is dy·dx and dy·dw: the FP8 rounding of dloss/dz happens at the scale of one summed loss, as
// on the record's 8-rank step (dy = 1), whatever dy (1/grad_accum on fewer ranks) scales it by afterwards. The composite
// (train_gpt.ts: fp8Head then softcapCrossEntropy) rounds dy·dloss/dz: the same values where dy = 1, the tests' case;
// else the two differ only where dy moves a gradient across e5m2's subnormal range (below 2⁻¹⁴·gradScale).
// The kernel takes N, d and V that are multiples of 16 (cuBLASLt's FP8 GEMMs) and chunkRows a positive multiple of 16;
// any other call runs the composite.
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, sharedGradients, type FusedKernelSpec } from '../fused_kernel.ts';
import type { Fp8MatmulAttrs } from '../fp8_matmul/fp8_matmul.ts';
import { LOGIT_CAP } from '../softcap_cross_entropy/softcap_cross_entropy.ts';

export const FP8_HEAD_LOSS = 'Fp8HeadLoss';
export const FP8_HEAD_LOSS_GRAD = 'Fp8HeadLossGrad';

export interface Fp8HeadLossAttrs extends Fp8MatmulAttrs {
  cap: string;
  scale: number;
  temp: number;
  /** Rows of logits per chunk: the scratch holds chunkRows × V logits (float32), their gradient and its FP8 codes. */
  chunkRows: number;
}

export const fp8HeadLoss: FusedKernelSpec<Fp8HeadLossAttrs> = {
  name: FP8_HEAD_LOSS,
  supports: ({ x, w, targets }, { cap, chunkRows }) => {
    if (x.rank !== 2 || w.rank !== 2 || x.shape[1] !== w.shape[0]) return `x [${x.shape}] and w [${w.shape}] are not [N, d] and [d, V]`;
    const [N, d] = x.shape, [, V] = w.shape;
    if (N % 16 || d % 16 || V % 16 || N * d * V === 0) return `N = ${N}, d = ${d}, V = ${V} are not all positive multiples of 16 (cuBLASLt's FP8 GEMMs)`;
    if (!(chunkRows > 0 && chunkRows % 16 === 0)) return `chunkRows ${chunkRows} is not a positive multiple of 16`;
    if (!(cap in LOGIT_CAP)) return `no kernel for the logit cap '${cap}'`;
    if (targets.dtype !== 'int32' || targets.shape.join() !== `${N}`) return `targets ${targets.dtype}[${targets.shape}] are not int32 [${N}]`;
    return float32Inputs({ x, w }, 'x', 'w');
  },
};

tf.registerGradient({
  kernelName: FP8_HEAD_LOSS,
  inputsToSave: ['x', 'w'],  // for their shapes: the gradients themselves ride with the loss
  outputsToSave: [true],
  gradFunc: (dy, saved) => {
    const [x, w, loss] = saved;
    const { output, summing } = sharedGradients(({ w: dwAccumulated }) =>
      tf.engine().runKernel(FP8_HEAD_LOSS_GRAD, { dy: dy as tf.Tensor, x, w, loss, ...(dwAccumulated ? { dwAccumulated } : {}) }, {}) as tf.Tensor[]);
    return { x: () => output(0), w: summing(1, 'w'), targets: () => tf.zeros([x.shape[0]]) };  // integer targets get no gradient
  },
});
