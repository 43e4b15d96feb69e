// The fused scaled add's cuda kernels: 'ScaledAdd' ({x, z, a, b} → a·x + b·z) and its gradient kernel
// 'ScaledAddGrad' ({dy, x, z, a, b} → [dx, dz, da, db]), over scaled_add.cu's launchers.
import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { describe, input } from '../check.ts';
import type { CudaKernel, CudaKernelArgs } from '../../kernels/types.ts';
import { SCALED_ADD, SCALED_ADD_GRAD } from './scaled_add.ts';

/** scaled_add.cu's launchers (host.ts is their CPU reference). */
export interface ScaledAddNative {
  /** y = a·x + b·z over n floats; a and b are one float each on the device. */
  scaledAdd(x: number, z: number, a: number, b: number, y: number, n: number): void;
  /** dx = a·dy, dz = b·dy over n floats; da = Σ dy·x, db = Σ dy·z (one float each, in a fixed order; 0 for n = 0). */
  scaledAddGrad(dy: number, x: number, z: number, a: number, b: number, dx: number, dz: number, da: number, db: number, n: number): void;
}

/** The tensors `names` (x, z; dy first for the gradient), float32 of one shape, and the scalars a and b. */
function checked(kernel: string, inputs: CudaKernelArgs['inputs'], names: string[]): [TensorInfo[], TensorInfo, TensorInfo] {
  const ts = names.map(name => input(kernel, inputs, name));
  ts.forEach((t, i) => {
    if (!tf.util.arraysEqual(t.shape, ts[0].shape)) {
      throw new Error(`${kernel}: ${names[0]} and ${names[i]} must have one shape, got ${describe(ts[0])} and ${describe(t)}`);
    }
  });
  const [a, b] = ['a', 'b'].map(name => {
    const t = input(kernel, inputs, name);
    if (t.shape.length !== 0) throw new Error(`${kernel}: ${name} must be a float32 scalar (shape []), got ${describe(t)}`);
    return t;
  });
  return [ts, a, b];
}

export const scaledAddKernels: CudaKernel[] = [
  {
    kernelName: SCALED_ADD,
    kernelFunc: ({ inputs, backend }) => {
      const [[x, z], a, b] = checked(SCALED_ADD, inputs, ['x', 'z']);
      const y = backend.makeOutput(x.shape, 'float32');
      backend.device.scaledAdd(backend.ptr(x), backend.ptr(z), backend.ptr(a), backend.ptr(b), backend.ptr(y), tf.util.sizeFromShape(x.shape));
      return y;
    },
  },
  {
    kernelName: SCALED_ADD_GRAD,
    kernelFunc: ({ inputs, backend }) => {
      const [[dy, x, z], a, b] = checked(SCALED_ADD_GRAD, inputs, ['dy', 'x', 'z']);
      const dx = backend.makeOutput(x.shape, 'float32'), dz = backend.makeOutput(x.shape, 'float32');
      const da = backend.makeOutput([], 'float32'), db = backend.makeOutput([], 'float32');
      backend.device.scaledAddGrad(backend.ptr(dy), backend.ptr(x), backend.ptr(z), backend.ptr(a), backend.ptr(b),
        backend.ptr(dx), backend.ptr(dz), backend.ptr(da), backend.ptr(db), tf.util.sizeFromShape(x.shape));
      return [dx, dz, da, db];
    },
  },
];
