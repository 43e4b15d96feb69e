// CPU reference of embedding.cu's launcher, on the host device's memory (tests without a GPU).
import type { HostDevice } from '../../host_device.ts';
import type { EmbeddingNative } from './kernel.ts';

export function embeddingHost(mem: HostDevice): EmbeddingNative {
  return {
    embeddingBf16(table, ids, out, V, d, n) {
      if (n * d === 0) return;
      const tv = mem.bf16Floats(table, V * d), iv = mem.ints(ids, n), ov = mem.floats(out, n * d);
      for (let j = 0; j < n; j++) {
        const k = iv[j], inside = k >= 0 && k < V;
        for (let c = 0; c < d; c++) ov[j * d + c] = inside ? tv[k * d + c] : 0;
      }
    },
  };
}
