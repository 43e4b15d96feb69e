// The projection-to-an-activation's cuda kernel 'Linear' (linear.ts): x·w through the device's cuBLASLt matmul in the
// backend's matmul precision, the output bf16 only under bf16 (makeBf16Output), else float32.
import * as tf from '@tensorflow/tfjs-core';
import { describe, input } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { LINEAR } from './linear.ts';

export const linearKernels: CudaKernel[] = [{
  kernelName: LINEAR,
  kernelFunc: ({ inputs, backend }) => {
    const x = input(LINEAR, inputs, 'x'), w = input(LINEAR, inputs, 'w');
    if (x.shape.length < 1 || w.shape.length !== 2 || x.shape[x.shape.length - 1] !== w.shape[0]) {
      throw new Error(`${LINEAR}: x [..., k] and w [k, m] must agree on k, got x ${describe(x)} and w ${describe(w)}`);
    }
    const [k, m] = w.shape, n = tf.util.sizeFromShape(x.shape.slice(0, -1)), precision = backend.precisionCode;
    const y = backend.makeBf16Output([...x.shape.slice(0, -1), m]);
    if (n * m > 0) {
      backend.device.matmul(backend.matmulOperand(x, precision), backend.matmulOperand(w, precision), y.ptr,
        1, n, m, k, false, false, 0, 0, precision, y.bf16);
    }
    return y.out;
  },
}];
