// The FP8 head's cuda kernels ('Fp8Matmul', 'Fp8MatmulGrad': fp8_matmul.cu's quantisation and the device's cuBLASLt
// FP8 GEMMs) against their oracle, train_gpt.ts's composite (roundToFp8 and the customGrad head) on the cpu backend:
// the quantised codes bit for bit (specials and thresholds included, float32 and bf16 input, both layouts), then z,
// dx and dW through train_gpt.ts's hook (fp8Head → runFused) on fresh random inputs; dy stored in bf16 only read as
// stored; the hook's fallbacks; bad inputs.
// Tolerance of the products: both sides multiply the same FP8 operands (the codes are checked equal first), so they
// differ only in accumulation: float32 on cpu; on the GPU the tensor cores' accumulator, which keeps about 14 bits
// inside an MMA (DeepSeek-V3 report, §3.3.2: "around 14 bits" on H800) and, with fast accumulation (the forward, as the
// record's), is never promoted to fp32 along k. Hence |Δ| ≤ 2⁻⁸·Σ_k|a_k·b_k| forward and 2⁻¹¹·Σ_k|a_k·b_k| backward
// (promoted every few MMAs), scaled as the outputs; the host device sums in float64: 1e-6 (float32 accumulation on cpu).
// A wrong scale, layout or operand would be off by O(1) of Σ|a·b|.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it, mock } from 'node:test';
import * as T from '../../../train_gpt.ts';
import type { CudaBackend } from '../../backend.ts';
import { FP8_MATMUL, FP8_MATMUL_GRAD } from './fp8_matmul.ts';
import { FP8_VALUES, fp8Code } from './host.ts';
import { describeOrSkip, kernelsRun, random, randFloat, targets, useBackend, type HostTensor } from '../../../test/cuda_harness.ts';

const FORMATS = ['e4m3', 'e5m2'] as const;

/** Values that probe the conversion: thresholds (e4m3 464 → 448, above → NaN; e5m2 61440 → ∞), ties, subnormals,
 * specials, and random values over many binades (dividing by `scale` maps them around the format's range). */
function probeValues(n: number, scale: number): Float32Array {
  const special = [0, -0, 448, 464, 464.00003, -465, 480, 57344, 61439.996, 61440, -61440, 1e30, Infinity, -Infinity, NaN,
    2 ** -9, 2 ** -10, 3 * 2 ** -10, 2 ** -16, 2 ** -17, 3 * 2 ** -17, 1.0625, 1.1875, 1.125, 1.375, 2 ** -6, 2 ** -14];
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    v[i] = i < special.length ? special[i] * scale : (random() < 0.5 ? -1 : 1) * 2 ** (-20 + 38 * random()) * scale;
  }
  return v;
}

/** bf16 bits of float32 values, round to nearest even (as the backend's bf16 copies). */
function bf16Bits(v: Float32Array): Uint16Array {
  const u = new Uint32Array(v.buffer.slice(0)), out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = (u[i] & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) & 0xffff;
  return out;
}

/** [z, dx, dw] of the FP8 head for dy: the fused kernels where the backend has them (the composite on cpu). */
const headAndGrads = (x: tf.Tensor, w: tf.Tensor, dy: tf.Tensor): tf.Tensor[] =>
  [T.fp8Head(x as tf.Tensor2D, w as tf.Tensor2D), ...tf.grads((a: tf.Tensor, b: tf.Tensor) => T.fp8Head(a as tf.Tensor2D, b as tf.Tensor2D))([x, w], dy)];

/** On cpu: Σ_k|a_k·b_k|, scaled as each output, from the composite's own FP8 operands. */
function absProducts(x: tf.Tensor2D, w: tf.Tensor2D, dy: tf.Tensor2D): Float32Array[] {
  const { xScale, wScale, gradScale } = T.fp8HeadScales(x.shape[1]);
  return tf.tidy(() => {
    const x8 = T.roundToFp8(x.div(xScale), 'e4m3').abs(), w8 = T.roundToFp8(w.div(wScale), 'e4m3').abs();
    const g8 = T.roundToFp8(dy.div(gradScale), 'e5m2').abs();
    return [tf.matMul(x8, w8).mul(xScale * wScale), tf.matMul(g8, w8, false, true).mul(gradScale * wScale),
      tf.matMul(x8, g8, true, false).mul(xScale * gradScale)].map((t) => t.dataSync() as Float32Array);
  });
}

async function run(backend: string, inputs: HostTensor[], fn: (...xs: tf.Tensor[]) => tf.Tensor[]): Promise<Float32Array[]> {
  await useBackend(backend);
  const xs = inputs.map((h) => tf.tensor(h.values, h.shape, h.dtype));
  const outs = fn(...xs), values = outs.map((t) => t.dataSync() as Float32Array);
  tf.dispose([...xs, ...outs]);
  return values;
}

/** The composite's [z, dx, dW] on cpu for inputs [x, w, dy], and Σ|a·b| of each (absProducts). */
async function reference(inputs: HostTensor[]): Promise<{ want: Float32Array[]; bounds: Float32Array[] }> {
  const want = await run('cpu', inputs, headAndGrads);
  const [x, w, dy] = inputs.map((h) => tf.tensor2d(h.values as Float32Array, h.shape as [number, number]));
  const bounds = absProducts(x, w, dy);
  tf.dispose([x, w, dy]);
  return { want, bounds };
}

/** got within rel[o]·Σ|a·b| of want, output by output. */
function assertWithin(got: Float32Array[], { want, bounds }: { want: Float32Array[]; bounds: Float32Array[] }, rel: number[], names: string[], what: string): void {
  names.forEach((name, o) => {
    for (let i = 0; i < want[o].length; i++) {
      const tol = rel[o] * bounds[o][i] + 1e-30;
      if (!(Math.abs(got[o][i] - want[o][i]) <= tol)) assert.fail(`${name} ${what} at ${i}: ${got[o][i]}, the composite ${want[o][i]}, tolerance ${tol}`);
    }
  });
}

for (const target of targets) {
  describeOrSkip(`fused Fp8Matmul on ${target.name}`, target.skip, () => {
    const B = target.name;
    const rel = B === 'cuda' ? [2 ** -8, 2 ** -11, 2 ** -11] : [1e-6, 1e-6, 1e-6];

    it('fp8Quantise writes the codes of the composite\'s rounding, bit for bit: e4m3 and e5m2, float32 and bf16 input, row-major and transposed', async () => {
      await useBackend(B);
      const backend = tf.backend() as CudaBackend, dev = backend.device;
      for (const [rows, cols] of [[4, 8], [64, 64], [68, 132], [16, 1040]]) {
        for (const [format, scale] of FORMATS.flatMap((f) => [[f, 1], [f, f === 'e5m2' ? 1 / 448 : Math.sqrt(768) / 448]] as const)) {
          const e5m2 = format === 'e5m2', n = rows * cols;
          const x = probeValues(n, scale);  // scale 1: the thresholds exactly; the head's scales: its quotients
          for (const bf16 of [false, true]) {
            const bits = bf16 ? bf16Bits(x) : null, input = bits ? new Float32Array(new Uint32Array(Array.from(bits, (b) => b << 16)).buffer) : x;
            const xp = dev.alloc(n * (bf16 ? 2 : 4)), out = dev.alloc(n), outT = dev.alloc(n);
            try {
              dev.upload(xp, bits ? new Uint8Array(bits.buffer) : x);
              dev.fp8Quantise(xp, bf16, rows, cols, scale, e5m2, out, outT);
              const codes = new Uint8Array(dev.readSync(out, n)), codesT = new Uint8Array(dev.readSync(outT, n));
              // the composite's rounding of the same float32 quotients (its ops on this backend), and the host reference's codes
              const want = tf.tidy(() => T.roundToFp8(tf.tensor1d(input).div(scale), format).dataSync());
              for (let r = 0; r < rows; r++) {
                for (let c = 0; c < cols; c++) {
                  const i = r * cols + c, got = FP8_VALUES[format][codes[i]], label = `${format} ${bf16 ? 'bf16' : 'f32'} [${rows},${cols}] at ${i}: x ${input[i]}`;
                  assert.ok(Number.isNaN(want[i]) ? Number.isNaN(got) : got === want[i], `${label}: code ${codes[i]} = ${got}, the composite rounds to ${want[i]}`);
                  assert.equal(codes[i], fp8Code(Math.fround(input[i] / Math.fround(scale)), e5m2), `${label}: the host reference's code`);
                  assert.equal(codesT[c * rows + r], codes[i], `${label}: the transposed layout`);
                }
              }
            } finally {
              for (const p of [xp, out, outT]) dev.free(p);
            }
          }
        }
      }
    });

    it('z, dx and dW through train_gpt.ts\'s hook match the composite on cpu (tolerance from the accumulation, see the top)', async () => {
      const shapes = [[16, 16, 16], [32, 48, 80], [64, 32, 16]];
      if (B === 'cuda') shapes.push([256, 768, 1024]);
      for (const [N, d, V] of shapes) {
        const x = randFloat([N, d], -2, 2), w = randFloat([d, V], -0.3, 0.3), dy = randFloat([N, V], -1e-3, 1e-3);
        x.values[0] = Math.sqrt(d);  // the largest entry a normed row can hold: 448 after the scale
        const ref = await reference([x, w, dy]);
        assertWithin(await run(B, [x, w, dy], headAndGrads), ref, rel, ['z', 'dx', 'dW'], `[${N},${d}]·[${d},${V}] on ${B}`);
      }
    });

    it('dy stored only in bf16 (the fused cross-entropy\'s dlogits under bf16 matmul precision) is read as stored, not widened', async () => {
      await useBackend(B);
      const backend = tf.backend() as CudaBackend;
      const [N, d, V] = [32, 16, 48];
      const x = randFloat([N, d]), w = randFloat([d, V], -0.3, 0.3), o = randFloat([N, V], -2e-3, 2e-3), g = randFloat([N], -3, 3);
      backend.setMatmulPrecision('bf16');
      let dyValues: Float32Array, fused: Float32Array[];
      try {
        const [xt, wt] = [tf.tensor2d(x.values as Float32Array, [N, d]), tf.tensor2d(w.values as Float32Array, [d, V])];
        // HeadGate's output is bf16-only under bf16 precision (makeBf16Output): [1, N, 1, V] viewed as [N, V]
        const dy = T.headGate(tf.tensor4d(o.values as Float32Array, [1, N, 1, V]), tf.tensor3d(g.values as Float32Array, [1, N, 1])).reshape([N, V]);
        assert.equal(backend.data.get(dy.dataId).bf16Only, true, 'the test\'s dy is bf16-only');
        const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => T.fp8Head(a as tf.Tensor2D, b as tf.Tensor2D))([xt, wt], dy);
        assert.equal(backend.data.get(dy.dataId).bf16Only, true, 'no float32 copy of dy was made');
        fused = grads.map((t) => t.dataSync() as Float32Array);
        dyValues = dy.dataSync() as Float32Array;  // widened here, for the reference
        tf.dispose([xt, wt, dy, ...grads]);
      } finally {
        backend.setMatmulPrecision('fp32');
      }
      const { want, bounds } = await reference([x, w, { shape: [N, V], dtype: 'float32', values: dyValues }]);
      assertWithin(fused, { want: want.slice(1), bounds: bounds.slice(1) }, rel.slice(1), ['dx', 'dW'], `with a bf16-only dy on ${B}`);
    });

    it('the hook runs the fused kernels; --fused off and shapes that are not multiples of 16 run the composite (the latter said once)', async () => {
      await useBackend(B);
      const make = (N: number, d: number, V: number) => [randFloat([N, d]), randFloat([d, V], -0.3, 0.3), randFloat([N, V], -1e-3, 1e-3)]
        .map((h) => tf.tensor(h.values, h.shape));
      const [x, w, dy] = make(32, 16, 48);
      const fused = await kernelsRun(() => headAndGrads(x, w, dy));
      for (const k of [FP8_MATMUL, FP8_MATMUL_GRAD]) assert.ok(fused.includes(k), `${k} did not run: ${fused.join(', ')}`);
      assert.ok(!fused.includes('Round') && !fused.includes('BatchMatMul'), `composite kernels ran: ${fused.join(', ')}`);
      T.useFusedKernels(false);
      try {
        const composite = await kernelsRun(() => headAndGrads(x, w, dy));
        assert.ok(!composite.includes(FP8_MATMUL) && composite.includes('Round'), `--fused off: ${composite.join(', ')}`);
      } finally {
        T.useFusedKernels(true);
      }
      const nBad = B === 'cuda' ? 24 : 20;  // a note is said once per process: each target its own
      const [x2, w2, dy2] = make(nBad, 16, 48);
      const log = mock.method(console, 'log', () => {});
      try {
        for (let i = 0; i < 2; i++) {
          const ran = await kernelsRun(() => headAndGrads(x2, w2, dy2));
          assert.ok(!ran.includes(FP8_MATMUL) && ran.includes('Round'), `N = ${nBad}: ${ran.join(', ')}`);
        }
        const notes = log.mock.calls.map((c) => String(c.arguments[0])).filter((s) => s.includes(FP8_MATMUL));
        assert.deepEqual(notes, [`note: ${FP8_MATMUL}: N = ${nBad}, d = 16, V = 48 are not all positive multiples of 16 (cuBLASLt's FP8 GEMMs); the composite runs instead`]);
      } finally {
        log.mock.restore();
      }
      tf.dispose([x, w, dy, x2, w2, dy2]);
    });

    it('rejects bad inputs with an error naming the kernel', async () => {
      await useBackend(B);
      tf.tidy(() => {
        const attrs = { ...T.fp8HeadScales(16) };
        const run = (kernel: string, inputs: tf.NamedTensorMap, a: object = attrs) => () => tf.engine().runKernel(kernel, inputs, a as tf.NamedAttrMap);
        const x = tf.zeros([32, 16]), w = tf.zeros([16, 48]);
        assert.throws(run(FP8_MATMUL, { x, w: tf.zeros([32, 48]) }), /Fp8Matmul: x must be \[N,d\] and w \[d,V\], got x float32\[32,16\] and w float32\[32,48\]/);
        assert.throws(run(FP8_MATMUL, { x: tf.zeros([20, 16]), w }), /Fp8Matmul: N = 20, d = 16, V = 48 must be positive multiples of 16/);
        assert.throws(run(FP8_MATMUL, { x: tf.zeros([32, 16], 'int32'), w }), /Fp8Matmul: x must be float32/);
        assert.throws(run(FP8_MATMUL, { x, w }, { xScale: 1, wScale: 1 }), /Fp8Matmul: attr gradScale must be a finite number/);
        assert.throws(run(FP8_MATMUL_GRAD, { dy: tf.zeros([32, 16]), x, w }), /Fp8MatmulGrad: dy float32\[32,16\] must be \[N,V\] = \[32,48\]/);
        assert.throws(run(FP8_MATMUL_GRAD, { x, w }), /Fp8MatmulGrad: input dy is missing/);
      });
      const dev = (tf.backend() as CudaBackend).device, a = dev.alloc(256), out = dev.alloc(1024);
      try {
        assert.throws(() => dev.matmulFp8(a, true, a, true, out, false, 16, 16, 16, 1, false, 0), /matmulFp8: cuBLASLt has no e5m2 × e5m2 kernel/);
        assert.throws(() => dev.matmulFp8(a, false, a, false, out, false, 16, 16, 8, 1, false, 0), /matmulFp8: m, n and k must be (positive )?multiples of 16|m = 16, n = 16, k = 8 must be multiples of 16/);
      } finally {
        dev.free(a);
        dev.free(out);
      }
    });
  });
}
