// CPU reference of scaled_add.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { ScaledAddNative } from './kernel.ts';

// Products and sums rounded to float32 (Math.fround and the Float32Array stores) as scaled_add.cu (no
// FMA) and the composite round them; da and db summed in float64 (the GPU's are float32 partial sums).
export function scaledAddHost(mem: HostDevice): ScaledAddNative {
  return {
    scaledAdd(x, z, a, b, y, n) {
      if (n === 0) return;
      const r = Math.fround, xv = mem.floats(x, n), zv = mem.floats(z, n), av = mem.floats(a, 1)[0], bv = mem.floats(b, 1)[0];
      const yv = mem.floats(y, n);
      for (let i = 0; i < n; i++) yv[i] = r(av * xv[i]) + r(bv * zv[i]);
    },
    scaledAddGrad(dy, x, z, a, b, dx, dz, da, db, n) {
      let sa = 0, sb = 0;
      if (n > 0) {
        const g = mem.floats(dy, n), xv = mem.floats(x, n), zv = mem.floats(z, n), av = mem.floats(a, 1)[0], bv = mem.floats(b, 1)[0];
        const dxv = mem.floats(dx, n), dzv = mem.floats(dz, n);
        for (let i = 0; i < n; i++) {
          sa += g[i] * xv[i];
          sb += g[i] * zv[i];
          dxv[i] = av * g[i];
          dzv[i] = bv * g[i];
        }
      }
      mem.floats(da, 1)[0] = sa;
      mem.floats(db, 1)[0] = sb;
    },
  };
}
