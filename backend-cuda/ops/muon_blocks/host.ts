// CPU reference of muon_blocks.cu's launchers, on the host device's memory (tests without a GPU).
import { bf16Value, type HostDevice } from '../../host_device.ts';
import type { MuonBlocksNative } from './kernel.ts';

/** Each table row's block: the parameter's values, its place, and where wide (i, j) is in the parameter. */
function* rowsOf(mem: HostDevice, table: Float64Array, fields: number) {
  for (let at = 0; at < table.length; at += fields) {
    const [param, rows, cols, col, width, stacked] = table.subarray(at, at + 6);
    const tall = rows > width, r = tall ? width : rows, c = tall ? rows : width;
    const index = (i: number, j: number) => (tall ? j * cols + col + i : i * cols + col + j);
    yield { row: table.subarray(at, at + fields), p: mem.floats(param, rows * cols), slot: mem.floats(stacked, r * c), r, c, index, rows, cols };
  }
}

export function muonBlocksHost(mem: HostDevice): MuonBlocksNative {
  return {
    muonGather(table) {
      for (const { p, slot, r, c, index } of rowsOf(mem, table, 6)) {
        for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) slot[i * c + j] = p[index(i, j)];
      }
    },
    muonMomentumGather(table, momentum) {
      const mu = Math.fround(momentum), c1 = Math.fround(1 - momentum), r = Math.fround;
      for (const { row, p: g, slot, r: rr, c, index, rows, cols } of rowsOf(mem, table, 9)) {
        const buf = mem.floats(row[6], rows * cols), out = mem.floats(row[7], rows * cols), round = row[8] !== 0;
        for (let i = 0; i < rr; i++) {
          for (let j = 0; j < c; j++) {
            const at = index(i, j), scaledG = r((round ? bf16Value(g[at]) : g[at]) * c1), next = r(r(buf[at] * mu) + scaledG);
            out[at] = round ? bf16Value(next) : next;
            slot[i * c + j] = r(scaledG + r(next * mu));
          }
        }
      }
    },
    muonApply(table) {
      for (const { row, p, slot, r, c, index, rows, cols } of rowsOf(mem, table, 9)) {
        const out = mem.floats(row[6], rows * cols), rate = Math.fround(row[7]), round = row[8] !== 0;
        for (let i = 0; i < r; i++) {
          for (let j = 0; j < c; j++) {
            const v = Math.fround(p[index(i, j)] + Math.fround(rate * slot[i * c + j]));
            out[index(i, j)] = round ? bf16Value(v) : v;
          }
        }
      }
    },
  };
}
