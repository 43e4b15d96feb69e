// The fused RMSNorm's cuda kernels: 'RMSNorm' and its gradient kernel 'RMSNormGrad', over the last axis, over
// rms_norm.cu's launchers; with attr channels, the output is each row's first `channels` normed channels (the mean over
// the whole row) and the gradient's dy has that many; with attr leading, a second output holds each row's first
// `leading` normed channels and the gradient takes its gradient as the input dLead. x, dy and dLead are read as stored
// (storedValues: a bf16-only activation stays bf16, and so does the projections' bf16 gradient of y, ops/linear); y is
// bf16 only under bf16 matmul precision (makeBf16Output): the record's norm outputs bf16 (§5), and the projections read
// it so.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { describe, input, numberAttr, positiveIntAttr } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { RMS_NORM, RMS_NORM_GRAD } from './rms_norm.ts';

/** rms_norm.cu's launchers (host.ts is their CPU reference). */
export interface RmsNormNative {
  /** y = x·(mean(x²) + eps)^-½ over rows of `cols`, y the first outCols ≤ cols of each row (x in bf16 where xBf16, y
   * where yBf16); where lead is not 0 (outCols = cols), also y's first leadCols channels of each row into lead [rows,
   * leadCols] (y's type). */
  rmsNorm(x: number, xBf16: boolean, y: number, yBf16: boolean, rows: number, cols: number, outCols: number, eps: number,
    lead: number, leadCols: number): void;
  /** dx = the norm's gradient from dy [rows, outCols] (0 past them; in bf16 where dyBf16) plus, where dLead is not 0, dLead
   * [rows, leadCols] (in bf16 where dLeadBf16) in the first channels; plus acc (float32 of x's shape: x's gradient so
   * far) where acc is not 0; and dx rounded to bf16 into dxBf16 where that is not 0. */
  rmsNormGrad(dy: number, dyBf16: boolean, x: number, xBf16: boolean, acc: number, dx: number, rows: number, cols: number,
    outCols: number, eps: number, dLead: number, dLeadBf16: boolean, leadCols: number, dxBf16: number): void;
}

function rowsCols(kernel: string, inputs: NamedTensorInfoMap): [TensorInfo, number, number] {
  const x = input(kernel, inputs, 'x');
  const cols = x.shape.length === 0 ? 1 : x.shape[x.shape.length - 1];
  return [x, cols === 0 ? 0 : tf.util.sizeFromShape(x.shape) / cols, cols];
}

/** The output's channels: attr channels (1 … cols), or every channel where it is absent. */
function outChannels(kernel: string, attrs: NamedAttrMap, cols: number): number {
  if (attrs.channels == null) return cols;
  const channels = positiveIntAttr(kernel, attrs, 'channels');
  if (channels > cols) throw new Error(`${kernel}: attr channels ${channels} is more than the row's ${cols}`);
  return channels;
}

/** attr leading (1 … cols, with every channel as the first output), or 0 where it is absent. */
function leadingChannels(kernel: string, attrs: NamedAttrMap, cols: number, outCols: number): number {
  if (attrs.leading == null) return 0;
  const leading = positiveIntAttr(kernel, attrs, 'leading');
  if (leading > cols) throw new Error(`${kernel}: attr leading ${leading} is more than the row's ${cols}`);
  if (outCols !== cols) throw new Error(`${kernel}: attrs leading and channels together (leading needs the whole normed row)`);
  return leading;
}

export const rmsNormKernels: CudaKernel[] = [
  {
    kernelName: RMS_NORM,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const [x, rows, cols] = rowsCols(RMS_NORM, inputs), outCols = outChannels(RMS_NORM, attrs, cols);
      const leading = leadingChannels(RMS_NORM, attrs, cols, outCols);
      const xs = backend.storedValues(x), y = backend.makeBf16Output([...x.shape.slice(0, -1), outCols]);
      const lead = leading ? backend.makeBf16Output([...x.shape.slice(0, -1), leading]) : null;
      backend.device.rmsNorm(xs.ptr, xs.bf16, y.ptr, y.bf16, rows, cols, outCols, numberAttr(RMS_NORM, attrs, 'eps'),
        lead ? lead.ptr : 0, leading);
      return lead ? [y.out, lead.out] : y.out;
    },
  },
  {
    kernelName: RMS_NORM_GRAD,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const [x, rows, cols] = rowsCols(RMS_NORM_GRAD, inputs), dy = input(RMS_NORM_GRAD, inputs, 'dy');
      const outCols = outChannels(RMS_NORM_GRAD, attrs, cols), leading = leadingChannels(RMS_NORM_GRAD, attrs, cols, outCols);
      if (!tf.util.arraysEqual(dy.shape, [...x.shape.slice(0, -1), outCols])) {
        throw new Error(`${RMS_NORM_GRAD}: dy ${describe(dy)} is not x ${describe(x)} with ${outCols} channels`);
      }
      const dLead = leading ? input(RMS_NORM_GRAD, inputs, 'dLead') : null;
      if (dLead && !tf.util.arraysEqual(dLead.shape, [...x.shape.slice(0, -1), leading])) {
        throw new Error(`${RMS_NORM_GRAD}: dLead ${describe(dLead)} is not x ${describe(x)} with ${leading} channels`);
      }
      const dx = backend.makeOutput(x.shape, 'float32');
      const xs = backend.storedValues(x), dys = backend.storedValues(dy), leads = dLead ? backend.storedValues(dLead) : null;
      const acc = inputs.accumulated == null ? null : input(RMS_NORM_GRAD, inputs, 'accumulated');
      if (acc && !tf.util.arraysEqual(acc.shape, x.shape)) throw new Error(`${RMS_NORM_GRAD}: accumulated [${acc.shape}] and x [${x.shape}] differ in shape`);
      backend.device.rmsNormGrad(dys.ptr, dys.bf16, xs.ptr, xs.bf16, acc ? backend.ptr(acc) : 0, backend.ptr(dx), rows, cols, outCols,
        numberAttr(RMS_NORM_GRAD, attrs, 'eps'), leads ? leads.ptr : 0, leads ? leads.bf16 : false, leading, backend.gradientTwin(x, dx));
      return dx;
    },
  },
];
