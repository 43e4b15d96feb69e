// The training loss's FP8 head as one cuda kernel, 'Fp8HeadLoss' ({x, w, targets} → loss), and its gradient kernel
// 'Fp8HeadLossGrad' ({dy, x, w, loss} → [dx, dw]), composed of the launchers of two other ops, the device's FP8 GEMM
// and one launcher of its own: ops/fp8_matmul's quantisation, matmulFp8 (native/matmul.cc), fp8_head_loss.cu's
// softcapLossGradFp8 (SoftcapCrossEntropy's forward, its gradient and Fp8MatmulGrad's quantisation of it, in one pass
// over the logits on Hopper). Per chunk c of R rows [r, r + R) of the N:
//   z_c   = X8_c · W8 · xScale·wScale                 Fp8Matmul's forward GEMM (e4m3, fast accumulation), bf16 under
//                                                      bf16 precision (the record's), else float32
//   loss_c, and G8_c = e5m2(g_c / gradScale)          softcapLossGradFp8: each row's lse and loss, g_c = dloss/dz_c
//     in both layouts                                  for dy = 1, rounded to bf16 under bf16 precision as the two-op
//                                                      path stores it
//   dx_c  = G8_c · W8ᵀ · gradScale·wScale              the rows of dx
//   dw   += X8_cᵀ · G8_c · xScale·gradScale            accumulated in float32 (beta = 1 after the first chunk)
// loss = Σ_c loss_c in chunk order (deterministic). These are the two-op path's operations on the same values (the
// one-pass kernel's probabilities within a few float32 ulp of theirs), but the chunks' scratch (R·V·(2 + 1 + 1) bytes
// under bf16) replaces its whole [N, V] buffers; dx and dw ride with the loss (attachSaved) until the backward scales
// them by dy.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { BINARY, DTYPE, PRECISION, REDUCE } from '../../device.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { describe, input, numberAttr } from '../check.ts';
import { logitCapAttrs } from '../softcap_cross_entropy/kernel.ts';
import { FP8_HEAD_LOSS, FP8_HEAD_LOSS_GRAD } from './fp8_head_loss.ts';

/** fp8_head_loss.cu's launcher (host.ts is its CPU reference). */
export interface Fp8HeadLossNative {
  /** The soft-capped cross-entropy of logits [rows, cols] (bf16 where logitsBf16): each row's lse and loss in rowStats
   * [2·rows], their sum (÷ rows where mean) in loss; and its gradient for dloss = dy (one float), rounded to bf16 where
   * gBf16, as e5m2 codes of g/gradScale, row-major (g8) and transposed (g8t): softcapCrossEntropy,
   * softcapCrossEntropyGrad and fp8Quantise in one launcher (one pass over the logits on Hopper for cols ≤ 65,536).
   * rows and cols multiples of 4. */
  softcapLossGradFp8(dy: number, logits: number, logitsBf16: boolean, targets: number, rowStats: number, loss: number, gBf16: boolean,
    rows: number, cols: number, cap: number, scale: number, temp: number, mean: boolean, gradScale: number, g8: number, g8t: number): void;
}

/** x [N,d] and w [d,V] float32, N, d and V positive multiples of 16. */
function shapes(kernel: string, x: TensorInfo, w: TensorInfo): { N: number; d: number; V: number } {
  if (x.shape.length !== 2 || w.shape.length !== 2 || x.shape[1] !== w.shape[0]) {
    throw new Error(`${kernel}: x must be [N,d] and w [d,V], got x ${describe(x)} and w ${describe(w)}`);
  }
  const [N, d] = x.shape, V = w.shape[1];
  if (N % 16 || d % 16 || V % 16 || N * d * V === 0) throw new Error(`${kernel}: N = ${N}, d = ${d}, V = ${V} must be positive multiples of 16`);
  return { N, d, V };
}

export const fp8HeadLossKernels: CudaKernel[] = [
  {
    kernelName: FP8_HEAD_LOSS,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const K = FP8_HEAD_LOSS, x = input(K, inputs, 'x'), w = input(K, inputs, 'w'), targets = input(K, inputs, 'targets', 'int32');
      const { N, d, V } = shapes(K, x, w);
      if (targets.shape.join() !== `${N}`) throw new Error(`${K}: targets ${describe(targets)} must be int32 [${N}] (one per row of x)`);
      const xScale = numberAttr(K, attrs, 'xScale'), wScale = numberAttr(K, attrs, 'wScale'), gradScale = numberAttr(K, attrs, 'gradScale');
      const chunkRows = numberAttr(K, attrs, 'chunkRows');
      if (!(chunkRows > 0 && chunkRows % 16 === 0)) throw new Error(`${K}: attr chunkRows must be a positive multiple of 16, got ${chunkRows}`);
      const { cap, scale, temp } = logitCapAttrs(attrs);
      const R = Math.min(chunkRows, N), chunks = Math.ceil(N / R);
      const dev = backend.device, xs = backend.storedValues(x), ws = backend.storedValues(w), xBytes = xs.bf16 ? 2 : 4;
      // z and dlogits in bf16 where the two-op path writes them so (makeBf16Output): z as the record's (§3.3); FP8
      // rounding of dlogits follows either way
      const bf16 = backend.precisionCode === PRECISION.bf16, zBytes = bf16 ? 2 : 4;
      const loss = backend.makeOutput([], 'float32');
      const grads = backend.attachSaved(loss, (N * d + d * V) * 4), dx = grads, dw = grads + N * d * 4;
      const tgt = backend.ptr(targets);
      backend.withScratch([N * d, d * V, V * d, d * R, R * V * zBytes, R * V, R * V, 2 * R * 4, chunks * 4, 4],
        (x8, w8, w8t, x8t, z, g8, g8t, rowStats, parts, one) => {
          dev.fill(DTYPE.float32, one, 1, 1);
          dev.fp8Quantise(xs.ptr, xs.bf16, N, d, xScale, false, x8, 0);
          dev.fp8Quantise(ws.ptr, ws.bf16, d, V, wScale, false, w8, w8t);  // [d,V] for dx, [V,d] for the logits
          for (let c = 0; c < chunks; c++) {
            const r = c * R, rows = Math.min(R, N - r);
            dev.matmulFp8(x8 + r * d, false, w8t, false, z, bf16, rows, V, d, xScale * wScale, true, 0);
            dev.softcapLossGradFp8(one, z, bf16, tgt + r * 4, rowStats, parts + c * 4, bf16, rows, V, cap, scale, temp, false, gradScale, g8, g8t);
            dev.matmulFp8(g8, true, w8, false, dx + r * d * 4, false, rows, d, V, gradScale * wScale, false, 0);
            dev.fp8Quantise(xs.ptr + r * d * xBytes, xs.bf16, rows, d, xScale, false, 0, x8t);  // X8_cᵀ [d, rows]
            dev.matmulFp8(x8t, false, g8t, true, dw, false, d, V, rows, xScale * gradScale, false, c === 0 ? 0 : 1);
          }
          dev.reduce(REDUCE.Sum, DTYPE.float32, parts, backend.ptr(loss), 1, chunks);
        });
      return loss;
    },
  },
  {
    kernelName: FP8_HEAD_LOSS_GRAD,
    kernelFunc: ({ inputs, backend }) => {
      const K = FP8_HEAD_LOSS_GRAD, dy = input(K, inputs, 'dy'), loss = input(K, inputs, 'loss');
      const { N, d, V } = shapes(K, input(K, inputs, 'x'), input(K, inputs, 'w'));
      if (dy.shape.length !== 0) throw new Error(`${K}: dy must be a float32 scalar, got ${describe(dy)}`);
      const grads = backend.saved(loss);
      if (grads === undefined) throw new Error(`${K}: loss carries no saved gradients (it was not made by ${FP8_HEAD_LOSS} on this backend)`);
      const acc = inputs.dwAccumulated === undefined ? undefined : input(K, inputs, 'dwAccumulated');
      if (acc && acc.shape.join() !== `${d},${V}`) throw new Error(`${K}: dwAccumulated must be float32 [${d},${V}] (w's shape), got ${describe(acc)}`);
      const dx = backend.makeOutput([N, d], 'float32'), dw = backend.makeOutput([d, V], 'float32'), g = backend.ptr(dy);
      backend.device.binary(BINARY.Multiply, DTYPE.float32, grads, false, g, false, backend.ptr(dx), [N * d], [1], [0]);
      if (acc) {  // dw = 1·acc + dy·dw₁ in one pass (an Add after the Multiply read and wrote dw twice more)
        const sum = backend.storedValues(acc);
        backend.withScratch([4], (one) => {
          backend.device.fill(DTYPE.float32, one, 1, 1);
          backend.device.scaledAdd(sum.ptr, sum.bf16, grads + N * d * 4, false, one, g, backend.ptr(dw), false, d * V);
        });
      } else {
        backend.device.binary(BINARY.Multiply, DTYPE.float32, grads + N * d * 4, false, g, false, backend.ptr(dw), [d * V], [1], [0]);
      }
      return [dx, dw];
    },
  },
];
