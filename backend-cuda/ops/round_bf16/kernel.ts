// The bf16 rounding's cuda kernel: 'RoundBf16' ({x} → y, any shape, float32) stored in bf16 only (backend.ts's
// makeBf16Only): the device's toBf16 (round to nearest even) writes the 2-byte values, and a reader that needs float32
// gets them widened (exact). So what the record keeps in bf16 (§5: the bf16 parameters, every Adam moment) takes half
// its float32 bytes wherever it is made by rounding. An x stored in bf16 only is on the grid already: y is x itself.
import * as tf from '@tensorflow/tfjs-core';
import { identity } from '../../kernel_utils.ts';
import { input } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { ROUND_BF16 } from './round_bf16.ts';

export const roundBf16Kernels: CudaKernel[] = [
  {
    kernelName: ROUND_BF16,
    kernelFunc: ({ inputs, backend }) => {
      const x = input(ROUND_BF16, inputs, 'x');
      if (backend.storedValues(x).bf16) return identity(backend, x);
      const y = backend.makeBf16Only(x.shape);
      backend.device.toBf16(backend.ptr(x), y.ptr, tf.util.sizeFromShape(x.shape));
      return y.out;
    },
  },
];
