// CPU reference of canon_conv.cu's launchers, on the host device's memory (tests without a GPU): the same
// rounding order forward (Math.fround at each step), dw summed in float64; the head norm (Canon B) in float64.
import type { HostDevice } from '../../host_device.ts';
import type { CanonConvNative } from './kernel.ts';

/** z, the taps' input: x with each head of `group` channels among the first `channels` of every row RMS-normed (or,
 * with rowNorm, whole rows: group = channels = C), and each channel's rstd (1 outside the norm). */
function normedHeads(x: Float32Array, rows: number, C: number, channels: number, group: number, eps: number): { z: Float32Array; rstd: Float64Array } {
  const z = Float32Array.from(x), rstd = new Float64Array(rows * C).fill(1);
  for (let row = 0; row < rows; row++) {
    for (let c0 = 0; c0 < channels; c0 += group) {
      let ss = 0;
      for (let c = c0; c < c0 + group; c++) ss += x[row * C + c] ** 2;
      const r = 1 / Math.sqrt(ss / group + eps);
      for (let c = c0; c < c0 + group; c++) { z[row * C + c] = x[row * C + c] * r; rstd[row * C + c] = r; }
    }
  }
  return { z, rstd };
}

export function canonConvHost(mem: HostDevice): CanonConvNative {
  return {
    canonConv(x, xBf16, w, docIds, y, yBf16, B, T, C, normChannels, normGroup, eps, rowNorm, relu2, lead, leadCols) {
      const n = B * T * C;
      if (n === 0) return;
      const [channels, group] = rowNorm ? [C, C] : [normChannels, normGroup];
      const xv = normedHeads(mem.input(x, n, xBf16), B * T, C, channels, group, eps).z, yv = mem.output(y, n, yBf16);
      yv.set(conv(xv, mem.floats(w, C * 4), mem.ints(docIds, B * T), B, T, C));
      if (relu2) for (let i = 0; i < n; i++) yv[i] = yv[i] > 0 ? Math.fround(yv[i] * yv[i]) : 0;
      mem.flush(y, yv, yBf16);
      if (lead) {  // z's first leadCols channels of each row, in y's type
        const lv = mem.output(lead, B * T * leadCols, yBf16);
        for (let row = 0; row < B * T; row++) for (let c = 0; c < leadCols; c++) lv[row * leadCols + c] = xv[row * C + c];
        mem.flush(lead, lv, yBf16);
      }
    },
    canonConvGrad(dy, dyBf16, x, xBf16, w, docIds, dx, dxBf16, dw, dwAccumulated, _partials, B, T, C, normChannels, normGroup, eps, rowNorm,
      accumulated, dxTwin, relu2, dLead, dLeadBf16, leadCols) {
      const n = B * T * C, dwv = mem.floats(dw, C * 4), dwSoFar = dwAccumulated ? mem.floats(dwAccumulated, C * 4) : null;
      dwv.fill(0);
      if (n === 0) {
        if (dwSoFar) dwv.set(dwSoFar);
        return;
      }
      const [channels, group] = rowNorm ? [C, C] : [normChannels, normGroup];
      const { z: xv, rstd } = normedHeads(mem.input(x, n, xBf16), B * T, C, channels, group, eps);
      const wv = mem.floats(w, C * 4), doc = mem.ints(docIds, B * T), dxv = mem.output(dx, n, dxBf16);
      // relu2: dy is relu(h)²'s, h the conv (made again, as the forward): the conv's gradient is dy·2·relu(h)
      const g = Float32Array.from(mem.input(dy, n, dyBf16));
      if (relu2) conv(xv, wv, doc, B, T, C).forEach((h, i) => { g[i] = h > 0 ? g[i] * 2 * h : 0; });
      const sums = new Float64Array(C * 4), lead = dLead ? mem.input(dLead, B * T * leadCols, dLeadBf16) : null;
      for (let row = 0; row < B * T; row++) {
        const t = row % T;
        for (let c = 0; c < C; c++) {
          let acc = g[row * C + c] * (1 + wv[c * 4 + 3]);
          sums[c * 4 + 3] += g[row * C + c] * xv[row * C + c];
          for (let s = 1; s <= 3; s++) {
            if (t + s < T && doc[row + s] === doc[row]) acc += wv[c * 4 + 3 - s] * g[(row + s) * C + c];
            if (t >= s && doc[row - s] === doc[row]) sums[c * 4 + 3 - s] += g[row * C + c] * xv[(row - s) * C + c];
          }
          // z's gradient: the taps' plus the second output's in its channels (the Add of the two, in float32)
          dxv[row * C + c] = lead && c < leadCols ? Math.fround(Math.fround(acc) + lead[row * leadCols + c]) : acc;
        }
        // Through the norm (the head's, or the row's: one head of C): dx = rstd·(dz − z·mean(dz·z)) per head
        for (let c0 = 0; c0 < channels; c0 += group) {
          let dot = 0;
          for (let c = c0; c < c0 + group; c++) dot += dxv[row * C + c] * xv[row * C + c];
          for (let c = c0; c < c0 + group; c++) dxv[row * C + c] = rstd[row * C + c] * (dxv[row * C + c] - xv[row * C + c] * (dot / group));
        }
      }
      if (accumulated) mem.floats(accumulated, n).forEach((a, i) => { dxv[i] += a; });  // x's gradient so far (the row norm's)
      dwv.set(sums);
      if (dwSoFar) dwv.forEach((v, i) => { dwv[i] = dwSoFar[i] + v; });  // w's gradient so far, then the Add's rounding
      mem.flush(dx, dxv, dxBf16);
      if (dxTwin) mem.flush(dxTwin, dxv, true);  // its bf16 copy
    },
  };
}

/** The taps' sum over z [B·T, C] in the composite's order, each product and sum rounded to float32 (canon_conv.cu's). */
function conv(z: Float32Array, w: Float32Array, doc: Int32Array, B: number, T: number, C: number): Float32Array {
  const r = Math.fround, y = new Float32Array(B * T * C);
  for (let row = 0; row < B * T; row++) {
    const t = row % T;
    for (let c = 0; c < C; c++) {
      let acc = r(z[row * C + c] * r(w[c * 4 + 3] + 1));
      for (let s = 1; s <= 3; s++) {
        const prev = t >= s && doc[row - s] === doc[row] ? z[(row - s) * C + c] : 0;
        acc = r(acc + r(prev * w[c * 4 + 3 - s]));
      }
      y[row * C + c] = acc;
    }
  }
  return y;
}
