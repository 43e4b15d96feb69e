// Fused scaled add y = a·x + b·z: the kernel train_gpt.ts's scaledAdd() hands to a backend that
// registers 'ScaledAdd' (runFused), and its gradient. The composite x.mul(a).add(z.mul(b)) is the
// implementation everywhere else and the tests' oracle.
//   inputs x, z float32 of one shape, a and b float32 scalars (shape []), on the device;
//   gradient ('ScaledAddGrad', one kernel): dx = a·dy, dz = b·dy, da = Σ dy·x, db = Σ dy·z; with the inputs
//   xAccumulated and zAccumulated (x's and z's gradients so far), dx and dz include them: x's and z's thunks take them
//   (tfjs_node.ts's backward calls such thunks first, and hands the first one the other's sum too), so that neither sum
//   costs an Add kernel (x0 feeds every block; a skip's or the backout's source is the next block's x and their z).
// The first thunk called runs the kernel and the others take its results. tfjs's own backward (higher orders) calls
// each thunk in its own tidy, which frees the other results: a thunk that finds them freed runs the kernel again.
// What no thunk takes (da of a constant a such as tf.scalar(1)) is a tensor of the backward pass's scope and is
// disposed with it, as tfjs's own FusedBatchNorm gradient does.
import * as tf from '@tensorflow/tfjs-core';
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

/** tfjs_node.ts's summing gradient thunk: handed its input's gradient so far, and a lookup of another input's. */
type SummingThunk = (accumulated?: tf.Tensor, soFar?: (input: string) => tf.Tensor | undefined) => tf.Tensor;

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
    let added: { x?: tf.Tensor; z?: tf.Tensor } = {};  // the gradients so far that run summed in
    const run = (xAccumulated?: tf.Tensor, zAccumulated?: tf.Tensor) => {
      added = { x: xAccumulated, z: zAccumulated };
      return (results = tf.engine().runKernel(SCALED_ADD_GRAD, { dy: dy as tf.Tensor, x, z, a, b,
        ...(xAccumulated ? { xAccumulated } : {}), ...(zAccumulated ? { zAccumulated } : {}) }, {}) as tf.Tensor[]);
    };
    const ready = (i: number) => results !== null && !results[i].isDisposed;
    const output = (i: number) => (ready(i) ? results! : run())[i];
    // x's or z's gradient with its sum so far: summed by the kernel where the run had it (the first of the two thunks runs
    // the kernel with both sums, the other's from tfjs_node.ts's lookup), else by an Add, as tfjs's backward would (x
    // is the same tensor as z: tfjs_node.ts then hands z's thunk the sum that x's made)
    const withSum = (i: number, name: 'x' | 'z', accumulated?: tf.Tensor) =>
      !accumulated || added[name] === accumulated ? results![i] : tf.add(accumulated, results![i]);
    const xGrad: SummingThunk = (xAccumulated, soFar) => {
      if (!ready(0)) run(xAccumulated, soFar?.('z'));
      return withSum(0, 'x', xAccumulated);
    };
    const zGrad: SummingThunk = (zAccumulated, soFar) => {
      if (!ready(1)) run(soFar?.('x'), zAccumulated);
      return withSum(1, 'z', zAccumulated);
    };
    return { x: xGrad, z: zGrad, a: () => output(2), b: () => output(3) };
  },
});
