// CPU reference of fp8_matmul.cu's launcher, on the host device's memory (tests without a GPU), and the FP8 codes
// the host device's matmulFp8 decodes. Rounding here works on the table of the format's 256 values (the nearest
// of them, ties to the even code), a third derivation beside train_gpt.ts's float32 ops and the tests' float64 one.
import type { HostDevice } from '../../host_device.ts';
import type { Fp8MatmulNative } from './kernel.ts';

/** The value of each of the 256 codes (sign, exponent, mantissa bits): e4m3fn (bias 7, no infinity, S.1111.111 is
 * NaN) or e5m2 (bias 15, IEEE-like: exponent 31 is ±inf or NaN). */
function decodeTable(e5m2: boolean): Float64Array {
  const M = e5m2 ? 2 : 3, bias = e5m2 ? 15 : 7, top = e5m2 ? 31 : 15, values = new Float64Array(256);
  for (let c = 0; c < 256; c++) {
    const sign = c & 0x80 ? -1 : 1, e = (c >> M) & top, m = c & ((1 << M) - 1);
    let v: number;
    if (e5m2 && e === top) v = m === 0 ? Infinity : NaN;
    else if (!e5m2 && e === top && m === 7) v = NaN;
    else v = e === 0 ? m * 2 ** (1 - bias - M) : (1 + m / 2 ** M) * 2 ** (e - bias);
    values[c] = sign * v;
  }
  return values;
}

export const FP8_VALUES = { e4m3: decodeTable(false), e5m2: decodeTable(true) };

/** The code of x rounded to the format, ties to the even code (its mantissa's last bit); past the largest finite
 * value by half its spacing or more, NaN (e4m3: 0x7F) or ±inf (e5m2), as a non-saturating cast. */
export function fp8Code(x: number, e5m2: boolean): number {
  const values = e5m2 ? FP8_VALUES.e5m2 : FP8_VALUES.e4m3, maxCode = e5m2 ? 0x7b : 0x7e;
  if (Number.isNaN(x)) return 0x7f;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0, a = Math.abs(x);  // −0 keeps its sign, as the hardware's conversion
  // codes 0 … maxCode hold the non-negative finite values in increasing order
  let lo = 0, hi = maxCode;
  if (a >= values[maxCode]) {
    const next = 2 * values[maxCode] - values[maxCode - 1];  // the value one code above the largest, if the format had it
    const mid = (values[maxCode] + next) / 2;
    if (a < mid || (a === mid && (maxCode & 1) === 0)) return sign | maxCode;
    return e5m2 ? sign | 0x7c : 0x7f;
  }
  while (hi - lo > 1) {  // values[lo] ≤ a < values[hi]
    const m = (lo + hi) >> 1;
    if (values[m] <= a) lo = m; else hi = m;
  }
  const dLo = a - values[lo], dHi = values[hi] - a;
  return sign | (dLo < dHi || (dLo === dHi && (lo & 1) === 0) ? lo : hi);
}

export function fp8MatmulHost(mem: HostDevice): Fp8MatmulNative {
  return {
    fp8Quantise(x, xBf16, rows, cols, scale, e5m2, out, outT) {
      const n = rows * cols;
      if (n === 0) return;
      const s = Math.fround(scale);
      const xs = xBf16 ? mem.bf16Floats(x, n) : mem.floats(x, n);
      const o = out ? mem.bytes(out, n) : null, oT = outT ? mem.bytes(outT, n) : null;
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const code = fp8Code(Math.fround(xs[r * cols + c] / s), e5m2);  // the float32 quotient, as the kernel's
          if (o) o[r * cols + c] = code;
          if (oT) oT[c * rows + r] = code;
        }
      }
    },
  };
}
