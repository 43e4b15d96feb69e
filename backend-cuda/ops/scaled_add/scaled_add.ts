// Fused scaled add y = a·x + b·z: the kernel train_gpt.ts's scaledAdd() hands to a backend that
// registers 'ScaledAdd' (runFused), and its gradient. The composite x.mul(a).add(z.mul(b)) is the
// implementation everywhere else and the tests' oracle.
//   inputs x, z float32 of one shape, a and b float32 scalars (shape []), on the device;
//   gradient ('ScaledAddGrad', one kernel): dx = a·dy, dz = b·dy, da = Σ dy·x, db = Σ dy·z.
// The gradient kernel runs once in gradFunc itself, not inside a thunk: tfjs calls each input's thunk
// in its own tidy and only for the inputs that need a gradient, so four thunks sharing one lazy call
// would lose the others' results. What no thunk takes (da of a constant a such as tf.scalar(1)) is a
// tensor of the backward pass's scope and is disposed with it, as tfjs's own FusedBatchNorm gradient does.
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const SCALED_ADD = 'ScaledAdd';
export const SCALED_ADD_GRAD = 'ScaledAddGrad';

export const scaledAdd: FusedKernelSpec = {
  name: SCALED_ADD,
  supports: ({ x, z, a, b }) => x.shape.join() !== z.shape.join() ? `x [${x.shape}] and z [${z.shape}] differ in shape (no broadcast)`
    : a.rank || b.rank ? 'a and b must be scalars' : float32Inputs({ x, z, a, b }, 'x', 'z', 'a', 'b'),
};

tf.registerGradient({
  kernelName: SCALED_ADD,
  inputsToSave: ['x', 'z', 'a', 'b'],
  gradFunc: (dy, saved) => {
    const [x, z, a, b] = saved;
    const [dx, dz, da, db] = tf.engine().runKernel(SCALED_ADD_GRAD, { dy: dy as tf.Tensor, x, z, a, b }, {}) as tf.Tensor[];
    return { x: () => dx, z: () => dz, a: () => da, b: () => db };
  },
});
