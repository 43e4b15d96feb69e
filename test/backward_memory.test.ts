// tfjs_node.ts's backward (engine.gradients, freeing as it goes): the same gradients as tfjs's own, bit for bit, on the
// model and its variants; each node's saved tensors and output gradients gone once the backward has passed it; no
// tensor left behind; higher-order gradients still right; with one tape, saved tensors without clone kernels, and
// shapes without their values for the gradients that read only shapes; a fused gradient summing the gradient so far
// in its own kernel.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../train_gpt.ts';
import type { CudaBackend } from '../backend-cuda/backend.ts';
import { registerCudaHostBackend } from '../backend-cuda/host_device.ts';
import { variableGradsSummed } from '../tfjs_node.ts';
import { random } from './seed.ts';

type Gradients = (f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor, allowNoGradients?: boolean) => { value: tf.Tensor; grads: tf.Tensor[] };
const engine = tf.engine() as unknown as { gradients: Gradients };
/** tfjs's own engine.gradients, which tfjs_node.ts's instance method shadows. */
const tfjsGradients: Gradients = (...args) => (Object.getPrototypeOf(engine).gradients as Gradients).apply(engine, args);

/** The tiny model of `variant`, every parameter perturbed (so that zero-initialised projections pass gradients
 * everywhere), and its loss on 2 rows of 32 tokens with documents starting every 24: what the tests differentiate. */
function perturbedTinyModel(variant: Partial<T.Config>) {
  const { cfg } = T.resolveConfig('tiny', variant);
  const m = T.createModel(cfg);
  for (const v of m.params.values()) tf.tidy(() => v.assign(v.add(tf.randomNormal(v.shape, 0, 0.1, 'float32', Math.floor(random() * 1e9)))));
  const tokens = Int32Array.from({ length: 64 }, (_, i) => (i % 24 === 0 ? cfg.bosToken : Math.floor(random() * 200)));
  const batch = T.toDevice({ inputs: tokens, targets: tokens.map((t) => (t + 1) % 200), B: 2, T: 32 }, cfg.bosToken);
  const sched = T.attnScheduleAt(cfg.windowSchedule[0], T.initRope(cfg), cfg);
  return {
    cfg, skips: m.skips.length, names: [...m.params.keys()], vars: [...m.params.values()], loss: () => T.modelLoss(m, batch, sched, 'sum').div(8),
    dispose: () => { T.disposeBatch(batch); T.disposeModel(m); },
  };
}

it('gives the gradients of tfjs\'s own backward, bit for bit: the tiny model and its block variants', async () => {
  await tf.setBackend('cpu');
  const variants: Partial<T.Config>[] = [{}, { canon: 'ABCD' }, { canon: 'AC' }, { block: 'sas-p' }, { mlp: 'swiglu', parallel: true, attnScore: 'softpick' }];
  for (const variant of variants) {
    const { vars, loss: f, dispose } = perturbedTinyModel(variant);
    const ours = engine.gradients(f, vars, undefined, true), theirs = tfjsGradients(f, vars, undefined, true);
    assert.equal(ours.value.dataSync()[0], theirs.value.dataSync()[0]);
    ours.grads.forEach((g, i) => assert.deepEqual(g.dataSync(), theirs.grads[i].dataSync(), `${JSON.stringify(variant)}: ${vars[i].name}`));
    tf.dispose([ours.value, theirs.value, ...ours.grads, ...theirs.grads]);
    dispose();
  }
});

it('sums a gradient into the next one in the fused kernels (RMSNorm, Linear, ScaledAdd): tfjs\'s gradients bit for bit, two Adds a block fewer, x0\'s, and the skips\' and the backout\'s sources\'', async () => {
  registerCudaHostBackend('cuda-host');
  await tf.setBackend('cuda-host');  // the backend's fused kernels, on the CPU
  try {
    // the tiny model with the speedrun's attention gate: its norms' inputs also feed the residual adds (the gate's channels
    // are the attention norm's second output: no sum of two gradients of the normed input, for tfjs either)
    const { cfg, skips, vars, loss: f, dispose } = perturbedTinyModel({ attnGate: true });
    /** The gradients, and how many Adds over the residual stream's shape the backward ran. */
    const run = async (gradients: Gradients) => {
      let r: ReturnType<Gradients> | null = null;
      const profile = await tf.profile(() => { r = gradients(f, vars, undefined, true); return [r.value, ...r.grads]; });
      const adds = profile.kernels.filter((k) => k.name === 'Add' && k.inputShapes[0]?.join() === [2, 32, cfg.modelDim].join()).length;
      const got = r as unknown as ReturnType<Gradients>;
      const values = got.grads.map((g) => g.dataSync().slice());
      tf.dispose([got.value, ...got.grads]);
      return { adds, values };
    };
    const ours = await run((...args) => engine.gradients(...args)), theirs = await run(tfjsGradients);
    ours.values.forEach((g, i) => assert.deepEqual(g, theirs.values[i], vars[i].name));
    assert.ok(theirs.adds >= 2 * cfg.numLayers, `tfjs's backward: ${theirs.adds} Adds of the residual stream's shape (the test must see them)`);
    // x0's gradient (block lambdas: x ← a·x + b·x0 in every block) is summed by ScaledAddGrad from the second block the
    // backward reaches on; block 0, where x is x0 itself, sums x's in the kernel and z's with an Add (summing z's first
    // would reorder x0's sums). A skip's source and the backout's are the next block's x and a later ScaledAdd's z: their
    // sums meet in the next block's kernel, with x0's (tfjs_node.ts hands the first thunk the other's sum).
    assert.ok(cfg.blockLambdas && cfg.numLayers >= 3 && skips > 0 && cfg.backout,
      'the tiny model has block lambdas over 3 or more layers, a skip and the backout (the test must see their sums)');
    assert.equal(ours.adds, theirs.adds - 2 * cfg.numLayers - (cfg.numLayers - 2) - 1 - skips - 1,
      'two Adds a block fewer (the two norms\' inputs), x0\'s in blocks 1 … L − 2 and one of '
      + 'block 0\'s two, and the skips\' and the backout\'s sources\'');
    dispose();
  } finally {
    await tf.setBackend('cpu');
  }
});

it('under bf16 matmuls the residual stream\'s gradients come with their bf16 copies (RMSNormGrad, ScaledAddGrad): no conversion of them, the same gradients', async () => {
  registerCudaHostBackend('cuda-host');
  await tf.setBackend('cuda-host');
  const backend = tf.backend() as CudaBackend, device = backend.device, before = backend.matmulPrecision;
  backend.setMatmulPrecision('bf16');
  const toBf16 = device.toBf16, gradientTwin = backend.gradientTwin;
  try {
    const { cfg, vars, loss: f, dispose } = perturbedTinyModel({ attnGate: true });
    const residual = 2 * 32 * cfg.modelDim;
    /** The gradients, and the conversions of a residual-sized float32 tensor to bf16 during the backward. */
    const run = () => {
      let conversions = 0;
      device.toBf16 = (x, y, n) => { if (n === residual) conversions++; toBf16.call(device, x, y, n); };
      const r = engine.gradients(f, vars, undefined, true);
      device.toBf16 = toBf16;
      const values = r.grads.map((g) => g.dataSync().slice());
      tf.dispose([r.value, ...r.grads]);
      return { conversions, values };
    };
    const twins = run();
    backend.gradientTwin = () => 0;  // the kernels write no copy: matmulOperand converts
    const converted = run();
    backend.gradientTwin = gradientTwin;
    twins.values.forEach((g, i) => assert.deepEqual(g, converted.values[i], vars[i].name));
    assert.ok(converted.conversions >= 2 * cfg.numLayers - 2, `without the copies the backward converts ${converted.conversions} residual gradients (the test must see them)`);
    assert.equal(twins.conversions, 0, `with the copies ${twins.conversions} residual gradients are still converted (${converted.conversions} without)`);
    dispose();
  } finally {
    device.toBf16 = toBf16;
    backend.gradientTwin = gradientTwin;
    backend.setMatmulPrecision(before);
    await tf.setBackend('cpu');
  }
});

it('frees each node\'s saved tensors and gradients once the backward has passed it (tfjs keeps them all to the end)', async () => {
  await tf.setBackend('cpu');
  const n = 1 << 16, layers = 12, bytes = n * 4;
  const x = tf.variable(tf.randomNormal([n], 0, 1, 'float32', Math.floor(random() * 1e9)));
  // The first node of the forward is the last of the backward: its gradient sees what is still alive then.
  let liveAtEnd = 0;
  const probe = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: (args[0] as tf.Tensor).clone(),
    gradFunc: (dy: tf.Tensor) => { liveAtEnd = tf.memory().numBytes; return [dy.clone()]; },
  }));
  const f = () => {
    let h = probe(x) as tf.Tensor;
    for (let i = 0; i < layers; i++) h = tf.tanh(h.mul(1.1)); // each saves its input or output: one tensor a layer
    return h.sum();
  };
  const measure = (gradients: Gradients) => {
    const base = tf.memory().numBytes, r = gradients(f, [x]);
    tf.dispose([r.value, ...r.grads]);
    return (liveAtEnd - base) / bytes;
  };
  const ours = measure((...args) => engine.gradients(...args)), theirs = measure(tfjsGradients);
  assert.ok(theirs >= layers, `tfjs's backward: ${theirs.toFixed(1)} tensors of [${n}] alive at its end (the test must see them)`);
  assert.ok(ours <= 4, `${ours.toFixed(1)} tensors of [${n}] alive at the end of the backward: saved tensors or gradients were kept`);
  x.dispose();
});

it('leaves no tensor behind, and higher-order gradients still work', async () => {
  await tf.setBackend('cpu');
  const x = tf.variable(tf.randomNormal([3, 5], 0, 1, 'float32', Math.floor(random() * 1e9)));
  const before = tf.memory().numTensors;
  for (let k = 0; k < 3; k++) {
    const { value, grads } = tf.variableGrads(() => x.square().mul(x.sum()).relu().sum() as tf.Scalar, [x]);
    tf.dispose([value, ...Object.values(grads)]);
  }
  assert.equal(tf.memory().numTensors, before);
  const second = tf.grad((a: tf.Tensor) => tf.grad((b: tf.Tensor) => b.pow(3).sum())(a).sum())(tf.tensor1d([1, -2, 3]));
  assert.deepEqual(Array.from(second.dataSync()), [6, -12, 18]);
  tf.dispose([x, second]);
});

it('with one tape, the forward saves its tensors without clone kernels; under a second tape it clones them (for that tape)', async () => {
  await tf.setBackend('cpu');
  const x = tf.tensor1d([0.5, -1.5, 2]), f = (a: tf.Tensor) => a.square().mul(a).sum();
  const identities = async (run: () => tf.Tensor) => {
    const profile = await tf.profile(() => run());
    tf.dispose(profile.result as tf.Tensor);
    return profile.kernels.filter((k) => k.name === 'Identity').length;
  };
  assert.equal(await identities(() => tf.grad(f)(x)), 0, 'first order: no Identity kernel');
  assert.ok(await identities(() => tf.grad((a: tf.Tensor) => tf.grad(f)(a).sum())(x)) > 0, 'second order: the inner forward clones');
  x.dispose();
});

it('with one tape, a gradient that reads only shapes (Reshape, Slice, PadV2, Concat, ...) keeps no buffer: an intermediate only a reshape saved is freed with its scope', async () => {
  registerCudaHostBackend('cuda-host');
  await tf.setBackend('cuda-host');  // device memory counted by the backend (tfjs's numBytes counts shapes)
  try {
    const n = 4096, x = tf.variable(tf.randomNormal([n], 0, 1, 'float32', Math.floor(random() * 1e9)));
    const inUse = () => (tf.backend() as unknown as { device: { memory(): { bytesInUse: number } } }).device.memory().bytesInUse;
    let kept = 0;
    const { value, grads } = tf.variableGrads(() => {
      const before = inUse();
      // x·3 is read only by the reshapes and the slice; the concat's output by Neg, which saves nothing
      const y = tf.tidy(() => tf.concat([x.mul(3).reshape([64, 64]).slice([0, 0], [32, 64]), x.reshape([64, 64]).slice([32, 0], [32, 64])]).neg());
      kept = inUse() - before;
      return y.sum() as tf.Scalar;
    }, [x]);
    // kept: y (n floats) and the scalar 3; before the stand-ins also x·3 and the concat's slices (another 2n)
    assert.ok(kept < 1.5 * 4 * n, `the forward kept ${kept} bytes: more than y's ${4 * n}`);
    const g = grads[x.name].dataSync();
    for (let i = 0; i < n; i++) assert.equal(g[i], i < n / 2 ? -3 : -1, `gradient at ${i}`);
    tf.dispose([x, value, ...Object.values(grads)]);
  } finally {
    await tf.setBackend('cpu');
  }
});

it('starts the variables\' gradients at their sums so far (variableGradsSummed): sum + gradient, the weights\' and the lambdas\' in their kernels, no Add of a weight\'s, a table\'s or a lambda pair\'s shape, the sums handed over freed', async () => {
  registerCudaHostBackend('cuda-host');
  for (const backend of ['cpu', 'cuda-host']) {
    await tf.setBackend(backend);  // cpu: every sum an Add (tfjs's thunks); cuda-host: the backend's fused kernels, on the CPU
    const { names, vars, loss: f, dispose } = perturbedTinyModel({ fp8Head: true, attnGate: true });
    const sums = vars.map((v) => tf.randomNormal(v.shape, 0, 0.01, 'float32', Math.floor(random() * 1e9)));
    const plain = engine.gradients(f, vars, undefined, true);
    const want = plain.grads.map((g, i) => tf.tidy(() => sums[i].add(g)).dataSync().slice());
    tf.dispose([plain.value, ...plain.grads]);
    const tensorsBefore = tf.memory().numTensors - sums.length;  // after a first forward (its caches made)
    let got: { value: tf.Scalar; grads: tf.NamedTensorMap } | null = null;
    const profile = await tf.profile(() => {
      got = variableGradsSummed(f as () => tf.Scalar, new Map(vars.map((v, i) => [v as tf.Variable, sums[i]])));
      return [got.value, ...Object.values(got.grads)];
    });
    const r = got as unknown as { value: tf.Scalar; grads: tf.NamedTensorMap };
    vars.forEach((v, i) => {
      const g = r.grads[v.name];
      assert.ok(g, `a gradient for ${names[i]}`);
      let worst = 0, top = 0;
      const values = g.dataSync();
      for (let j = 0; j < values.length; j++) { worst = Math.max(worst, Math.abs(values[j] - want[i][j])); top = Math.max(top, Math.abs(want[i][j])); }
      // one float32 rounding apart: the GEMM's epilogue rounds once where the Add rounded the product first, and a
      // variable with several gradients adds them to the sum one at a time
      assert.ok(worst <= 1e-6 * top, `${backend}, ${names[i]}: sum + gradient off by ${worst} (largest ${top})`);
    });
    const weights = vars.filter((v, i) => v.rank === 2 && /(qkv|proj|w1|w2|head|attn_gate|embed|value_embed\.\d+)$/.test(names[i]));
    assert.ok(weights.length >= 7, `the test sees the projections, the head and the embeddings: ${weights.length}`);
    const weightAdds = profile.kernels.filter((k) => k.name === 'Add' && weights.some((w) => k.outputShapes[0]?.join() === w.shape.join())).length;
    if (backend === 'cuda-host') assert.equal(weightAdds, 0, 'no Add of a weight\'s shape: Linear, MatMulAdd, the FP8 head and Embedding sum in their kernels');
    else assert.ok(weightAdds >= weights.length, `cpu: tfjs's thunks leave the sums to Adds (${weightAdds})`);
    assert.ok(weights.every((w) => sums[vars.indexOf(w)].isDisposed), 'the weights\' sums are freed once their new sums exist');
    // the block lambdas' and the attention's value lambdas ([2] each): summed in ScaledAddGrad's and AttentionInputsGrad's last pass
    const pairs = vars.filter((v) => v.shape.join() === '2').length;
    const pairAdds = profile.kernels.filter((k) => k.name === 'Add' && k.outputShapes[0]?.join() === '2').length;
    assert.ok(pairs >= 4, `the test sees the lambdas: ${pairs}`);
    if (backend === 'cuda-host') assert.equal(pairAdds, 0, 'no Add of the lambdas\' shape: ScaledAddGrad and AttentionInputsGrad sum them');
    else assert.ok(pairAdds >= pairs, `cpu: tfjs's thunks leave the lambdas' sums to Adds (${pairAdds})`);
    tf.dispose([r.value, ...Object.values(r.grads), ...sums]);
    assert.equal(tf.memory().numTensors, tensorsBefore, 'no tensor left behind');
    dispose();
  }
  await tf.setBackend('cpu');
});

it('variableGradsSummed: the Canon layers\' weights (A, B, C, D) are summed in their gradient kernels, no Add of their shape', async () => {
  registerCudaHostBackend('cuda-host');
  await tf.setBackend('cuda-host');
  const { names, vars, loss: f, dispose } = perturbedTinyModel({ canon: 'ABCD' });
  const canon = vars.filter((_, i) => /canon_[abcd]$/.test(names[i]));
  assert.ok(canon.length >= 4, `the test sees the Canon weights: ${canon.length}`);
  const sums = vars.map((v) => tf.randomNormal(v.shape, 0, 0.01, 'float32', Math.floor(random() * 1e9)));
  const plain = engine.gradients(f, vars, undefined, true);
  const want = canon.map((v) => tf.tidy(() => sums[vars.indexOf(v)].add(plain.grads[vars.indexOf(v)])).dataSync().slice());
  tf.dispose([plain.value, ...plain.grads]);
  let got: { value: tf.Scalar; grads: tf.NamedTensorMap } | null = null;
  const profile = await tf.profile(() => {
    got = variableGradsSummed(f as () => tf.Scalar, new Map(vars.map((v, i) => [v as tf.Variable, sums[i]])));
    return [got.value, ...Object.values(got.grads)];
  });
  const r = got as unknown as { value: tf.Scalar; grads: tf.NamedTensorMap };
  canon.forEach((v, i) => assert.deepEqual(r.grads[v.name].dataSync(), want[i], `${v.name}: the sum so far + its gradient, as the Add's`));
  const adds = profile.kernels.filter((k) => k.name === 'Add' && canon.some((w) => k.outputShapes[0]?.join() === w.shape.join())).length;
  assert.equal(adds, 0, 'no Add of a Canon weight\'s shape: CanonConvGrad and CanonAttentionInputsGrad sum them');
  tf.dispose([r.value, ...Object.values(r.grads), ...sums.filter((s) => !s.isDisposed)]);
  dispose();
  await tf.setBackend('cpu');
});

it('variableGradsSummed names a sum of the wrong shape', async () => {
  await tf.setBackend('cpu');
  const v = tf.variable(tf.ones([2, 3]), true, 'summed_test_w'), wrong = tf.zeros([3, 2]);
  assert.throws(() => variableGradsSummed(() => v.sum() as unknown as tf.Scalar, new Map([[v, wrong]])), /the sum for summed_test_w is float32\[3,2\], the variable float32 \[2,3\]/);
  tf.dispose([v, wrong]);
});
