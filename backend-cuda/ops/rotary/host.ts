// CPU reference of rotary.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { RotaryNative } from './kernel.ts';

export function rotaryHost(mem: HostDevice): RotaryNative {
  return {
    rotary(x, xBf16, cos, sin, y, yBf16, B, T, H, half, inverse) {
      const n = B * T * H * 2 * half;
      if (n === 0) return;
      const yv = mem.output(y, n, yBf16);
      turnHeads(mem.input(x, n, xBf16), yv, mem.floats(cos, T * half), mem.floats(sin, T * half), B * T * H, T, H, half, inverse ? -1 : 1);
      mem.flush(y, yv, yBf16);
    },
    normedRotary(x, xBf16, cos, sin, y, yBf16, B, T, H, half, eps) {
      const n = B * T * H * 2 * half;
      if (n === 0) return;
      const xv = mem.input(x, n, xBf16), yv = mem.output(y, n, yBf16);
      turnHeads(xv, yv, mem.floats(cos, T * half), mem.floats(sin, T * half), B * T * H, T, H, half, 1, (o) => rowRstd(xv, o, 2 * half, eps));
      mem.flush(y, yv, yBf16);
    },
    normedRotaryGrad(dy, x, xBf16, cos, sin, dx, B, T, H, half, eps) {
      const n = B * T * H * 2 * half;
      if (n === 0) return;
      const g = mem.floats(dy, n), xv = mem.input(x, n, xBf16), dxv = mem.floats(dx, n), c = mem.floats(cos, T * half), s = mem.floats(sin, T * half);
      for (let row = 0; row < B * T * H; row++) {
        const t = Math.floor(row / H) % T, o = row * 2 * half, rstd = rowRstd(xv, o, 2 * half, eps);
        const turned = new Float64Array(2 * half);  // the transpose rotation of dy
        for (let j = 0; j < half; j++) {
          const d1 = g[o + j], d2 = g[o + half + j], cj = c[t * half + j], sj = s[t * half + j];
          turned[j] = d1 * cj - d2 * sj;
          turned[half + j] = d1 * sj + d2 * cj;
        }
        let dot = 0;
        for (let j = 0; j < 2 * half; j++) dot += turned[j] * xv[o + j] * rstd;
        for (let j = 0; j < 2 * half; j++) dxv[o + j] = rstd * (turned[j] - xv[o + j] * rstd * (dot / (2 * half)));
      }
    },
  };
}

/** Each head (row of 2·half at o = row·2·half) of x, times scale(o) (1 without), turned into y: the pair (j, j + half)
 * of token t by the tables' [t, j], sin times sign (−1: back). */
function turnHeads(x: Float32Array, y: Float32Array, c: Float32Array, s: Float32Array, rows: number, T: number, H: number, half: number,
  sign: number, scale: (o: number) => number = () => 1): void {
  for (let row = 0; row < rows; row++) {
    const t = Math.floor(row / H) % T, o = row * 2 * half, k = scale(o);
    for (let j = 0; j < half; j++) {
      const x1 = x[o + j] * k, x2 = x[o + half + j] * k, cj = c[t * half + j], sj = sign * s[t * half + j];
      y[o + j] = x1 * cj + x2 * sj;
      y[o + half + j] = x2 * cj - x1 * sj;
    }
  }
}

/** (mean x² + eps)^-½ over the row of `len` values at `offset`. */
function rowRstd(x: Float32Array, offset: number, len: number, eps: number): number {
  let ss = 0;
  for (let j = 0; j < len; j++) ss += x[offset + j] ** 2;
  return 1 / Math.sqrt(ss / len + eps);
}
