// Fused ReLU² (the MLP's activation, train_gpt.ts's reluSquared()), forward and backward:
//   forward:  y = relu(x)²
//   backward: dx = dy·2·relu(x)
// The composite runs Relu and Square forward, Step and three Multiplies backward, and keeps relu(x)
// for Square's gradient; here one pass each way, and only x is kept.
// Memory-bound: 4 elements per thread with float4 loads where n % 4 = 0 and pointers are aligned.
#include "kernels.h"
#include "launch.h"
#include "vec.cuh"

namespace tsgpt {
namespace {

template <int V>
__global__ void reluSquaredKernel(const float* __restrict__ x, float* __restrict__ y, int64_t groups) {
  TSGPT_GRID_STRIDE(i, groups) {
    float v[V];
    loadVec<V>(x + i * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float r = fmaxf(v[k], 0.f);
      v[k] = r * r;
    }
    storeVec<V>(y + i * V, v);
  }
}

template <int V>
__global__ void reluSquaredGradKernel(const float* __restrict__ dy, const float* __restrict__ x,
                                      float* __restrict__ dx, int64_t groups) {
  TSGPT_GRID_STRIDE(i, groups) {
    float g[V], v[V];
    loadVec<V>(dy + i * V, g);
    loadVec<V>(x + i * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = 2.f * g[k] * fmaxf(v[k], 0.f);
    storeVec<V>(dx + i * V, v);
  }
}

}  // namespace

cudaError_t launchReluSquared(cudaStream_t s, const float* x, float* y, int64_t n) {
  if (n == 0) return cudaSuccess;
  if (n % 4 == 0 && aligned16({x, y})) reluSquaredKernel<4><<<gridFor(n / 4), kThreads, 0, s>>>(x, y, n / 4);
  else reluSquaredKernel<1><<<gridFor(n), kThreads, 0, s>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t launchReluSquaredGrad(cudaStream_t s, const float* dy, const float* x, float* dx, int64_t n) {
  if (n == 0) return cudaSuccess;
  if (n % 4 == 0 && aligned16({dy, x, dx})) reluSquaredGradKernel<4><<<gridFor(n / 4), kThreads, 0, s>>>(dy, x, dx, n / 4);
  else reluSquaredGradKernel<1><<<gridFor(n), kThreads, 0, s>>>(dy, x, dx, n);
  return cudaGetLastError();
}

}  // namespace tsgpt
