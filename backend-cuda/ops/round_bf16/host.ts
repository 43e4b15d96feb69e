// CPU reference of round_bf16.cu's launcher, on the host device's memory (tests without a GPU).
import { bf16Bits, type HostDevice } from '../../host_device.ts';
import type { RoundBf16Native } from './kernel.ts';

export function roundBf16Host(mem: HostDevice): RoundBf16Native {
  return {
    roundBf16(x, y, n) {
      if (n === 0) return;
      const bits = new Uint32Array(mem.floats(x, n).slice().buffer), out = new Uint32Array(n);
      for (let i = 0; i < n; i++) out[i] = bf16Bits(bits[i]) << 16;
      mem.floats(y, n).set(new Float32Array(out.buffer));
    },
  };
}
