// The bf16 rounding's cuda kernel: 'RoundBf16' ({x} → y, any shape, float32), over round_bf16.cu's launcher.
import * as tf from '@tensorflow/tfjs-core';
import { input } from '../check.ts';
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
    kernelFunc: ({ inputs, backend }) => {
      const x = input(ROUND_BF16, inputs, 'x');
      const y = backend.makeOutput(x.shape, 'float32');
      backend.device.roundBf16(backend.ptr(x), backend.ptr(y), tf.util.sizeFromShape(x.shape));
      return y;
    },
  },
];
