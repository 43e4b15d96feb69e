// The fused soft-capped cross-entropy's cuda kernels (softcap_cross_entropy.cu's launchers):
// 'SoftcapCrossEntropy' (raw logits [N, V] float32, read in bf16 where stored so, targets [N] int32 → scalar loss) and its gradient
// kernel 'SoftcapCrossEntropyGrad' (→ dlogits [N, V]). The forward attaches 2·N floats to the loss
// (each row's logsumexp, then each row's loss) for the gradient; they are freed with the loss.
import type { NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { CudaKernel, CudaKernelArgs } from '../../kernels/types.ts';
import { LOGIT_CAP, SOFTCAP_CROSS_ENTROPY, SOFTCAP_CROSS_ENTROPY_GRAD } from './softcap_cross_entropy.ts';

/** softcap_cross_entropy.cu's launchers (host.ts is their CPU reference). */
export interface SoftcapCrossEntropyNative {
  /** Soft-capped cross-entropy of raw logits [rows, cols] (float32, or bf16 where logitsBf16; cap: LOGIT_CAP) against
   * int32 targets: rowStats (2·rows floats) ← each row's logsumexp, then each row's loss (NaN for a target outside
   * [0, cols)); loss (1 float) ← their sum, or mean (0 for no rows). */
  softcapCrossEntropy(logits: number, logitsBf16: boolean, targets: number, rowStats: number, loss: number, rows: number,
    cols: number, cap: number, scale: number, temp: number, mean: boolean): void;
  /** dlogits = dy·w·(softmax(z) − onehot(target))·dz/dx, w = 1 or 1/rows (mean); rowStats from the forward;
   * dlogits in bf16 where dlogitsBf16. */
  softcapCrossEntropyGrad(dy: number, logits: number, logitsBf16: boolean, targets: number, rowStats: number, dlogits: number,
    dlogitsBf16: boolean, rows: number, cols: number, cap: number, scale: number, temp: number, mean: boolean): void;
}

interface Args { logits: TensorInfo; targets: TensorInfo; rows: number; cols: number; cap: number; scale: number; temp: number; mean: boolean }

function checked({ inputs, attrs }: CudaKernelArgs): Args {
  const logits = inputs.logits as TensorInfo, targets = inputs.targets as TensorInfo;
  if (logits.dtype !== 'float32' || logits.shape.length !== 2) throw new Error(`logits must be float32 [N, V], got ${logits.dtype}[${logits.shape}]`);
  const [rows, cols] = logits.shape;
  if (targets.dtype !== 'int32' || targets.shape.length !== 1 || targets.shape[0] !== rows) {
    throw new Error(`targets must be int32 [${rows}] (one per row of logits), got ${targets.dtype}[${targets.shape}]`);
  }
  if (cols < 1) throw new Error('logits need at least one column');
  const reduction = attrs.reduction as string;
  if (reduction !== 'sum' && reduction !== 'mean') throw new Error(`reduction '${reduction}' is not sum or mean`);
  return { logits, targets, rows, cols, ...logitCapAttrs(attrs), mean: reduction === 'mean' };
}

/** The soft cap's attributes {cap, scale, temp} checked, cap as its native code (also read by ops/fp8_head_loss). */
export function logitCapAttrs(attrs: NamedAttrMap): { cap: number; scale: number; temp: number } {
  const cap = attrs.cap as string;
  if (!(cap in LOGIT_CAP)) throw new Error(`cap '${cap}' is not one of ${Object.keys(LOGIT_CAP).join(', ')}`);
  const scale = Number(attrs.scale), temp = Number(attrs.temp);
  if (cap !== 'none' && !(Number.isFinite(scale) && scale !== 0)) throw new Error(`cap '${cap}' needs a finite non-zero scale, got ${attrs.scale}`);
  if (cap === 'sigmoid' && !(Number.isFinite(temp) && temp !== 0)) throw new Error(`cap 'sigmoid' needs a finite non-zero temp, got ${attrs.temp}`);
  return { cap: LOGIT_CAP[cap as keyof typeof LOGIT_CAP], scale, temp };
}

export const softcapCrossEntropyKernels: CudaKernel[] = [
  {
    kernelName: SOFTCAP_CROSS_ENTROPY,
    kernelFunc: args => {
      const { backend } = args;
      const a = checked(args);
      const loss = backend.makeOutput([], 'float32');
      const rowStats = backend.attachSaved(loss, 2 * a.rows * 4);
      const logits = backend.storedValues(a.logits);  // bf16 as stored (the FP8 head's), else float32
      backend.device.softcapCrossEntropy(logits.ptr, logits.bf16, backend.ptr(a.targets), rowStats, backend.ptr(loss),
        a.rows, a.cols, a.cap, a.scale, a.temp, a.mean);
      return loss;
    },
  },
  {
    kernelName: SOFTCAP_CROSS_ENTROPY_GRAD,
    kernelFunc: args => {
      const { backend, inputs } = args;
      const a = checked(args);
      const dy = inputs.dy as TensorInfo, loss = inputs.loss as TensorInfo;
      if (dy.dtype !== 'float32' || dy.shape.length !== 0) throw new Error(`dy must be a float32 scalar, got ${dy.dtype}[${dy.shape}]`);
      const rowStats = backend.saved(loss);
      if (rowStats === undefined && a.rows > 0) throw new Error('loss carries no saved row statistics (it was not made by SoftcapCrossEntropy on this backend)');
      const dlogits = backend.makeBf16Output(a.logits.shape);  // the head's two gradient matmuls read it
      const logits = backend.storedValues(a.logits);
      backend.device.softcapCrossEntropyGrad(backend.ptr(dy), logits.ptr, logits.bf16, backend.ptr(a.targets), rowStats ?? 0,
        dlogits.ptr, dlogits.bf16, a.rows, a.cols, a.cap, a.scale, a.temp, a.mean);
      return dlogits.out;
    },
  },
];
