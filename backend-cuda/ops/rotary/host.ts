// CPU reference of rotary.cu's launcher, on the host device's memory (tests without a GPU).
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
  };
}
