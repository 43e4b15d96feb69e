// Fused ReLU² (the MLP's activation, train_gpt.ts's reluSquared()), forward and backward:
//   forward:  y = relu(x)²
//   backward: dx = dy·2·relu(x)
// The composite runs Relu and Square forward, Step and three Multiplies backward, and keeps relu(x)
// for Square's gradient; here one pass each way, and only x is kept.
// Memory-bound: 4 elements per thread with float4 loads where n % 4 = 0 and pointers are aligned.
// Under bf16 matmul precision the output (y feeds the MLP's down projection, dx the up projection's
// gradient matmuls) is written in bf16 only: Out = __nv_bfloat16; x (the up projection's output: ops/linear)
// arrives in bf16 then too: In = __nv_bfloat16, and so does dy (the down projection's gradient of its input: Dy).
#include "relu_squared.h"

#include "../../native/launch.h"
#include "../../native/vec.cuh"
#include "../../native/launchers.h"

namespace tsgpt {
namespace {

template <int V, typename In, typename Out>
__global__ void reluSquaredKernel(const In* __restrict__ x, Out* __restrict__ y, int64_t groups) {
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

template <int V, typename Dy, typename In, typename Out>
__global__ void reluSquaredGradKernel(const Dy* __restrict__ dy, const In* __restrict__ x,
                                      Out* __restrict__ dx, int64_t groups) {
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

cudaError_t launchReluSquared(cudaStream_t s, const void* x, bool xBf16, void* y, bool yBf16, int64_t n) {
  if (n == 0) return cudaSuccess;
  return byWidthAndType(n % 4 == 0 && aligned16({x, y}), y, yBf16, [&](auto width, auto* out) {
    constexpr int V = decltype(width)::value;
    byInputType(x, xBf16, [&](auto* in) { reluSquaredKernel<V><<<gridFor(n / V), kThreads, 0, s>>>(in, out, n / V); });
  });
}

cudaError_t launchReluSquaredGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* x, bool xBf16, void* dx,
                                  bool dxBf16, int64_t n) {
  if (n == 0) return cudaSuccess;
  return byWidthAndType(n % 4 == 0 && aligned16({dy, x, dx}), dx, dxBf16, [&](auto width, auto* out) {
    constexpr int V = decltype(width)::value;
    byInputType(dy, dyBf16, [&](auto* g) {
      byInputType(x, xBf16, [&](auto* in) { reluSquaredGradKernel<V><<<gridFor(n / V), kThreads, 0, s>>>(g, in, out, n / V); });
    });
  });
}

TSGPT_LAUNCHER(reluSquared, launchReluSquared, "x", "xBf16", "y", "yBf16", "n");
TSGPT_LAUNCHER(reluSquaredGrad, launchReluSquaredGrad, "dy", "dyBf16", "x", "xBf16", "dx", "dxBf16", "n");

}  // namespace tsgpt
