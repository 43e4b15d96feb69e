// The fused scaled add's cuda kernels: 'ScaledAdd' ({x, z, a, b} → a·x + b·z) and its gradient kernel
// 'ScaledAddGrad' ({dy, x, z, a, b, xAccumulated?, zAccumulated?} → [dx, dz, da, db]), over scaled_add.cu's launchers. x and z are
// read as stored; the sum of two bf16-only tensors is bf16-only (the residual stream under bf16 precision: the record's,
// §5).
import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { describe, input } from '../check.ts';
import type { CudaKernel, CudaKernelArgs } from '../../kernels/types.ts';
import { SCALED_ADD, SCALED_ADD_GRAD } from './scaled_add.ts';

/** scaled_add.cu's launchers (host.ts is their CPU reference). */
export interface ScaledAddNative {
  /** y = a·x + b·z over n values; a and b are one float each on the device; x, z and y in bf16 where flagged. */
  scaledAdd(x: number, xBf16: boolean, z: number, zBf16: boolean, a: number, b: number, y: number, yBf16: boolean, n: number): void;
  /** dx = a·dy (+ xAcc), dz = b·dy (+ zAcc) (x's and z's gradients so far, where not 0) over n values; da = Σ dy·x,
   * db = Σ dy·z (one float each, in a fixed order; 0 for n = 0); dx and dz rounded to bf16 into dxBf16 and dzBf16 where
   * those are not 0. */
  scaledAddGrad(dy: number, x: number, xBf16: boolean, z: number, zBf16: boolean, a: number, b: number, xAcc: number, zAcc: number,
    dx: number, dz: number, da: number, db: number, n: number, dxBf16: number, dzBf16: number): void;
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
      // x and z as stored; the sum of two bf16-only tensors (the residual stream under bf16 precision, §5) is bf16-only too
      const xs = backend.storedValues(x), zs = backend.storedValues(z), half = xs.bf16 && zs.bf16 ? backend.makeBf16Only(x.shape) : null;
      const y = half?.out ?? backend.makeOutput(x.shape, 'float32');
      backend.device.scaledAdd(xs.ptr, xs.bf16, zs.ptr, zs.bf16, backend.ptr(a), backend.ptr(b), half ? half.ptr : backend.ptr(y), !!half,
        tf.util.sizeFromShape(x.shape));
      return y;
    },
  },
  {
    kernelName: SCALED_ADD_GRAD,
    kernelFunc: ({ inputs, backend }) => {
      // xAccumulated, zAccumulated (optional): x's and z's gradients so far, which dx and dz then include (scaled_add.ts's
      // gradient)
      const sums = ['xAccumulated', 'zAccumulated'].filter((name) => inputs[name] != null);
      const [[dy, x, z, ...given], a, b] = checked(SCALED_ADD_GRAD, inputs, ['dy', 'x', 'z', ...sums]);
      const sumOf = (name: string) => { const i = sums.indexOf(name); return i < 0 ? 0 : backend.ptr(given[i]); };
      const dx = backend.makeOutput(x.shape, 'float32'), dz = backend.makeOutput(x.shape, 'float32');
      const da = backend.makeOutput([], 'float32'), db = backend.makeOutput([], 'float32');
      const xs = backend.storedValues(x), zs = backend.storedValues(z);
      backend.device.scaledAddGrad(backend.ptr(dy), xs.ptr, xs.bf16, zs.ptr, zs.bf16, backend.ptr(a), backend.ptr(b),
        sumOf('xAccumulated'), sumOf('zAccumulated'), backend.ptr(dx), backend.ptr(dz), backend.ptr(da), backend.ptr(db),
        tf.util.sizeFromShape(x.shape), backend.gradientTwin(x, dx), backend.gradientTwin(z, dz));
      return [dx, dz, da, db];
    },
  },
];
