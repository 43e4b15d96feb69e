// The head's FP8 matmul in training (record-2025-11.md §3.3): the kernel train_gpt.ts's fp8Head() hands to a backend
// that registers 'Fp8Matmul' (runFused), and its gradient. The composite (train_gpt.ts's fp8HeadComposite: the FP8
// rounding as float32 tfjs ops under tf.customGrad) is the implementation everywhere else and the tests' oracle.
//   inputs x [N, d] (the final normed hidden states) and w [d, V] (the head, stored [in, out]), float32;
//   attrs xScale, wScale, gradScale (the record's fixed scales √d/448, 2⁻⁹, 1/448);
//   forward:  z = (X8·W8)·xScale·wScale with X8 = e4m3(x/xScale), W8 = e4m3(w/wScale);
//   gradient ('Fp8MatmulGrad', one kernel): G8 = e5m2(dy/gradScale), dx = (G8·W8ᵀ)·gradScale·wScale,
//   dw = (X8ᵀ·G8)·xScale·gradScale. The gradient is the matmul's with the quantised operands (straight through the
//   rounding), as the record's.
// The kernels take N, d and V that are multiples of 16 (cuBLASLt's FP8 GEMMs: leading dimensions of 16 bytes); any
// other call runs the composite.
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const FP8_MATMUL = 'Fp8Matmul';
export const FP8_MATMUL_GRAD = 'Fp8MatmulGrad';

export interface Fp8MatmulAttrs { xScale: number; wScale: number; gradScale: number }

export const fp8Matmul: FusedKernelSpec<Fp8MatmulAttrs> = {
  name: FP8_MATMUL,
  supports: ({ x, w }) => {
    if (x.rank !== 2 || w.rank !== 2 || x.shape[1] !== w.shape[0]) return `x [${x.shape}] and w [${w.shape}] are not [N, d] and [d, V]`;
    const [N, d] = x.shape, [, V] = w.shape;
    if (N % 16 || d % 16 || V % 16 || N * d * V === 0) return `N = ${N}, d = ${d}, V = ${V} are not all positive multiples of 16 (cuBLASLt's FP8 GEMMs)`;
    return float32Inputs({ x, w }, 'x', 'w');
  },
};

tf.registerGradient({
  kernelName: FP8_MATMUL,
  inputsToSave: ['x', 'w'],
  gradFunc: (dy, saved, attrs) => {
    const [x, w] = saved;
    const [dx, dw] = tf.engine().runKernel(FP8_MATMUL_GRAD, { dy: dy as tf.Tensor, x, w }, attrs) as tf.Tensor[];
    return { x: () => dx, w: () => dw };
  },
});
