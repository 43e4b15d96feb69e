// The fused Canon layer's cuda kernels: 'CanonConv' ({x, w, docIds} → y, or [y, lead] with attr leading) and its gradient
// kernel 'CanonConvGrad' ({dy, x, w, docIds, dLead?, accumulated?, wAccumulated?} → [dx, dw]), over canon_conv.cu's launchers;
// attrs CanonAttrs (canon_conv.ts: Canon B's head norm, the row norm and its leading channels, and whether x is a
// projection's output). x, dy and dLead are read as stored (storedValues); y feeds a projection, AttentionInputs, ReLU² or
// SwiGLU at every Canon position, and lead the attention gate's projection: bf16 under bf16 matmul precision
// (makeBf16Output), and so is dx where x is a projection's output.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { booleanAttr, describe, input, numberAttr } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { CANON_CONV, CANON_CONV_GRAD, canonNormFits } from './canon_conv.ts';

/** Rows per partial sum of dw's first pass (kCanonRowsPerPartial in canon_conv.h); the row norm's gradient: a partial
 * per 32 rows, summed in groups of 32 (kCanonRowNormRows, kCanonPartialsPerGroup). */
const CANON_ROWS_PER_PARTIAL = 256, CANON_ROW_NORM_ROWS = 32, CANON_PARTIALS_PER_GROUP = 32;

/** Floats of CanonConvGrad's dw scratch (`partials`) for `rows` rows of C channels. */
export function canonPartialFloats(rows: number, C: number, rowNorm: boolean): number {
  if (!rowNorm) return Math.ceil(rows / CANON_ROWS_PER_PARTIAL) * C * 4;
  const chunks = Math.ceil(rows / CANON_ROW_NORM_ROWS);
  return (chunks + Math.ceil(chunks / CANON_PARTIALS_PER_GROUP)) * C * 4;
}

/** canon_conv.cu's launchers (host.ts is their CPU reference). */
export interface CanonConvNative {
  /** y[r,c] = z[r,c] + Σ_k w[c,k]·z[r−3+k, c] over x [B,T,C], rows r = b·T + t; a tap counts where t−3+k ≥ 0 and
   * docIds (int32 [B,T]) agree; z = x, RMS-normed (eps) in heads of normGroup channels over its first normChannels
   * (0: none) or, with rowNorm, over whole rows; with relu2, y = relu(that)²; x in
   * bf16 where xBf16, y where yBf16; with rowNorm and lead not 0, z's first leadCols channels of each row into lead
   * [B,T,leadCols] (y's type). */
  canonConv(x: number, xBf16: boolean, w: number, docIds: number, y: number, yBf16: boolean, B: number, T: number, C: number,
    normChannels: number, normGroup: number, eps: number, rowNorm: boolean, relu2: boolean, lead: number, leadCols: number): void;
  /** dx (through the norm; with rowNorm plus accumulated, x's gradient so far, where not 0, and its bf16 copy into
   * dxTwin where not 0; with relu2, dy is relu(y)²'s) and dw = Σ_r dy[r,c]·z[r−3+k, c] ([C,4]), summed deterministically
   * through `partials` (canonPartialFloats of scratch), plus dwAccumulated (w's gradient so far) where not 0; dy, x and dx in bf16
   * where flagged; with rowNorm and dLead not 0, dLead [B,T,leadCols] (bf16 where dLeadBf16: lead's gradient) added to z's
   * first channels' gradient. */
  canonConvGrad(dy: number, dyBf16: boolean, x: number, xBf16: boolean, w: number, docIds: number, dx: number, dxBf16: boolean, dw: number,
    dwAccumulated: number, partials: number, B: number, T: number, C: number, normChannels: number, normGroup: number, eps: number, rowNorm: boolean,
    accumulated: number, dxTwin: number, relu2: boolean, dLead: number, dLeadBf16: boolean, leadCols: number): void;
}

/** x (or dy) float32 [B,T,C], w float32 [C,4], docIds int32 [B,T]. */
function checked(kernel: string, inputs: NamedTensorInfoMap, withDy: boolean): { x: TensorInfo; dims: [number, number, number] } {
  const dy = withDy ? input(kernel, inputs, 'dy') : null, x = input(kernel, inputs, 'x'), w = input(kernel, inputs, 'w');
  const docIds = input(kernel, inputs, 'docIds', 'int32');
  if (x.shape.length !== 3) throw new Error(`${kernel}: x must be [B,T,C], got ${describe(x)}`);
  const [B, T, C] = x.shape;
  if (w.shape.join() !== [C, 4].join()) throw new Error(`${kernel}: w must be [${C},4] for x ${describe(x)}, got ${describe(w)}`);
  if (docIds.shape.join() !== [B, T].join()) throw new Error(`${kernel}: docIds must be [${B},${T}], got ${describe(docIds)}`);
  if (dy && !tf.util.arraysEqual(dy.shape, x.shape)) throw new Error(`${kernel}: dy ${describe(dy)} must have x's shape [${x.shape}]`);
  return { x, dims: [B, T, C] };
}

/** The norm's attrs [normChannels, normGroup, eps, rowNorm], relu2 and leading (optional: 0), checked against C. */
function normAttrs(kernel: string, attrs: NamedAttrMap, C: number): { norm: [number, number, number, boolean]; relu2: boolean; leading: number } {
  const channels = numberAttr(kernel, attrs, 'normChannels'), group = numberAttr(kernel, attrs, 'normGroup');
  const rowNorm = booleanAttr(kernel, attrs, 'rowNorm'), relu2 = booleanAttr(kernel, attrs, 'relu2');
  const leading = attrs.leading == null ? 0 : numberAttr(kernel, attrs, 'leading');
  const fits = canonNormFits(channels, group, C, rowNorm, relu2, leading);
  if (fits !== true) throw new Error(`${kernel}: ${fits}`);
  return { norm: [channels, group, numberAttr(kernel, attrs, 'eps'), rowNorm], relu2, leading };
}


export const canonConvKernels: CudaKernel[] = [
  {
    kernelName: CANON_CONV,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, dims } = checked(CANON_CONV, inputs, false);
      const { norm, relu2, leading } = normAttrs(CANON_CONV, attrs, dims[2]);
      const xs = backend.storedValues(x), y = backend.makeBf16Output(x.shape);
      // the attention gate's input at Canon A: bf16 under bf16 precision, as its projection reads it
      const lead = leading ? backend.makeBf16Output([dims[0], dims[1], leading]) : null;
      backend.device.canonConv(xs.ptr, xs.bf16, backend.ptr(inputs.w as TensorInfo), backend.ptr(inputs.docIds as TensorInfo),
        y.ptr, y.bf16, ...dims, ...norm, relu2, lead?.ptr ?? 0, leading);
      return lead ? [y.out, lead.out] : y.out;
    },
  },
  {
    kernelName: CANON_CONV_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, dims } = checked(CANON_CONV_GRAD, inputs, true);
      const [B, T, C] = dims, w = inputs.w as TensorInfo, { norm, relu2, leading } = normAttrs(CANON_CONV_GRAD, attrs, C), rowNorm = norm[3];
      // the second output's gradient, where the forward gave one (attr leading)
      const dLead = leading ? input(CANON_CONV_GRAD, inputs, 'dLead') : null;
      if (dLead && !tf.util.arraysEqual(dLead.shape, [B, T, leading])) {
        throw new Error(`${CANON_CONV_GRAD}: dLead ${describe(dLead)} must be [${B},${T},${leading}] (attr leading)`);
      }
      if (!leading && inputs.dLead != null) throw new Error(`${CANON_CONV_GRAD}: dLead without attr leading`);
      // The row norm's x (Canon A and C: the residual stream) may come with its gradient so far, which dx adds in; w with
      // its gradient so far (a gradient accumulation's earlier micro-steps), which dw adds in
      const acc = inputs.accumulated == null ? null : input(CANON_CONV_GRAD, inputs, 'accumulated');
      if (acc && (!rowNorm || !tf.util.arraysEqual(acc.shape, x.shape))) {
        throw new Error(`${CANON_CONV_GRAD}: accumulated ${describe(acc)} needs the row norm and x's shape [${x.shape}]`);
      }
      const wAcc = inputs.wAccumulated == null ? null : input(CANON_CONV_GRAD, inputs, 'wAccumulated');
      if (wAcc && !tf.util.arraysEqual(wAcc.shape, w.shape)) throw new Error(`${CANON_CONV_GRAD}: wAccumulated ${describe(wAcc)} must have w's shape [${w.shape}]`);
      // Where x is a projection's output (Canon B and D) dx's only readers are its gradient matmuls: bf16 under bf16
      // precision, as they read it; elsewhere float32 (the row norm's with the bf16 copy a matmul reads, where one does)
      const dxBf16 = booleanAttr(CANON_CONV_GRAD, attrs, 'xFromProjection') ? backend.makeBf16Output(x.shape) : null;
      const dx = dxBf16?.out ?? backend.makeOutput(x.shape, 'float32');
      const dw = backend.makeOutput(w.shape, 'float32');
      const xs = backend.storedValues(x), dys = backend.storedValues(inputs.dy as TensorInfo);  // as stored: no float32 copies
      const leads = dLead ? backend.storedValues(dLead) : null;
      backend.withScratch([canonPartialFloats(B * T, C, rowNorm) * 4], (partials) => backend.device.canonConvGrad(dys.ptr, dys.bf16,
        xs.ptr, xs.bf16, backend.ptr(w), backend.ptr(inputs.docIds as TensorInfo), dxBf16?.ptr ?? backend.ptr(dx), dxBf16?.bf16 ?? false,
        backend.ptr(dw), wAcc ? backend.ptr(wAcc) : 0, partials, B, T, C, ...norm, acc ? backend.ptr(acc) : 0, rowNorm ? backend.gradientTwin(x, dx) : 0, relu2,
        leads?.ptr ?? 0, leads?.bf16 ?? false, leading));
      return [dx, dw];
    },
  },
];
