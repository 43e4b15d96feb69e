// Fused matmul-and-add alpha·op(a)·op(b) + beta·c: the kernel train_gpt.ts's matMulAdd() (Muon's Newton–Schulz
// terms b·A + c·A² and a·X + B·X) and linear() with a residual (the model's output projections, x + y·W) hand to
// a backend that registers 'MatMulAdd' (runFused): c rides in cuBLASLt's epilogue instead of scaling passes and
// an Add over the product. The composites in train_gpt.ts are the implementation everywhere else and the oracle.
//   {a, b, c}, {alpha, beta, transposeA, transposeB}: a [...batch, m, k], b [...batch, k, n] (either transposed),
//   c [...batch, m, n], the same batch dims.
// Gradient (the model's residual path): dc = beta·dy, and for a and b BatchMatMul's, scaled by alpha:
//   with A = op(a), B = op(b): dA = alpha·dy·Bᵀ, dB = alpha·Aᵀ·dy, transposed back where a or b was. Where b already has
//   a gradient (a weight's sum over the earlier micro-steps: tfjs_node.ts's variableGradsSummed), dB is this op again
//   with that sum as c. dA, the gradient of the activation a (the MLP's hidden layer, the gated attention's output), is
//   stored in bf16 under bf16 matmul precision, as the record's bf16 autograd gives it (§5): its readers (ReluSquaredGrad,
//   SwigluGrad, CanonConvGrad, the gate's backward) take it as stored, which halves the bytes it is written and read in.
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const MATMUL_ADD = 'MatMulAdd';

export interface MatMulAddAttrs { alpha: number; beta: number; transposeA: boolean; transposeB: boolean }

export const matMulAdd: FusedKernelSpec<MatMulAddAttrs> = {
  name: MATMUL_ADD,
  // no broadcast of batch dims (Newton–Schulz and the residual epilogue never need one)
  supports: ({ a, b, c }) => a.rank !== b.rank || a.shape.slice(0, -2).join() !== b.shape.slice(0, -2).join()
    ? `a [${a.shape}] and b [${b.shape}] differ in batch dims` : float32Inputs({ a, b, c }, 'a', 'b', 'c'),
};

/** op(a)·op(b) stored in bf16 under bf16 matmul precision (BatchMatMul's bf16Output): an activation's gradient (this
 * op's and Linear's). */
export function productInBf16(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor {
  return tf.engine().runKernel('BatchMatMul', { a, b }, { transposeA, transposeB, bf16Output: true }) as tf.Tensor;
}

/** alpha·op(a)·op(b) + c by the kernel itself: a gradient's sum in cuBLASLt's epilogue, for the gradients of the ops that
 * only a backend with 'MatMulAdd' runs (this op's and Linear's). */
export function matMulPlus(a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, transposeA: boolean, transposeB: boolean, alpha = 1): tf.Tensor {
  return tf.engine().runKernel(MATMUL_ADD, { a, b, c }, { alpha, beta: 1, transposeA, transposeB } satisfies MatMulAddAttrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}

tf.registerGradient({
  kernelName: MATMUL_ADD,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved, g = dy as tf.Tensor;
    const { alpha, beta, transposeA: tA, transposeB: tB } = attrs as unknown as { alpha: number; beta: number; transposeA: boolean; transposeB: boolean };
    const scaled = (t: tf.Tensor) => (alpha === 1 ? t : t.mul(alpha));
    return {
      a: () => scaled(tA ? productInBf16(b, g, tB, true) : productInBf16(g, b, false, !tB)),
      b: (accumulated?: tf.Tensor) => accumulated
        ? (tB ? matMulPlus(g, a, accumulated, true, tA, alpha) : matMulPlus(a, g, accumulated, !tA, false, alpha))
        : scaled(tB ? tf.matMul(g, a, true, tA) : tf.matMul(a, g, !tA, false)),
      c: () => (beta === 1 ? g.clone() : g.mul(beta)),
    };
  },
});
