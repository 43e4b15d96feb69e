// Fused scaled add y = a·x + b·z: the kernel train_gpt.ts's scaledAdd() hands to a backend that
// registers 'ScaledAdd' (runFused), and its gradient. The composite x.mul(a).add(z.mul(b)) is the
// implementation everywhere else and the tests' oracle.
//   inputs x, z float32 of one shape, a and b float32 scalars (shape []), on the device;
//   gradient ('ScaledAddGrad', one kernel): dx = a·dy, dz = b·dy, da = Σ dy·x, db = Σ dy·z; with the input
//   zAccumulated (z's gradient so far), dz includes it: z's thunk takes it (tfjs_node.ts's backward calls such a thunk
//   first), so that z's sum costs no Add kernel (x0 feeds every block, a skip's source two layers).
// The first thunk called runs the kernel and the others take its results. tfjs's own backward (higher orders) calls
// each thunk in its own tidy, which frees the other results: a thunk that finds them freed runs the kernel again.
// What no thunk takes (da of a constant a such as tf.scalar(1)) is a tensor of the backward pass's scope and is
// disposed with it, as tfjs's own FusedBatchNorm gradient does.
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
    let results: tf.Tensor[] | null = null;  // [dx, dz, da, db] of the last run
    const run = (zAccumulated?: tf.Tensor) => (results = tf.engine().runKernel(SCALED_ADD_GRAD,
      { dy: dy as tf.Tensor, x, z, a, b, ...(zAccumulated ? { zAccumulated } : {}) }, {}) as tf.Tensor[]);
    const ready = (i: number) => results !== null && !results[i].isDisposed;
    const output = (i: number) => (ready(i) ? results! : run())[i];
    return {
      x: () => output(0),
      // z's gradient so far, summed by the kernel; where the results exist already (x is the same tensor as z, whose
      // thunk tfjs_node.ts then keeps in its place), by an Add, as tfjs's backward would
      z: (zAccumulated?: tf.Tensor) => !zAccumulated ? output(1) : ready(1) ? tf.add(zAccumulated, results![1]) : run(zAccumulated)[1],
      a: () => output(2),
      b: () => output(3),
    };
  },
});
