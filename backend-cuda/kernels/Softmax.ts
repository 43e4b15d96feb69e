import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { cast } from '../kernel_utils.ts';
import type { CudaKernel } from './types.ts';

// Over the last axis (the only one tf.softmax supports); its gradient is tfjs's composite.
export const softmaxConfig: CudaKernel = {
  kernelName: 'Softmax',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const logits = inputs.logits as TensorInfo;
    const dim = attrs.dim as number;
    const rank = logits.shape.length;
    if (rank > 0 && dim !== -1 && dim !== rank - 1) throw new Error(`Softmax over axis ${dim} of a rank-${rank} tensor (only the last axis is supported)`);
    const x = logits.dtype === 'float32' ? logits : cast(backend, logits, 'float32');
    const cols = rank === 0 ? 1 : logits.shape[rank - 1];
    const out = backend.makeOutput(logits.shape, 'float32');
    const size = tf.util.sizeFromShape(logits.shape);
    backend.device.softmax(backend.ptr(x), backend.ptr(out), cols === 0 ? 0 : size / cols, cols);
    if (x !== logits) backend.disposeIntermediateTensorInfo(x);
    return out;
  },
};
