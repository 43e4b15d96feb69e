// The FP8 head matmul's cuda kernels: 'Fp8Matmul' ({x, w} → z) and its gradient kernel 'Fp8MatmulGrad' ({dy, x, w} →
// [dx, dw]), over fp8_matmul.cu's quantisation launcher and the device's cuBLASLt FP8 GEMM (matmulFp8, native/matmul.cc).
// cuBLASLt's FP8 GEMMs take both operands with the contraction dimension contiguous, so the quantisation writes the
// layout each GEMM needs (row-major, transposed or both) into scratch bytes freed after the call (stream-ordered):
//   forward   z [N,V]  = X8 [N,d] · (W8ᵀ [V,d])ᵀ           e4m3 × e4m3, fast accumulation (as the record's forward)
//   gradient  dx [N,d] = G8 [N,V] · (W8 [d,V])ᵀ            e5m2 × e4m3
//             dw [d,V] = X8ᵀ [d,N] · (G8ᵀ [V,N])ᵀ          e4m3 × e5m2 (e5m2 × e5m2 has no cuBLASLt kernel; none is needed)
// The outputs are float32: logits and dx are read by the loss and RMSNorm's gradient, not by matmuls (the port keeps
// its activations in float32; the record's are bf16). dy is read as stored: the fused cross-entropy writes dlogits in
// bf16 only under bf16 matmul precision, and widening them would cost a pass over [N,V] and an N·V·4-byte buffer.
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { describe, input, numberAttr } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { FP8_MATMUL, FP8_MATMUL_GRAD } from './fp8_matmul.ts';

/** fp8_matmul.cu's launcher (host.ts is its CPU reference). */
export interface Fp8MatmulNative {
  /** out [rows, cols] and/or outT [cols, rows] (0: not written) = the FP8 codes of x/scale (the float32 quotient),
   * e4m3 or, where e5m2, e5m2, ties to even, non-saturating (beyond the range: e4m3 NaN, e5m2 ±inf); x float32, or
   * bf16 where xBf16; rows and cols multiples of 4. */
  fp8Quantise(x: number, xBf16: boolean, rows: number, cols: number, scale: number, e5m2: boolean, out: number, outT: number): void;
}

/** x [N,d] and w [d,V] float32 (and dy [N,V]), N, d and V positive multiples of 16. */
function checked(kernel: string, inputs: NamedTensorInfoMap, withDy: boolean): { x: TensorInfo; w: TensorInfo; N: number; d: number; V: number } {
  const x = input(kernel, inputs, 'x'), w = input(kernel, inputs, 'w');
  if (x.shape.length !== 2 || w.shape.length !== 2 || x.shape[1] !== w.shape[0]) {
    throw new Error(`${kernel}: x must be [N,d] and w [d,V], got x ${describe(x)} and w ${describe(w)}`);
  }
  const [N, d] = x.shape, V = w.shape[1];
  if (N % 16 || d % 16 || V % 16 || N * d * V === 0) throw new Error(`${kernel}: N = ${N}, d = ${d}, V = ${V} must be positive multiples of 16`);
  if (withDy) {
    const dy = input(kernel, inputs, 'dy');
    if (dy.shape.join() !== `${N},${V}`) throw new Error(`${kernel}: dy ${describe(dy)} must be [N,V] = [${N},${V}]`);
  }
  return { x, w, N, d, V };
}

const scales = (kernel: string, attrs: NamedAttrMap) =>
  ({ xScale: numberAttr(kernel, attrs, 'xScale'), wScale: numberAttr(kernel, attrs, 'wScale'), gradScale: numberAttr(kernel, attrs, 'gradScale') });

export const fp8MatmulKernels: CudaKernel[] = [
  {
    kernelName: FP8_MATMUL,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, w, N, d, V } = checked(FP8_MATMUL, inputs, false), { xScale, wScale } = scales(FP8_MATMUL, attrs);
      const dev = backend.device, xs = backend.storedValues(x), ws = backend.storedValues(w);
      const z = backend.makeBf16Output([N, V]);  // bf16 logits under bf16 precision, as the record's (§3.3)
      backend.withScratch([N * d, V * d], (x8, w8t) => {
        dev.fp8Quantise(xs.ptr, xs.bf16, N, d, xScale, false, x8, 0);
        dev.fp8Quantise(ws.ptr, ws.bf16, d, V, wScale, false, 0, w8t);
        dev.matmulFp8(x8, false, w8t, false, z.ptr, z.bf16, N, V, d, xScale * wScale, true, 0);
      });
      return z.out;
    },
  },
  {
    kernelName: FP8_MATMUL_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, w, N, d, V } = checked(FP8_MATMUL_GRAD, inputs, true), { xScale, wScale, gradScale } = scales(FP8_MATMUL_GRAD, attrs);
      const dev = backend.device, xs = backend.storedValues(x), ws = backend.storedValues(w), gs = backend.storedValues(inputs.dy as TensorInfo);
      const dx = backend.makeOutput([N, d], 'float32'), dw = backend.makeOutput([d, V], 'float32');
      backend.withScratch([N * V, N * V, d * V, N * d], (g8, g8t, w8, x8t) => {
        dev.fp8Quantise(gs.ptr, gs.bf16, N, V, gradScale, true, g8, g8t);  // one read of dy for both layouts
        dev.fp8Quantise(ws.ptr, ws.bf16, d, V, wScale, false, w8, 0);
        dev.fp8Quantise(xs.ptr, xs.bf16, N, d, xScale, false, 0, x8t);
        dev.matmulFp8(g8, true, w8, false, backend.ptr(dx), false, N, d, V, gradScale * wScale, false, 0);
        dev.matmulFp8(x8t, false, g8t, true, backend.ptr(dw), false, d, V, N, xScale * gradScale, false, 0);
      });
      return [dx, dw];
    },
  },
];
