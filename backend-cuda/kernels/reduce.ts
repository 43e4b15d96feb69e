// Reductions over any axes: the reduced axes are transposed to the end (when they are not there
// already), then native/reduce.cu reduces contiguous rows. One table row per tfjs kernel.
import * as tf from '@tensorflow/tfjs-core';
import type { DataType, TensorInfo } from '@tensorflow/tfjs-core';
import { cast, reshapeInfo, transpose } from '../kernel_utils.ts';
import { checkDtype, type CudaBackend } from '../backend.ts';
import { DTYPE, REDUCE, type ReduceName } from '../device.ts';
import type { CudaKernel } from './types.ts';

function inputDtype(name: ReduceName, dtype: DataType): DataType {
  switch (name) {
    case 'Sum': case 'Prod': return dtype === 'bool' ? 'int32' : dtype;
    case 'Mean': return 'float32';
    case 'All': case 'Any': return 'bool';
    default: return dtype;
  }
}

export function reduce(backend: CudaBackend, name: ReduceName, x: TensorInfo, axis: number | number[], keepDims: boolean): TensorInfo {
  const axes = tf.util.parseAxisParam(axis, x.shape);
  const [outShape, reduceShape] = tf.backend_util.computeOutAndReduceShapes(x.shape, axes);
  const perm = tf.backend_util.getAxesPermutation(axes, x.shape.length);
  const dtype = inputDtype(name, x.dtype);
  const xc = x.dtype === dtype ? x : cast(backend, x, dtype);
  const xt = perm == null ? xc : transpose(backend, xc, perm);
  const outer = tf.util.sizeFromShape(outShape);
  const inner = tf.util.sizeFromShape(reduceShape);
  const outDtype = name === 'ArgMax' || name === 'ArgMin' ? 'int32' : dtype;
  const out = backend.makeOutput(outShape, outDtype);
  backend.device.reduce(REDUCE[name], DTYPE[checkDtype(dtype, name)], backend.ptr(xt), backend.ptr(out), outer, inner);
  if (xt !== xc) backend.disposeIntermediateTensorInfo(xt);
  if (xc !== x) backend.disposeIntermediateTensorInfo(xc);
  if (!keepDims) return out;
  const kept = reshapeInfo(backend, out, tf.backend_util.expandShapeToKeepDim(outShape, axes));
  backend.disposeIntermediateTensorInfo(out);
  return kept;
}

const NAMES: ReduceName[] = ['Sum', 'Mean', 'Max', 'Min', 'Prod', 'All', 'Any'];

export const reduceKernels: CudaKernel[] = [
  ...NAMES.map((name): CudaKernel => ({
    kernelName: name,
    kernelFunc: ({ inputs, backend, attrs }) =>
      // Max names its axes reductionIndices; the others, axis.
      reduce(backend, name, inputs.x as TensorInfo, (attrs.axis ?? attrs.reductionIndices) as number | number[], attrs.keepDims as boolean),
  })),
  ...(['ArgMax', 'ArgMin'] as const).map((name): CudaKernel => ({
    kernelName: name,
    kernelFunc: ({ inputs, backend, attrs }) => reduce(backend, name, inputs.x as TensorInfo, attrs.axis as number, false),
  })),
];
