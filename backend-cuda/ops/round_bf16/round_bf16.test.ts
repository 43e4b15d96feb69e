// The bf16 rounding ('RoundBf16': the device's toBf16 on cuda) and its composite (train_gpt.ts's roundToBf16 without the
// kernel: roundTo with the bf16 format) against a reference from the bits (cuda_harness's bf16(): round to nearest even on
// the float32 bits), on fresh random values over many binades, exact ties, bf16's own values, subnormals, the largest
// finite values and the specials; on the host reference device (CI) and on the GPU where there is one; its output stored
// in bf16 only (and a tensor stored so given back as it is); the hook runs the fused kernel and --fused off the
// composite; bad inputs fail naming the kernel.
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as T from '../../../train_gpt.ts';
import { bf16, checkFusionHook, describeOrSkip, random, storedInBf16, targets, useBackend, withFusedOff } from '../../../test/cuda_harness.ts';
import { ROUND_BF16 } from './round_bf16.ts';

/** Values a rounding can get wrong: random over 2^-140 … 2^100 of both signs, exact ties (half a bf16 step above a bf16
 * value, with an even and an odd last bit), bf16 values themselves, ±0, the subnormals, the largest finite floats, ±∞, NaN. */
function awkwardValues(n: number): Float32Array {
  const v: number[] = [0, -0, Infinity, -Infinity, NaN, 3.4028234663852886e38, -3.3895313892515355e38, 3.3961e38, 1e-45, -1.2e-38, 2 ** -133, 3 * 2 ** -134];
  for (let i = 0; i < n; i++) {
    const magnitude = 2 ** (-140 + 240 * random()) * (1 + random());
    const kind = i % 3, sign = random() < 0.5 ? -1 : 1;
    if (kind === 0) v.push(sign * magnitude);
    else {
      const base = bf16(magnitude), step = 2 ** (Math.floor(Math.log2(base)) - 7);
      v.push(sign * (kind === 1 ? base + step / 2 : base));  // a tie (to even), or a value on the grid
    }
  }
  return Float32Array.from(v);
}

/** got is bf16(values) element by element (a zero's sign aside: the GPU's conversion may give −0 for a negative value
 * that rounds to zero). */
function assertRounded(values: Float32Array, got: ArrayLike<number>, label: string): void {
  for (let i = 0; i < values.length; i++) {
    const want = Math.fround(bf16(values[i]));  // as float32 stores it (past its largest value: ∞)
    if (!Object.is(got[i], want) && !(got[i] === 0 && want === 0)) assert.fail(`${label}: bf16(${values[i]}) is ${want}, got ${got[i]}`);
  }
}

for (const target of targets) {
  describeOrSkip(`fused RoundBf16 on ${target.name}`, target.skip, () => {
    const B = target.name;
    it('RoundBf16 and the composite both equal bf16 rounding of the bits (ties, subnormals, overflow, specials)', async () => {
      await useBackend(B);
      const values = awkwardValues(target.name === 'cuda' ? 200_001 : 3001);
      const x = tf.tensor1d(values);
      const fused = T.roundToBf16(x).dataSync(), composite = await withFusedOff(() => T.roundToBf16(x).dataSync());
      assertRounded(values, fused, 'fused');
      assertRounded(values, composite, 'composite');
      x.dispose();
    });

    it('stores its result in bf16 only, which reads leave so; a tensor stored in bf16 only comes back as it is', async () => {
      await useBackend(B);
      const values = awkwardValues(1000), x = tf.tensor1d(values), y = T.roundToBf16(x);
      assert.ok(storedInBf16(y), 'RoundBf16\'s output is stored in bf16 only');
      assertRounded(values, y.dataSync(), 'stored in bf16');
      assert.ok(storedInBf16(y), 'a read widened it into a scratch buffer, not a float32 copy kept beside it');
      const again = T.roundToBf16(y);
      assert.equal(again.dataId, y.dataId, 'rounding a tensor stored in bf16 gives it back, no copy');
      assert.ok(!storedInBf16(x), 'its input keeps its float32 storage');
      tf.dispose([x, y, again]);
    });

    it('the hook runs the fused kernel, --fused off the composite; bad inputs fail naming it', async () => {
      await useBackend(B);
      const x = tf.tensor2d(awkwardValues(20).slice(0, 32), [4, 8]);
      await checkFusionHook(() => T.roundToBf16(x), { fused: [ROUND_BF16], composite: ['Round'] });
      assert.throws(() => tf.engine().runKernel(ROUND_BF16, { x: tf.zeros([2], 'int32') }, {}), /RoundBf16: x must be float32, got int32\[2\]/);
      assert.throws(() => tf.engine().runKernel(ROUND_BF16, {}, {}), /RoundBf16: input x is missing/);
      x.dispose();
    });
  });
}
