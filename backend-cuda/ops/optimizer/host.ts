// CPU reference of optimizer.cu's launchers, on the host device's memory (tests without a GPU).
import { bf16Value, type HostDevice } from '../../host_device.ts';
import { NORMUON_CHUNK_ELEMENTS, type OptimizerNative } from './kernel.ts';

// Each operation rounded to float32 (Math.fround) in the composite's order, as optimizer.cu does.
export function optimizerHost(mem: HostDevice): OptimizerNative {
  return {
    adamUpdate(p, pBf16, m, v, momentsBf16, g, gSum, pOut, mOut, vOut, n, beta1, beta2, bc1, bc2, eps, lr, roundParam, roundMoments, roundGrad) {
      if (n === 0) return;
      const f = (ptr: number) => mem.floats(ptr, n), r = Math.fround;
      const pv = mem.input(p, n, pBf16), mv = mem.input(m, n, momentsBf16), vv = mem.input(v, n, momentsBf16);
      const po = mem.output(pOut, n, roundParam), mo = mem.output(mOut, n, roundMoments), vo = mem.output(vOut, n, roundMoments);
      const raw = f(g), sum = gSum ? f(gSum) : null;
      const half = (x: number) => (roundGrad ? bf16Value(x) : x);
      const gv = raw.map((x, i) => (sum ? half(r(half(sum[i]) + half(x))) : half(x)));  // a Float32Array: each rounded to float32
      const b1 = r(beta1), c1 = r(1 - beta1), b2 = r(beta2), c2 = r(1 - beta2);
      const [bc1f, bc2f, epsf, lrf] = [bc1, bc2, eps, lr].map(r);
      for (let i = 0; i < n; i++) {
        const mi = r(r(mv[i] * b1) + r(gv[i] * c1));
        const vi = r(r(vv[i] * b2) + r(r(gv[i] * gv[i]) * c2));
        const update = r(r(mi / bc1f) / r(r(Math.sqrt(r(vi / bc2f))) + epsf));
        po[i] = pv[i] - r(update * lrf);  // a bf16 output is rounded by flush
        mo[i] = mi;
        vo[i] = vi;
      }
      mem.flush(pOut, po, roundParam);
      mem.flush(mOut, mo, roundMoments);
      mem.flush(vOut, vo, roundMoments);
    },
    muonMomentum(buf, g, bufOut, nesterov, n, momentum, roundBuf) {
      if (n === 0) return;
      const f = (ptr: number) => mem.floats(ptr, n), r = Math.fround;
      const b = f(buf), gv = f(g), bo = f(bufOut), no = f(nesterov), mu = r(momentum), c = r(1 - momentum);
      for (let i = 0; i < n; i++) {
        const scaledG = r(gv[i] * c), bi = r(r(b[i] * mu) + scaledG);
        bo[i] = roundBuf ? bf16Value(bi) : bi;
        no[i] = scaledG + r(bi * mu);
      }
    },
    norMuonUpdate(o, v, w, scale, u, vOut, scratch, n, r, c, beta2, decay) {
      if (n === 0 || r === 0 || c === 0) return;
      // float32 operations (the GPU's FMAs and sum order differ: the tests allow float32 rounding); chunked norms as
      // optimizer.cu sums them, the chunks' partial sums left in `scratch` as there.
      const size = r * c, neurons = r === c ? r : c, chunks = Math.ceil(size / NORMUON_CHUNK_ELEMENTS), rd = Math.fround;
      const ov = mem.floats(o, n * size), wv = mem.floats(w, n * size), uv = mem.floats(u, n * size);
      const vin = mem.floats(v, n * neurons), vo = mem.floats(vOut, n * neurons), sc = mem.floats(scale, n);
      const partials = mem.floats(scratch, n * chunks * 2 + n);
      const neuron = (i: number, e: number) => i * neurons + (r === c ? Math.floor(e / c) : e % c);
      for (let i = 0; i < n; i++) {
        const sums = new Float64Array(neurons);
        for (let e = 0; e < size; e++) sums[r === c ? Math.floor(e / c) : e % c] += ov[i * size + e] ** 2;
        for (let k = 0; k < neurons; k++) vo[i * neurons + k] = rd(vin[i * neurons + k] * beta2 + rd(sums[k] / (size / neurons)) * rd(1 - beta2));
        let sumO = 0, sumScaled = 0;
        for (let e = 0; e < size; e++) {
          const x = ov[i * size + e], scaled = rd(x / Math.sqrt(Math.max(vo[neuron(i, e)], 1e-10)));
          sumO += x * x;
          sumScaled += scaled * scaled;
          if ((e + 1) % NORMUON_CHUNK_ELEMENTS === 0 || e + 1 === size) {
            const k = Math.floor(e / NORMUON_CHUNK_ELEMENTS);
            partials[(i * chunks + k) * 2] = sumO;
            partials[(i * chunks + k) * 2 + 1] = sumScaled;
            sumO = sumScaled = 0;
          }
        }
        let totalO = 0, totalScaled = 0;
        for (let k = 0; k < chunks; k++) { totalO += partials[(i * chunks + k) * 2]; totalScaled += partials[(i * chunks + k) * 2 + 1]; }
        const factor = rd(Math.sqrt(totalO) / Math.max(Math.sqrt(totalScaled), 1e-10));
        partials[n * chunks * 2 + i] = factor;
        for (let e = 0; e < size; e++) {
          const at = i * size + e;
          let x = rd(rd(ov[at] / Math.sqrt(Math.max(vo[neuron(i, e)], 1e-10))) * factor);
          if (decay > 0 && x * wv[at] >= 0) x = rd(x + rd(wv[at] * decay));
          uv[at] = x * sc[i];
        }
      }
    },
  };
}
