// The embedding lookup from a table stored in bf16 (record-2025-11.md §5: the embeddings and value embeddings are bf16
// parameters, which Adam stores in bf16 only): the rows gathered and widened to float32 in one pass, a warp a row (the
// float32 table's lookup is the device's gather). Reading the table's 2-byte values where it is, instead of a float32
// copy of it, keeps the four 50,304 × 768 tables at half their bytes.
#include "embedding.h"

#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/rows.cuh"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

// V values a lane: 4 (an 8-byte load, a 16-byte store) where d % 4 = 0 and the pointers are aligned, else 1.
template <int V>
__global__ void embeddingBf16Kernel(const __nv_bfloat16* __restrict__ table, const int32_t* __restrict__ ids, float* __restrict__ out,
                                    int64_t rows, int64_t d, int64_t n) {
  forEachRowByWarp(n, [&](int64_t j, int lane) {
    const int64_t k = ids[j];
    const bool inside = k >= 0 && k < rows;  // an id outside reads zeros
    const __nv_bfloat16* const row = table + (inside ? k : 0) * d;
    float* const o = out + j * d;
#pragma unroll 4
    for (int64_t c = int64_t(lane) * V; c < d; c += 32 * V) {
      float v[V];
      loadVec<V>(row + c, v);
#pragma unroll
      for (int e = 0; e < V; ++e) v[e] = inside ? v[e] : 0.f;
      storeVec<V>(o + c, v);
    }
  });
}

}  // namespace

cudaError_t launchEmbeddingBf16(cudaStream_t s, const __nv_bfloat16* table, const int32_t* ids, float* out, int64_t V, int64_t d,
                                int64_t n) {
  if (n * d == 0) return cudaSuccess;
  if (d % 4 == 0 && aligned16({table, out}))
    embeddingBf16Kernel<4><<<gridFor(n * 32), kThreads, 0, s>>>(table, ids, out, V, d, n);
  else
    embeddingBf16Kernel<1><<<gridFor(n * 32), kThreads, 0, s>>>(table, ids, out, V, d, n);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(embeddingBf16, launchEmbeddingBf16, "table", "ids", "out", "V", "d", "n");

}  // namespace tsgpt
