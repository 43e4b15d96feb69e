// Rounding float32 values to bf16 and back in one pass (train_gpt.ts's roundToBf16(): the record's bf16 parameters
// and Adam moments kept in float32 storage). The composite needs a dozen elementwise tfjs kernels for the same.
// Memory-bound: 4 elements per thread with float4 loads where n % 4 = 0 and pointers are aligned.
#include "round_bf16.h"

#include <cuda_bf16.h>

#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

template <int V>
__global__ void roundBf16Kernel(const float* __restrict__ x, float* __restrict__ y, int64_t groups) {
  TSGPT_GRID_STRIDE(i, groups) {
    float v[V];
    loadVec<V>(x + i * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = roundedToBf16(v[k]);
    storeVec<V>(y + i * V, v);
  }
}

}  // namespace

cudaError_t launchRoundBf16(cudaStream_t s, const float* x, float* y, int64_t n) {
  if (n == 0) return cudaSuccess;
  if (n % 4 == 0 && aligned16({x, y}))
    roundBf16Kernel<4><<<gridFor(n / 4), kThreads, 0, s>>>(x, y, n / 4);
  else
    roundBf16Kernel<1><<<gridFor(n), kThreads, 0, s>>>(x, y, n);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(roundBf16, launchRoundBf16, "x", "y", "n");

}  // namespace tsgpt
