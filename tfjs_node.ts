// tfjs_node.ts: the one place the project sets up TensorFlow.js in Node. Import it before using tf.
//
// tfjs-core alone has neither gradient functions nor chained ops (x.add(y)); its own modules that register them
// (register_all_gradients, register_all_chained_ops) are ES modules with extensionless imports, which Node cannot
// load. The union package @tensorflow/tfjs ships them in a CommonJS bundle, with webgl, layers, converter and data
// (half of a 474 MB install). Instead esbuild (a dependency already: tsx runs on it) bundles tfjs-core's two
// modules once into build/, keyed by tfjs-core's version and the bundle's source; the registries they fill are
// tfjs's global ones. The bundle also exports the tape's two functions the backward below is built from.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// The chained ops' types (x.add(y) on Tensor), declared by tfjs-core's module; erased at run time.
import type {} from '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';
import { buildSync } from 'esbuild';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(fileURLToPath(import.meta.url));
const BUNDLE_SOURCE = "import '@tensorflow/tfjs-core/dist/register_all_gradients';\n" +
  "import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';\n" +
  "export { backpropagateGradients, getFilteredNodesXToY } from '@tensorflow/tfjs-core/dist/tape';\n";
const sourceKey = createHash('sha256').update(BUNDLE_SOURCE).digest('hex').slice(0, 8);
const bundle = join(ROOT, 'build', `tfjs-core-${tf.version_core}-registrations-${sourceKey}.cjs`);
if (!existsSync(bundle)) {
  mkdirSync(dirname(bundle), { recursive: true });
  const part = `${bundle}.${process.pid}.part`; // processes that start together each write their own, then rename
  buildSync({
    stdin: { contents: BUNDLE_SOURCE, resolveDir: ROOT },
    bundle: true, platform: 'node', format: 'cjs', outfile: part, logLevel: 'silent',
  });
  renameSync(part, bundle);
}
const tape = createRequire(import.meta.url)(bundle) as TapeFunctions;

// ---- A backward that frees as it goes ----------------------------------------------------------------------------
// tfjs's engine.gradients keeps every tensor the forward saved for the backward, and every gradient the backward
// computes (the activations' included), until the whole backward is done. At the speedrun's 32,768 tokens that made
// the backward's peak the saved activations plus the gradients of all of them (46.5 GiB against 21.7 after the
// forward). This is engine.gradients with one change: for a first-order gradient, each tape node's saved tensors and
// the gradients of its outputs are disposed once the node's backward has run, and tensors the node's gradient made
// but did not hand on are freed with it (a scope per node); saved tensors of nodes off the path from xs to y go first.
// The values computed are tfjs's own (the same gradient functions in the same order). Higher-order gradients (a
// gradient taken inside another's function) keep tfjs's behaviour: the outer tape still needs what they would free.
// One addition: where an input already has a gradient (from a later consumer: the residual stream feeds a norm and the
// residual add), tfjs sums the two with an Add, a pass over both. A gradient thunk that declares a parameter (a fused
// op's: RMSNorm's, Linear's, ScaledAdd's) is handed that gradient so far and returns the sum itself, from its kernel's
// epilogue; such thunks are called first in their node (nodeBackward says when not). Its second parameter, where it
// declares one, looks up another input's gradient so far, for a kernel that sums several inputs' in one run
// (ScaledAddGrad: x's and z's); its third says whether the gradient so far is the backward's alone and dropped after the
// thunk (the embedding tables' gradients then add into it in place: no copy of the [V, d] sum). And one entry point: variableGradsSummed() starts the variables' gradients at their sums
// so far (a gradient accumulation's earlier micro-steps), so that the thunks that sum (Linear's and MatMulAdd's weights
// in cuBLASLt's epilogue, the FP8 head's and the embedding tables' in their gradient kernels) add this micro-step's
// gradient into them instead of an Add over every parameter.
interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}
interface TapeFunctions {
  getFilteredNodesXToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[];
  backpropagateGradients(map: Record<number, tf.Tensor>, tape: TapeNode[], tidy: (f: () => tf.Tensor) => tf.Tensor,
    add: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor): void;
}
interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number; tensorInfo: Map<object, { backend: tf.KernelBackend }> };
  saveTensorsForBackwardMode(tensors: tf.Tensor[]): tf.Tensor[];
  keep<T extends tf.Tensor>(t: T): T;
  makeTensorFromTensorInfo(info: tf.TensorInfo, backend?: tf.KernelBackend): tf.Tensor;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
  gradients(f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor, allowNoGradients?: boolean): { value: tf.Tensor; grads: tf.Tensor[] };
}

/** A gradient thunk that sums: handed its input's gradient so far, a lookup of another input's (see soFar below), and
 * whether the gradient so far is the backward's alone, dropped once the thunk returns (it may be updated in place). */
type SummingThunk = (accumulated?: tf.Tensor, soFar?: (input: string) => tf.Tensor | undefined, consumable?: boolean) => tf.Tensor;

/** One node's backward (tape.js's loop body, its messages included): each input's gradient added into `map`. */
function nodeBackward(node: TapeNode, map: Map<number, tf.Tensor>, put: (id: number, t: tf.Tensor) => void,
  sole: (t: tf.Tensor) => boolean): void {
  const dys = node.outputs.map((o) => map.get(o.id) ?? null);
  if (node.gradient == null) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
  const inputGradients = node.gradient(dys);
  // A thunk that sums goes first: its kernel may be the one the node's other thunks share (ScaledAddGrad), and it can add
  // the sum only if it runs first. Not past an earlier input that is the same tensor: that would change the order of
  // the tensor's sums, and with it their float32 rounding, against tfjs's backward.
  const names = Object.keys(node.inputs);
  const sums = (name: string) => (inputGradients[name]?.length ?? 0) >= 1;  // the thunk adds the input's gradient so far itself
  const early = (name: string, i: number) => sums(name) && names.slice(0, i).every((other) => node.inputs[other].id !== node.inputs[name].id);
  // Another input's gradient so far, for a thunk whose kernel sums it in the same run: only where that input's thunk sums,
  // has not run, and its tensor feeds this node once (no other input's gradient changes its sum before its thunk runs).
  const done = new Set<string>(), once = (name: string) => names.filter((n) => node.inputs[n].id === node.inputs[name].id).length === 1;
  const soFar = (asking: string) => (other: string) =>
    other !== asking && other in node.inputs && sums(other) && !done.has(other) && once(other) ? map.get(node.inputs[other].id) : undefined;
  for (const inputName of [...names.filter(early), ...names.filter((name, i) => !early(name, i))]) {
    if (!(inputName in inputGradients)) {
      throw new Error(`Cannot backprop through input ${inputName}. Available gradients found: ${Object.keys(inputGradients)}.`);
    }
    const thunk = inputGradients[inputName] as SummingThunk, x = node.inputs[inputName];
    const current = map.get(x.id), summed = sums(inputName);
    // the gradient so far is consumable where one map entry holds it: put() below replaces and frees it
    const dx = summed ? thunk(current, soFar(inputName), current !== undefined && sole(current)) : thunk();
    done.add(inputName);
    if (dx.dtype !== 'float32') {
      throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${inputName} must have 'float32' dtype, but has '${dx.dtype}'`);
    }
    if (dx.shape.join() !== x.shape.join()) {
      throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input '${inputName}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`);
    }
    put(x.id, current && !summed ? tf.add(current, dx) : dx);
  }
}

const engine = tf.engine() as unknown as EngineInternals;
let startingSums: Map<number, tf.Tensor> | null = null;  // variableGradsSummed's, for the gradients() it calls
engine.gradients = function (f, xs, dy, allowNoGradients = false) {
  const sums = startingSums;
  startingSums = null;  // not for a gradient taken inside f (checkpoint()'s)
  if (xs.length === 0) throw new Error('gradients() received an empty list of xs.');
  if (dy != null && dy.dtype !== 'float32') throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
  // A gradient taken inside a backward (checkpoint()'s) starts a tape of its own: the backward running it gets its tape
  // back at the end (tfjs's own backward reads it after its loop)
  const enclosingTape = this.state.activeTape;
  const y = this.scopedRun(() => this.startTape(), () => this.endTape(), () => this.tidy('forward', f));
  if (!(y instanceof tf.Tensor)) throw new Error('The result y returned by f() must be a tensor.');
  const activeTape = this.state.activeTape!, filteredTape = tape.getFilteredNodesXToY(activeTape, xs, y);
  if (!allowNoGradients && filteredTape.length === 0 && xs.length > 0) {
    throw new Error('Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed encloses all operations that lead from x to y.');
  }
  const firstOrder = this.state.gradientDepth === 0;
  return this.tidy('backward', () => {
    const seed = dy ?? tf.ones(y.shape);
    if (!firstOrder) {
      if (sums) throw new Error('variableGradsSummed() inside another gradient: starting sums are for a first-order gradient');
      const record: Record<number, tf.Tensor> = { [y.id]: seed };
      tape.backpropagateGradients(record, filteredTape, (g) => this.tidy('gradient', g), tf.add);
      return { value: y, grads: xs.map((x) => record[x.id]) };
    }
    const onPath = new Set(filteredTape.map((node) => node.id));
    for (const node of activeTape) if (!onPath.has(node.id)) tf.dispose(node.saved ?? []);
    // Each gradient tensor with the number of map entries that hold it (a gradient may pass dy on as it is).
    const map = new Map<number, tf.Tensor>(), holders = new Map<tf.Tensor, number>(), keepIds = new Set(xs.map((x) => x.id));
    const release = (t: tf.Tensor) => {
      const n = (holders.get(t) ?? 0) - 1;
      if (n > 0) holders.set(t, n);
      else { holders.delete(t); if (t !== dy) t.dispose(); }
    };
    const put = (id: number, t: tf.Tensor) => {
      holders.set(t, (holders.get(t) ?? 0) + 1);
      const old = map.get(id);
      map.set(id, t);
      if (old) release(old);
    };
    put(y.id, seed);
    for (const x of xs) {
      const sum = sums?.get(x.id);
      if (sum) put(x.id, sum);  // the backward owns it now: replaced by (and freed for) the sum with this gradient
    }
    for (let i = filteredTape.length - 1; i >= 0; i--) {
      const node = filteredTape[i];
      // The node's new gradients leave its scope; whatever else its gradient made is freed with it.
      this.tidy('node backward', () => {
        nodeBackward(node, map, put, (t) => holders.get(t) === 1 && t !== dy);
        return node.outputs.map((o) => map.get(o.id)).concat(Object.values(node.inputs).map((x) => map.get(x.id)))
          .filter((t): t is tf.Tensor => t != null);
      });
      for (const o of node.outputs) {
        const g = map.get(o.id);
        if (g && !keepIds.has(o.id)) { map.delete(o.id); release(g); }
      }
      tf.dispose(node.saved ?? []);
    }
    const grads = xs.map((x) => map.get(x.id)!);
    this.state.activeTape = enclosingTape;
    return { value: y, grads };
  });
};

/**
 * tf.variableGrads(f) with each variable's gradient added to `sums`' tensor for it (its gradient so far; a variable
 * without one starts at zero): { value, grads }, grads holding sum + ∂f/∂v for every trainable variable that has a sum or
 * a gradient. The sums are the backward's from the call on (each freed once replaced; not to be used or disposed
 * after). Where a gradient's thunk sums (the backward above) the addition rides in its kernel; elsewhere it
 * is the Add that the caller's own sum would have been, in the same float32 order for a variable with one gradient
 * in f (sum + g), and (sum + g₁) + g₂ for one with several (tfjs's order within f would be sum + (g₁ + g₂)).
 */
export function variableGradsSummed(f: () => tf.Scalar, sums: Map<tf.Variable, tf.Tensor>): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  for (const [v, t] of sums) {
    if (t.shape.join() !== v.shape.join() || t.dtype !== 'float32') {
      throw new Error(`variableGradsSummed: the sum for ${v.name} is ${t.dtype}[${t.shape}], the variable float32 [${v.shape}]`);
    }
  }
  startingSums = new Map([...sums].map(([v, t]) => [v.id, t]));
  try {
    return tf.variableGrads(f);
  } finally {
    startingSums = null;
  }
}

// ---- Shapes saved without their values -----------------------------------------------------------------------------
// Some gradients read only the shapes of the inputs they save (tfjs-core's Reshape_grad, ExpandDims_grad, Slice_grad,
// PadV2_grad, Sum_grad, Mean_grad, Concat_grad: reshape, pad, slice, split or broadcast dy to x's shape). Saving the
// input itself kept its buffer alive until the backward: the input of every reshape in the model, a layer's
// intermediate that nothing else keeps (shaped attention's γ·X and C·X, the embeddings' gathers), for nothing. With
// one tape (gradientDepth 1) such a kernel saves a stand-in instead: a tensor of x's shape and dtype on an empty
// buffer. Reading its values is an error, so the list holds only gradients that read none.
const SHAPE_ONLY_GRADIENTS = new Set(['Reshape', 'ExpandDims', 'Slice', 'PadV2', 'Sum', 'Mean', 'Concat']);
let saveShapesOnly = false;  // for the save that follows (runKernelFunc calls the two in a row)
const tensorsForGradient = (engine as unknown as { getTensorsForGradient: GetTensorsForGradient }).getTensorsForGradient.bind(engine);
(engine as unknown as { getTensorsForGradient: GetTensorsForGradient }).getTensorsForGradient = function (kernelName, inputs, outputs) {
  saveShapesOnly = engine.state.gradientDepth === 1 && SHAPE_ONLY_GRADIENTS.has(kernelName);
  return tensorsForGradient(kernelName, inputs, outputs);
};
type GetTensorsForGradient = (kernelName: string, inputs: Record<string, tf.Tensor>, outputs: tf.Tensor[]) => tf.Tensor[];

// ---- Saved tensors without a tape node each ----------------------------------------------------------------------
// tfjs keeps a kernel's inputs and outputs for its gradient as clone()s: an Identity kernel (a new tensor on the same
// buffer) plus a tape node through which a gradient can flow back to the original. That node serves only a tape
// outside the recording one (a second-order gradient differentiates the backward, which reads the saved tensors);
// with one tape (gradientDepth 1, every training step) it is never on a gradient path, yet each step recorded ~500 of
// them, each dispatched as a kernel and then filtered out of the backward. There the saved tensor is made directly:
// a reference on the backend (as Identity does) and a new kept tensor on it. Deeper tapes keep tfjs's clone().
const saveWithClones = engine.saveTensorsForBackwardMode.bind(engine);
engine.saveTensorsForBackwardMode = function (tensors) {
  if (this.state.gradientDepth !== 1) return saveWithClones(tensors);
  const shapesOnly = saveShapesOnly;
  saveShapesOnly = false;
  return tensors.map((t) => {
    const { backend } = this.state.tensorInfo.get(t.dataId)!;
    if (shapesOnly) return this.keep(this.makeTensorFromTensorInfo({ dataId: backend.write(new Float32Array(0), [0], 'float32'), shape: t.shape, dtype: t.dtype }, backend));
    backend.incRef(t.dataId);
    return this.keep(this.makeTensorFromTensorInfo({ dataId: t.dataId, shape: t.shape, dtype: t.dtype }, backend));
  });
};

// tfjs-backend-cpu prints "Hi, looks like you are running TensorFlow.js in Node.js..." through tfjs's
// warn() on its first tensor whenever IS_NODE is set; the project picks its backend itself, and warn()
// is silent in PROD mode, which changes nothing else in tfjs-core 4.x (its checks follow DEBUG).
tf.env().set('PROD', true);
