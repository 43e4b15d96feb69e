// The fused scaled add's cuda kernels: 'ScaledAdd' ({x, z, a, b} → a·x + b·z), 'ScaledAddPair' ({x, z, ab}) and their
// gradient kernel 'ScaledAddGrad' ({dy, x, z, a, b | ab, xAccumulated?, zAccumulated?, abAccumulated?} → [dx, dz, da, db]
// or [dx, dz, dab]), over scaled_add.cu's launchers. x and z are
// read as stored; the sum of two bf16-only tensors is bf16-only (the residual stream under bf16 precision: the record's,
// §5).
import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { describe, input } from '../check.ts';
import type { CudaKernel, CudaKernelArgs } from '../../kernels/types.ts';
import { SCALED_ADD, SCALED_ADD_GRAD, SCALED_ADD_PAIR } from './scaled_add.ts';
import type { CudaBackend } from '../../backend.ts';

/** scaled_add.cu's launchers (host.ts is their CPU reference). */
export interface ScaledAddNative {
  /** y = a·x + b·z over n values; a and b are one float each on the device; x, z and y in bf16 where flagged. */
  scaledAdd(x: number, xBf16: boolean, z: number, zBf16: boolean, a: number, b: number, y: number, yBf16: boolean, n: number): void;
  /** dx = a·dy (+ xAcc), dz = b·dy (+ zAcc) (x's and z's gradients so far, where not 0) over n values; da = Σ dy·x,
   * db = Σ dy·z (one float each, in a fixed order; 0 for n = 0), plus abAcc[0] and abAcc[1] where abAcc is not 0; dx and dz
   * rounded to bf16 into dxBf16 and dzBf16 where those are not 0. */
  scaledAddGrad(dy: number, x: number, xBf16: boolean, z: number, zBf16: boolean, a: number, b: number, xAcc: number, zAcc: number,
    dx: number, dz: number, da: number, db: number, n: number, dxBf16: number, dzBf16: number, abAcc: number): void;
}

/** The tensors `names` (x, z; dy first for the gradient), float32 of one shape, and where a and b are on the device: the
 * scalars a and b, or the two values of ab [2] (ScaledAddPair's; `pair`: that tensor). */
function checked(kernel: string, inputs: CudaKernelArgs['inputs'], names: string[], backend: CudaBackend):
  [TensorInfo[], number, number, TensorInfo | null] {
  const ts = names.map(name => input(kernel, inputs, name));
  ts.forEach((t, i) => {
    if (!tf.util.arraysEqual(t.shape, ts[0].shape)) {
      throw new Error(`${kernel}: ${names[0]} and ${names[i]} must have one shape, got ${describe(ts[0])} and ${describe(t)}`);
    }
  });
  if (inputs.ab != null) {
    const ab = input(kernel, inputs, 'ab');
    if (ab.shape.join() !== '2') throw new Error(`${kernel}: ab must be float32 [2], got ${describe(ab)}`);
    return [ts, backend.ptr(ab), backend.ptr(ab) + 4, ab];
  }
  const [a, b] = ['a', 'b'].map(name => {
    const t = input(kernel, inputs, name);
    if (t.shape.length !== 0) throw new Error(`${kernel}: ${name} must be a float32 scalar (shape []), got ${describe(t)}`);
    return backend.ptr(t);
  });
  return [ts, a, b, null];
}

/** The forward of ScaledAdd and ScaledAddPair. */
const forward = (kernelName: string): CudaKernel => ({
  kernelName,
  kernelFunc: ({ inputs, backend }) => {
    const [[x, z], a, b] = checked(kernelName, inputs, ['x', 'z'], backend);
    // x and z as stored; the sum of two bf16-only tensors (the residual stream under bf16 precision, §5) is bf16-only too
    const xs = backend.storedValues(x), zs = backend.storedValues(z), half = xs.bf16 && zs.bf16 ? backend.makeBf16Only(x.shape) : null;
    const y = half?.out ?? backend.makeOutput(x.shape, 'float32');
    backend.device.scaledAdd(xs.ptr, xs.bf16, zs.ptr, zs.bf16, a, b, half ? half.ptr : backend.ptr(y), !!half, tf.util.sizeFromShape(x.shape));
    return y;
  },
});

export const scaledAddKernels: CudaKernel[] = [
  forward(SCALED_ADD),
  forward(SCALED_ADD_PAIR),
  {
    kernelName: SCALED_ADD_GRAD,
    kernelFunc: ({ inputs, backend }) => {
      // xAccumulated, zAccumulated (optional): x's and z's gradients so far, which dx and dz then include (scaled_add.ts's
      // gradient); abAccumulated with ab: its gradient so far, which dab includes
      const sums = ['xAccumulated', 'zAccumulated'].filter((name) => inputs[name] != null);
      const [[dy, x, z, ...given], a, b, ab] = checked(SCALED_ADD_GRAD, inputs, ['dy', 'x', 'z', ...sums], backend);
      const sumOf = (name: string) => { const i = sums.indexOf(name); return i < 0 ? 0 : backend.ptr(given[i]); };
      const abAcc = inputs.abAccumulated == null ? null : input(SCALED_ADD_GRAD, inputs, 'abAccumulated');
      if (abAcc && (!ab || abAcc.shape.join() !== '2')) throw new Error(`${SCALED_ADD_GRAD}: abAccumulated ${describe(abAcc)} needs ab, both [2]`);
      const dx = backend.makeOutput(x.shape, 'float32'), dz = backend.makeOutput(x.shape, 'float32');
      // [da, db]: one [2] tensor for ab, else two scalars
      const scalars = ab ? [backend.makeOutput([2], 'float32')] : [backend.makeOutput([], 'float32'), backend.makeOutput([], 'float32')];
      const [da, db] = ab ? [backend.ptr(scalars[0]), backend.ptr(scalars[0]) + 4] : scalars.map((t) => backend.ptr(t));
      const xs = backend.storedValues(x), zs = backend.storedValues(z);
      backend.device.scaledAddGrad(backend.ptr(dy), xs.ptr, xs.bf16, zs.ptr, zs.bf16, a, b, sumOf('xAccumulated'), sumOf('zAccumulated'),
        backend.ptr(dx), backend.ptr(dz), da, db, tf.util.sizeFromShape(x.shape), backend.gradientTwin(x, dx), backend.gradientTwin(z, dz),
        abAcc ? backend.ptr(abAcc) : 0);
      return [dx, dz, ...scalars];
    },
  },
];
