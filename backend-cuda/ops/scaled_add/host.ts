// CPU reference of scaled_add.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { ScaledAddNative } from './kernel.ts';

// Products and sums rounded to float32 (Math.fround and the Float32Array stores) as scaled_add.cu (no
// FMA) and the composite round them; da and db summed in float64 (the GPU's are float32 partial sums).
export function scaledAddHost(mem: HostDevice): ScaledAddNative {
  return {
    scaledAdd(x, xBf16, z, zBf16, a, b, y, yBf16, n) {
      if (n === 0) return;
      const r = Math.fround, xv = mem.input(x, n, xBf16), zv = mem.input(z, n, zBf16), av = mem.floats(a, 1)[0], bv = mem.floats(b, 1)[0];
      const yv = mem.output(y, n, yBf16);
      for (let i = 0; i < n; i++) yv[i] = r(av * xv[i]) + r(bv * zv[i]);
      mem.flush(y, yv, yBf16);
    },
    scaledAddGrad(dy, x, xBf16, z, zBf16, a, b, xAcc, zAcc, dx, dz, da, db, n, dxBf16, dzBf16, abAcc) {
      let sa = 0, sb = 0;
      if (n > 0) {
        const g = mem.floats(dy, n), xv = mem.input(x, n, xBf16), zv = mem.input(z, n, zBf16), av = mem.floats(a, 1)[0], bv = mem.floats(b, 1)[0];
        const dxv = mem.floats(dx, n), dzv = mem.floats(dz, n), xSum = xAcc ? mem.floats(xAcc, n) : null, acc = zAcc ? mem.floats(zAcc, n) : null;
        for (let i = 0; i < n; i++) {
          sa += g[i] * xv[i];
          sb += g[i] * zv[i];
          dxv[i] = xSum ? Math.fround(av * g[i]) + xSum[i] : av * g[i];
          dzv[i] = acc ? Math.fround(bv * g[i]) + acc[i] : bv * g[i];
        }
        if (dxBf16) mem.flush(dxBf16, dxv.slice(), true);
        if (dzBf16) mem.flush(dzBf16, dzv.slice(), true);
      }
      const acc = abAcc ? mem.floats(abAcc, 2) : null;  // the sums so far: float32 sums, then the Add's
      mem.floats(da, 1)[0] = acc ? Math.fround(sa) + acc[0] : sa;
      mem.floats(db, 1)[0] = acc ? Math.fround(sb) + acc[1] : sb;
    },
  };
}
