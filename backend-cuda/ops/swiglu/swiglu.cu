// Fused SwiGLU (Shazeer 2020; train_gpt.ts's MLP with --mlp swiglu), forward and backward. The up projection is
// one matmul whose rows are [g | u] (2F floats: the gate half, then the value half):
//   forward:  y = g·σ(g)·u                                       (rows of F)
//   backward: dg = dy·u·σ(g)·(1 + g·(1 − σ(g))),  du = dy·g·σ(g)  (written back as rows [dg | du])
// The composite splits x (two copies), runs Sigmoid and two Multiplies forward and keeps σ(g) and g·σ(g) for the
// backward, then concatenates the halves' gradients; here one pass each way, and only x is kept.
// Memory-bound: V = 4 floats per thread where F % 4 = 0 and the pointers are aligned. Under bf16 matmul
// precision both outputs are bf16 only (y feeds the down projection, dx the up projection's gradient matmuls),
// and x (the up projection's output: ops/linear) arrives in bf16: In = __nv_bfloat16.
#include "swiglu.h"

#include "../../native/activations.cuh"
#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

template <int V, typename In, typename Out>
__global__ void swigluKernel(const In* __restrict__ x, Out* __restrict__ y, int64_t groups, int64_t groupsPerRow) {
  TSGPT_GRID_STRIDE(i, groups) {
    const int64_t r = i / groupsPerRow, j = (i % groupsPerRow) * V, F = groupsPerRow * V;
    float g[V], u[V];
    loadVec<V>(x + r * 2 * F + j, g);
    loadVec<V>(x + r * 2 * F + F + j, u);
#pragma unroll
    for (int k = 0; k < V; ++k) g[k] = g[k] * sigmoid(g[k]) * u[k];
    storeVec<V>(y + i * V, g);
  }
}

template <int V, typename Dy, typename In, typename Out>
__global__ void swigluGradKernel(const Dy* __restrict__ dy, const In* __restrict__ x, Out* __restrict__ dx, int64_t groups,
                                 int64_t groupsPerRow) {
  TSGPT_GRID_STRIDE(i, groups) {
    const int64_t r = i / groupsPerRow, j = (i % groupsPerRow) * V, F = groupsPerRow * V;
    float d[V], g[V], u[V];
    loadVec<V>(dy + i * V, d);
    loadVec<V>(x + r * 2 * F + j, g);
    loadVec<V>(x + r * 2 * F + F + j, u);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float s = sigmoid(g[k]), silu = g[k] * s;
      const float dg = d[k] * u[k] * s * (1.f + g[k] * (1.f - s));
      u[k] = d[k] * silu;
      g[k] = dg;
    }
    storeVec<V>(dx + r * 2 * F + j, g);
    storeVec<V>(dx + r * 2 * F + F + j, u);
  }
}

}  // namespace

cudaError_t launchSwiglu(cudaStream_t s, const void* x, bool xBf16, void* y, bool yBf16, int64_t rows, int64_t F) {
  if (rows * F == 0) return cudaSuccess;
  return byWidthAndType(F % 4 == 0 && aligned16({x, y}), y, yBf16, [&](auto width, auto* out) {
    constexpr int V = decltype(width)::value;
    byInputType(x, xBf16, [&](auto* in) { swigluKernel<V><<<gridFor(rows * F / V), kThreads, 0, s>>>(in, out, rows * F / V, F / V); });
  });
}

cudaError_t launchSwigluGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* x, bool xBf16, void* dx, bool dxBf16,
                             int64_t rows, int64_t F) {
  if (rows * F == 0) return cudaSuccess;
  return byWidthAndType(F % 4 == 0 && aligned16({dy, x, dx}), dx, dxBf16, [&](auto width, auto* out) {
    constexpr int V = decltype(width)::value;
    byInputType(dy, dyBf16, [&](auto* g) {
      byInputType(x, xBf16, [&](auto* in) {
        swigluGradKernel<V><<<gridFor(rows * F / V), kThreads, 0, s>>>(g, in, out, rows * F / V, F / V);
      });
    });
  });
}

TSGPT_LAUNCHER(swiglu, launchSwiglu, "x", "xBf16", "y", "yBf16", "rows", "F");
TSGPT_LAUNCHER(swigluGrad, launchSwigluGrad, "dy", "dyBf16", "x", "xBf16", "dx", "dxBf16", "rows", "F");

}  // namespace tsgpt
