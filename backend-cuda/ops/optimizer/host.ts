// CPU reference of optimizer.cu's launchers, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { OptimizerNative } from './kernel.ts';

// Each operation rounded to float32 (Math.fround) in the composite's order, as optimizer.cu does.
export function optimizerHost(mem: HostDevice): OptimizerNative {
  return {
    adamUpdate(p, m, v, g, pOut, mOut, vOut, n, beta1, beta2, bc1, bc2, eps, lr) {
      if (n === 0) return;
      const f = (ptr: number) => mem.floats(ptr, n), r = Math.fround;
      const pv = f(p), mv = f(m), vv = f(v), gv = f(g), po = f(pOut), mo = f(mOut), vo = f(vOut);
      const b1 = r(beta1), c1 = r(1 - beta1), b2 = r(beta2), c2 = r(1 - beta2);
      const [bc1f, bc2f, epsf, lrf] = [bc1, bc2, eps, lr].map(r);
      for (let i = 0; i < n; i++) {
        const mi = r(r(mv[i] * b1) + r(gv[i] * c1));
        const vi = r(r(vv[i] * b2) + r(r(gv[i] * gv[i]) * c2));
        const update = r(r(mi / bc1f) / r(r(Math.sqrt(r(vi / bc2f))) + epsf));
        po[i] = pv[i] - r(update * lrf);
        mo[i] = mi;
        vo[i] = vi;
      }
    },
    muonMomentum(buf, g, bufOut, nesterov, n, momentum) {
      if (n === 0) return;
      const f = (ptr: number) => mem.floats(ptr, n), r = Math.fround;
      const b = f(buf), gv = f(g), bo = f(bufOut), no = f(nesterov), mu = r(momentum), c = r(1 - momentum);
      for (let i = 0; i < n; i++) {
        const scaledG = r(gv[i] * c), bi = r(r(b[i] * mu) + scaledG);
        bo[i] = bi;
        no[i] = scaledG + r(bi * mu);
      }
    },
  };
}
