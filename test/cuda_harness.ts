// Shared by the cuda backend's tests: the backends under test, random inputs, and the comparison of
// one computation on the cpu backend (the reference) and on a backend under test.
//   'cuda-host': the backend's TypeScript layer on the host reference device (always runs; CI).
//   'cuda':      the real GPU backend (skips with the reason where cudaAvailability() is not ok).
import '../tfjs_node.ts'; // gradients, chained ops and the cpu backend
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CudaBackend } from '../backend-cuda/backend.ts';
import { cudaAvailability, registerCudaBackend } from '../backend-cuda/index.ts';
import { registerCudaHostBackend } from '../backend-cuda/host_device.ts';
import { attnScheduleAt, type Config, createModel, disposeBatch, disposeModel, initRope, modelLoss, type RopeState, roundToBf16, toDevice, useFusedKernels } from '../train_gpt.ts';
import { random } from './seed.ts';

// Re-exported: the cuda tests draw their other random values through the harness.
export { random };

export interface Target {
  name: 'cuda-host' | 'cuda';
  /** false, or why the suite is skipped */
  skip: string | false;
  /** a size that is large for this target (GPU: over a million elements) */
  big: number;
}

const availability = cudaAvailability();
if (!availability.ok) console.log(`# cuda GPU tests skipped: ${availability.reason}`);

export const targets: Target[] = [
  { name: 'cuda-host', skip: false, big: 4099 },
  { name: 'cuda', skip: availability.ok ? false : `no usable GPU: ${availability.reason}`, big: (1 << 20) + 7 },
];

/**
 * describe(), or where `skip` gives a reason, a suite of one skipped test carrying it: node's runner counts no
 * test of a suite skipped as a whole (describe(name, { skip })), so its summary would say `skipped 0`.
 */
export function describeOrSkip(name: string, skip: string | false, fn: () => void): void {
  if (skip === false) describe(name, fn);
  else describe(name, () => it(`skipped: ${skip}`, { skip }, () => {}));
}

export async function useBackend(name: string): Promise<void> {
  if (name === 'cuda-host') registerCudaHostBackend('cuda-host');
  else if (name === 'cuda' && tf.findBackendFactory('cuda') == null) await registerCudaBackend({ matmulPrecision: 'fp32' });
  if (!(await tf.setBackend(name))) throw new Error(`backend ${name} failed to start`);
}

/** Whether tensor t is stored in bf16 only on the current cuda backend (backend.ts's makeBf16Only: no float32 buffer). */
export const storedInBf16 = (t: tf.Tensor): boolean => (tf.backend() as CudaBackend).data.get(t.dataId).bf16Only === true;

/** t rounded to bf16 and stored in bf16 only (as a kernel's bf16 output is), and the same values as an ordinary float32
 * tensor: a kernel that reads its input as stored must give the same results from either, and leave the first bf16
 * only (storedInBf16). */
export function bf16OnlyAndFloat32(t: tf.Tensor): [tf.Tensor, tf.Tensor] {
  const stored = roundToBf16(t);
  assert.ok(storedInBf16(stored), 'the bf16 test tensor is stored in bf16 only');
  return [stored, tf.tensor(stored.dataSync(), stored.shape)];
}

/** f() with the cuda backend's matmul precision set to `precision`, then set back. */
export function atMatmulPrecision<R>(precision: 'bf16' | 'fp32', f: () => R): R {
  const backend = tf.backend() as CudaBackend, before = backend.matmulPrecision;
  backend.setMatmulPrecision(precision);
  try {
    return f();
  } finally {
    backend.setMatmulPrecision(before);
  }
}

/** Device bytes in use (the backend's buffers: a view that shares one counts once). */
export const bytesInUse = (): number => (tf.memory() as tf.MemoryInfo & { numBytesInGPU: number }).numBytesInGPU;

/** x rounded to the nearest bf16 (8 significant bits; subnormal below 2^-126 as float32), ties to even: by
 * arithmetic, not by bits as the backends do. */
export function bf16(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const ulp = 2 ** (Math.max(Math.floor(Math.log2(Math.abs(x))), -126) - 7), q = x / ulp, r = Math.round(q);
  return (Math.abs(q % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r) * ulp;
}

export type HostTensor = { shape: number[]; dtype: 'float32' | 'int32' | 'bool'; values: Float32Array | Int32Array | Uint8Array };

export function randFloat(shape: number[], lo = -2, hi = 2): HostTensor {
  const v = new Float32Array(tf.util.sizeFromShape(shape));
  for (let i = 0; i < v.length; i++) v[i] = lo + (hi - lo) * random();
  return { shape, dtype: 'float32', values: v };
}
export function randInt(shape: number[], lo: number, hi: number): HostTensor {  // [lo, hi)
  const v = new Int32Array(tf.util.sizeFromShape(shape));
  for (let i = 0; i < v.length; i++) v[i] = lo + Math.floor((hi - lo) * random());
  return { shape, dtype: 'int32', values: v };
}
export function randBool(shape: number[]): HostTensor {
  const v = new Uint8Array(tf.util.sizeFromShape(shape));
  for (let i = 0; i < v.length; i++) v[i] = random() < 0.5 ? 1 : 0;
  return { shape, dtype: 'bool', values: v };
}

/** Document ids [B,T]: each row starts a document at t = 0 and at random later positions (about every 5 tokens). */
export function randomDocIds(B: number, T: number): HostTensor {
  const values = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let doc = 0;
    for (let t = 0; t < T; t++) {
      if (t > 0 && random() < 0.2) doc++;
      values[b * T + t] = doc;
    }
  }
  return { shape: [B, T], dtype: 'int32', values };
}

/** Random rotary frequencies for head size h: all h/2 rotate ('full'), or the first ⌈h/4⌉ and the rest are
 * stationary ('half', the speedrun's half-truncated RoPE: their tables hold cos = 1, sin = 0). */
export function randomRope(h: number, kind: 'full' | 'half'): RopeState {
  const half = h / 2, moving = kind === 'full' ? half : Math.ceil(half / 2);
  const freqs = Float32Array.from({ length: half }, (_, j) => (j < moving ? 0.01 + random() : 0));
  return { freqs, attnScale: 1, version: 0 };
}

type Result = { shape: number[]; dtype: string; values: Float32Array | Int32Array | Uint8Array };

async function runOn(backend: string, inputs: HostTensor[], fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[]): Promise<Result[]> {
  await useBackend(backend);
  const xs = inputs.map(h => tf.tensor(h.values, h.shape, h.dtype));
  const out = fn(...xs);
  const outs = Array.isArray(out) ? out : [out];
  const res = outs.map(t => ({ shape: t.shape, dtype: t.dtype, values: t.dataSync() as Result['values'] }));
  tf.dispose([...xs, ...outs]);
  return res;
}

export interface Tolerance { rtol?: number; atol?: number }

/** Runs fn on `target` and refFn (default fn) on cpu, and asserts equal shapes, dtypes and values (within tolerance for floats). */
export async function compare(target: string, label: string, inputs: HostTensor[], fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  tol: Tolerance = {}, refFn = fn): Promise<void> {
  const want = await runOn('cpu', inputs, refFn);
  const got = await runOn(target, inputs, fn);
  assert.equal(got.length, want.length, `${label}: number of outputs`);
  const rtol = tol.rtol ?? 1e-5, atol = tol.atol ?? 1e-6;
  for (let o = 0; o < want.length; o++) {
    const w = want[o], g = got[o];
    assert.deepEqual(g.shape, w.shape, `${label}: output ${o} shape`);
    assert.equal(g.dtype, w.dtype, `${label}: output ${o} dtype`);
    assert.equal(g.values.length, w.values.length, `${label}: output ${o} size`);
    for (let i = 0; i < w.values.length; i++) {
      const a = g.values[i], b = w.values[i];
      if (Number.isNaN(b) && Number.isNaN(a)) continue;
      const ok = w.dtype === 'float32' ? Math.abs(a - b) <= atol + rtol * Math.abs(b) : a === b;
      if (!ok) assert.fail(`${label}: output ${o} [${w.shape}] differs at flat index ${i}: ${target} ${a}, cpu ${b}`);
    }
  }
}

/** ‖a − b‖ / max(‖b‖, floor) */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), floor, 1e-30);
}

/**
 * Each parameter's gradient error ‖got − want‖/‖want‖, where a scalar's ‖want‖ counts as at least a tenth of the
 * largest scalar gradient. A scalar's gradient is a sum over every position that can cancel to near 0
 * (backout_lambda's once did, to 4e-5 beside others of 1e-2, TEST_SEED=2796104986 in scaled_add's test; sas-p's
 * beta_sa on cuda-host against cpu, TEST_SEED=1687707929): two float32 sums in different orders then differ by the
 * rounding of the terms, not of the sum.
 */
export function gradientErrors(got: Map<string, Float32Array>, want: Map<string, Float32Array>): Map<string, number> {
  const isScalar = (g: Float32Array): boolean => g.length <= 4; // the lambdas, gates' scalars and the like
  const scalarFloor = 0.1 * Math.max(0, ...[...want.values()].filter(isScalar).flatMap((g) => Array.from(g, Math.abs)));
  return new Map([...want].map(([name, w]) => [name, relError(got.get(name)!, w, isScalar(w) ? scalarFloor : 0)]));
}

/** The names of the kernels fn runs, in order (what a fused hook ran, or the composite's kernels), less Identity (the
 * tape's clones of saved inputs: a reference, no copy). */
export async function kernelsRun(fn: () => tf.TensorContainer): Promise<string[]> {
  const profile = await tf.profile(() => tf.dispose(fn()));
  return profile.kernels.map(k => k.name).filter(k => k !== 'Identity');
}

/** fn() with train_gpt.ts's fused kernels off (--fused off: the composites run), switched back on after. */
export async function withFusedOff<R>(fn: () => R | Promise<R>): Promise<R> {
  useFusedKernels(false);
  try {
    return await fn();
  } finally {
    useFusedKernels(true);
  }
}

/**
 * train_gpt.ts's fusion hook switches: `run` launches every `fused` kernel and none of `compositeOnly` with fused
 * kernels on, and with them off (--fused off) none of `fused` and every one of `composite`.
 */
export async function checkFusionHook(run: () => tf.TensorContainer, kernels: { fused: string[]; composite: string[]; compositeOnly?: string[] }): Promise<void> {
  const on = await kernelsRun(run);
  for (const k of kernels.fused) assert.ok(on.includes(k), `${k} did not run: ${on.join(', ')}`);
  for (const k of kernels.compositeOnly ?? kernels.composite) assert.ok(!on.includes(k), `composite kernel ${k} ran: ${on.join(', ')}`);
  const off = await withFusedOff(() => kernelsRun(run));
  for (const k of kernels.fused) assert.ok(!off.includes(k), `${k} ran with fused kernels off: ${off.join(', ')}`);
  for (const k of kernels.composite) assert.ok(off.includes(k), `composite kernel ${k} did not run with fused kernels off: ${off.join(', ')}`);
}

/**
 * A micro model of `cfg`, every parameter perturbed by N(0, 0.2), on 2 rows of 16 tokens whose documents start at the
 * flat positions `docStarts`: each kernel of `kernelCounts` runs that many times in one forward and backward, and the
 * loss and every parameter's gradient equal those of --fused off (the loss within 1e-5 relative, each gradient within
 * 1e-4 by gradientErrors).
 */
export async function checkModelKernels(cfg: Config, docStarts: number[], kernelCounts: Record<string, number>): Promise<void> {
  const m = createModel(cfg);
  for (const v of m.params.values()) tf.tidy(() => v.assign(v.add(tf.randomNormal(v.shape, 0, 0.2, 'float32', Math.floor(random() * 1e9)))));
  const tokens = Int32Array.from({ length: 32 }, (_, i) => (docStarts.includes(i) ? cfg.bosToken : Math.floor(random() * 60)));
  const batch = toDevice({ inputs: tokens, targets: tokens.map(t => (t * 7) % 60), B: 2, T: 16 }, cfg.bosToken);
  const sched = attnScheduleAt(2, initRope(cfg), cfg);
  const lossAndGrads = () => tf.variableGrads(() => modelLoss(m, batch, sched, 'mean'));
  const read = (r: ReturnType<typeof lossAndGrads>) => {
    const out = { loss: r.value.dataSync()[0], grads: new Map([...m.params].map(([n, v]) => [n, r.grads[v.name].dataSync() as Float32Array])) };
    tf.dispose([r.value, ...Object.values(r.grads)]);
    return out;
  };
  try {
    const names = await kernelsRun(() => { const r = lossAndGrads(); return [r.value, ...Object.values(r.grads)]; });
    for (const [kernel, n] of Object.entries(kernelCounts)) assert.equal(names.filter(k => k === kernel).length, n, `${kernel} runs: ${names.join(', ')}`);
    const fused = read(lossAndGrads());
    const composite = await withFusedOff(() => read(lossAndGrads()));
    assert.ok(Math.abs(fused.loss - composite.loss) <= 1e-5 * Math.abs(composite.loss), `loss ${fused.loss} fused vs ${composite.loss} composite`);
    for (const [name, err] of gradientErrors(fused.grads, composite.grads)) assert.ok(err < 1e-4, `gradient of ${name}: relative error ${err}`);
  } finally {
    disposeBatch(batch);
    disposeModel(m);
  }
}
