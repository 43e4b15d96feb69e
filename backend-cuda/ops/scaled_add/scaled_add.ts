// Fused scaled add y = a·x + b·z: the kernel train_gpt.ts's scaledAdd() hands to a backend that
// registers 'ScaledAdd' (runFused), and its gradient. The composite x.mul(a).add(z.mul(b)) is the
// implementation everywhere else and the tests' oracle.
//   inputs x, z float32 of one shape, a and b float32 scalars (shape []), on the device;
//   'ScaledAddPair': the same with a and b one [2] tensor ab (the block lambdas: no Unpack and Pack of them);
//   gradient ('ScaledAddGrad', one kernel): dx = a·dy, dz = b·dy, da = Σ dy·x, db = Σ dy·z ([da, db] one [2] output for
//   ab, plus abAccumulated, its gradient so far, where given); with the inputs
//   xAccumulated and zAccumulated (x's and z's gradients so far), dx and dz include them: x's and z's thunks take them
//   (tfjs_node.ts's backward calls such thunks first, and hands the first one the other's sum too), so that neither sum
//   costs an Add kernel (x0 feeds every block; a skip's or the backout's source is the next block's x and their z).
// The first thunk called runs the kernel and the others take its results. tfjs's own backward (higher orders) calls
// each thunk in its own tidy, which frees the other results: a thunk that finds them freed runs the kernel again.
// What no thunk takes (da of a constant a such as tf.scalar(1)) is a tensor of the backward pass's scope and is
// disposed with it, as tfjs's own FusedBatchNorm gradient does.
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec, sharedGradients } from '../fused_kernel.ts';

export const SCALED_ADD = 'ScaledAdd';
export const SCALED_ADD_PAIR = 'ScaledAddPair';
export const SCALED_ADD_GRAD = 'ScaledAddGrad';

export const scaledAdd: FusedKernelSpec = {
  name: SCALED_ADD,
  supports: ({ x, z, a, b }) => x.shape.join() !== z.shape.join() ? `x [${x.shape}] and z [${z.shape}] differ in shape (no broadcast)`
    : a.rank || b.rank ? 'a and b must be scalars' : float32Inputs({ x, z, a, b }, 'x', 'z', 'a', 'b'),
};
/** ScaledAdd with a and b as one [2] tensor ab (the block lambdas, a parameter [2]): no Unpack of it forward and no Pack of
 * its gradient backward, whose [da, db] is one [2] output (summed with the gradient so far in the kernel). */
export const scaledAddPair: FusedKernelSpec = {
  name: SCALED_ADD_PAIR,
  supports: ({ x, z, ab }) => x.shape.join() !== z.shape.join() ? `x [${x.shape}] and z [${z.shape}] differ in shape (no broadcast)`
    : ab.shape.join() !== '2' ? `ab [${ab.shape}] is not [2]` : float32Inputs({ x, z, ab }, 'x', 'z', 'ab'),
};

tf.registerGradient({
  kernelName: SCALED_ADD,
  inputsToSave: ['x', 'z', 'a', 'b'],
  gradFunc: (dy, saved) => {
    const [x, z, a, b] = saved;
    // [dx, dz, da, db] from one run; the first of x's and z's thunks runs it with both sums so far (x is the same tensor
    // as z: z's sum, which x's thunk made, is added by an Add)
    const { output, summing } = sharedGradients(({ x: xAccumulated, z: zAccumulated }) => tf.engine().runKernel(SCALED_ADD_GRAD,
      { dy: dy as tf.Tensor, x, z, a, b, ...(xAccumulated ? { xAccumulated } : {}), ...(zAccumulated ? { zAccumulated } : {}) }, {}) as tf.Tensor[]);
    return { x: summing(0, 'x', ['z']), z: summing(1, 'z', ['x']), a: () => output(2), b: () => output(3) };
  },
});
tf.registerGradient({
  kernelName: SCALED_ADD_PAIR,
  inputsToSave: ['x', 'z', 'ab'],
  gradFunc: (dy, saved) => {
    const [x, z, ab] = saved;
    // [dx, dz, dab]: the first thunk that sums runs it with the sums so far it is handed (ab's: a gradient accumulation's)
    const { summing } = sharedGradients(({ x: xAccumulated, z: zAccumulated, ab: abAccumulated }) => tf.engine().runKernel(SCALED_ADD_GRAD,
      { dy: dy as tf.Tensor, x, z, ab, ...(xAccumulated ? { xAccumulated } : {}), ...(zAccumulated ? { zAccumulated } : {}),
        ...(abAccumulated ? { abAccumulated } : {}) }, {}) as tf.Tensor[]);
    return { x: summing(0, 'x', ['z', 'ab']), z: summing(1, 'z', ['x', 'ab']), ab: summing(2, 'ab', ['x', 'z']) };
  },
});
