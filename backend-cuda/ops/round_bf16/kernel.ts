// The bf16 rounding's cuda kernel: 'RoundBf16' ({x} → y, any shape, float32), over round_bf16.cu's launcher; with attr
// bf16Storage the result is stored in bf16 only (the device's conversion, the same rounding); a bf16-only x is returned as is.
import * as tf from '@tensorflow/tfjs-core';
import { input } from '../check.ts';
import { identity } from '../../kernel_utils.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { ROUND_BF16 } from './round_bf16.ts';

/** round_bf16.cu's launcher (host.ts is its CPU reference). */
export interface RoundBf16Native {
  /** y = float(bf16(x)) over n floats, to nearest even. */
  roundBf16(x: number, y: number, n: number): void;
}

export const roundBf16Kernels: CudaKernel[] = [
  {
    kernelName: ROUND_BF16,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const x = input(ROUND_BF16, inputs, 'x');
      // a bf16-only tensor's values are bf16 already: x itself (no pass)
      if (backend.storedValues(x).bf16) return identity(backend, x);
      const n = tf.util.sizeFromShape(x.shape);
      if (attrs.bf16Storage === true) {  // the rounded values kept in bf16 only: the conversion a bf16 matmul's operand makes
        const y = backend.makeBf16Only(x.shape);
        if (n > 0) backend.device.toBf16(backend.ptr(x), y.ptr, n);
        return y.out;
      }
      const y = backend.makeOutput(x.shape, 'float32');
      backend.device.roundBf16(backend.ptr(x), backend.ptr(y), n);
      return y;
    },
  },
];
