import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { bytesPerElement } from '../backend.ts';
import { broadcastTo, cast } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

// out = condition ? t : e. tf.where broadcasts all three first; a rank-1 condition over the
// outer axis (TensorFlow's row select) is broadcast here.
export const selectConfig: CudaKernel = {
  kernelName: 'Select',
  kernelFunc: ({ inputs, backend }) => {
    const cond = inputs.condition as TensorInfo;
    const t = inputs.t as TensorInfo, e = inputs.e as TensorInfo;
    const dtype = tf.upcastType(t.dtype, e.dtype);
    const size = tf.util.sizeFromShape(t.shape);
    let c = cond.dtype === 'bool' ? cond : cast(backend, cond, 'bool');
    if (tf.util.sizeFromShape(c.shape) !== size) {
      const shape = c.shape.length === 1 ? [c.shape[0], ...t.shape.slice(1).map(() => 1)] : c.shape;
      const view = { ...c, shape };
      const b = broadcastTo(backend, view, t.shape);
      if (c !== cond) backend.disposeIntermediateTensorInfo(c);
      c = b;
    }
    const t2 = t.dtype === dtype ? t : cast(backend, t, dtype);
    const e2 = e.dtype === dtype ? e : cast(backend, e, dtype);
    const out = backend.makeOutput(t.shape, dtype);
    backend.device.select(bytesPerElement(dtype), backend.ptr(c), backend.ptr(t2), backend.ptr(e2), backend.ptr(out), size);
    for (const x of [c, t2, e2]) if (x !== cond && x !== t && x !== e) backend.disposeIntermediateTensorInfo(x);
    return out;
  },
};
