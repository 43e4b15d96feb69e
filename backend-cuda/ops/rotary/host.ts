// CPU reference of rotary.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { RotaryNative } from './kernel.ts';

export function rotaryHost(mem: HostDevice): RotaryNative {
  return {
    rotary(x, xBf16, cos, sin, y, yBf16, B, T, H, half, inverse) {
      const n = B * T * H * 2 * half;
      if (n === 0) return;
      const xv = mem.input(x, n, xBf16), yv = mem.output(y, n, yBf16), c = mem.floats(cos, T * half), s = mem.floats(sin, T * half);
      const sign = inverse ? -1 : 1;
      for (let row = 0; row < B * T * H; row++) {
        const t = Math.floor(row / H) % T, o = row * 2 * half;
        for (let j = 0; j < half; j++) {
          const x1 = xv[o + j], x2 = xv[o + half + j], cj = c[t * half + j], sj = sign * s[t * half + j];
          yv[o + j] = x1 * cj + x2 * sj;
          yv[o + half + j] = x2 * cj - x1 * sj;
        }
      }
      mem.flush(y, yv, yBf16);
    },
    normedRotary(x, xBf16, cos, sin, y, yBf16, B, T, H, half, eps) {
      const n = B * T * H * 2 * half;
      if (n === 0) return;
      const xv = mem.input(x, n, xBf16), yv = mem.output(y, n, yBf16), c = mem.floats(cos, T * half), s = mem.floats(sin, T * half);
      for (let row = 0; row < B * T * H; row++) {
        const t = Math.floor(row / H) % T, o = row * 2 * half, rstd = rowRstd(xv, o, 2 * half, eps);
        for (let j = 0; j < half; j++) {
          const n1 = xv[o + j] * rstd, n2 = xv[o + half + j] * rstd, cj = c[t * half + j], sj = s[t * half + j];
          yv[o + j] = n1 * cj + n2 * sj;
          yv[o + half + j] = n2 * cj - n1 * sj;
        }
      }
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

/** (mean x² + eps)^-½ over the row of `len` values at `offset`. */
function rowRstd(x: Float32Array, offset: number, len: number, eps: number): number {
  let ss = 0;
  for (let j = 0; j < len; j++) ss += x[offset + j] ** 2;
  return 1 / Math.sqrt(ss / len + eps);
}
