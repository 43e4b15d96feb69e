// Fused attention output gate (train_gpt.ts's headGate(): each head's output scaled by a sigmoid gate, so a
// head can switch off), forward and backward. Rows r = (b·T + t)·H + head of h values (o as the attention stored it:
// bf16 from its tensor-core kernels, else float32); g one logit per row:
//   forward:  y[r, j] = o[r, j]·σ(g[r])                      (y in bf16 where only a matmul reads it)
//   backward: do[r, j] = dy[r, j]·σ(g[r]),  dg[r] = σ(g[r])(1 − σ(g[r]))·Σ_j dy[r, j]·o[r, j]
//             and, where asked, delta[r] = Σ_j do[r, j]·o[r, j] from do as stored (bf16: rounded): the attention
//             backward's D = dO·O, in the same pass (the gated attention's, ops/causal_attention)
// The composite runs Sigmoid, ExpandDims and a broadcasting Multiply forward, and Multiply, Sum and the
// sigmoid's gradient chain backward. Memory-bound: one read of o (and dy) and one write each way; the
// backward's row sum is a warp's (one warp per row, V floats per lane per step).
#include "head_gate.h"

#include "../../native/activations.cuh"
#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

template <int V, typename O, typename Out>
__global__ void headGateKernel(const O* __restrict__ o, const float* __restrict__ g, Out* __restrict__ y,
                               int64_t groups, int groupsPerRow) {
  TSGPT_GRID_STRIDE(i, groups) {
    const float s = sigmoid(g[i / groupsPerRow]);
    float v[V];
    loadVec<V>(o + i * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] *= s;
    storeVec<V>(y + i * V, v);
  }
}

template <int V, typename Dy, typename O, typename Out>
__global__ void headGateGradKernel(const Dy* __restrict__ dy, const O* __restrict__ o, const float* __restrict__ g,
                                   Out* __restrict__ dO, float* __restrict__ dg, float* __restrict__ delta, int64_t rows,
                                   int h) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < rows; r += int64_t(gridDim.x) * blockDim.x / 32) {
    const float s = sigmoid(g[r]);
    const int64_t base = r * h;
    float dot = 0.f, dOdot = 0.f;
    for (int j = V * lane; j < h; j += V * 32) {
      float d[V], v[V];
      loadVec<V>(dy + base + j, d);
      loadVec<V>(o + base + j, v);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        dot += d[k] * v[k];
        d[k] *= s;
        dOdot += (std::is_same_v<Out, float> ? d[k] : roundedToBf16(d[k])) * v[k];  // do as stored
      }
      storeVec<V>(dO + base + j, d);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      dot += __shfl_xor_sync(0xffffffffu, dot, off);
      dOdot += __shfl_xor_sync(0xffffffffu, dOdot, off);
    }
    if (lane == 0) {
      dg[r] = s * (1.f - s) * dot;
      if (delta) delta[r] = dOdot;
    }
  }
}

}  // namespace

cudaError_t launchHeadGate(cudaStream_t s, const void* o, bool oBf16, const float* g, void* y, bool yBf16, int64_t rows,
                           int64_t h) {
  const int64_t n = rows * h;
  if (n == 0) return cudaSuccess;
  if (h > 0x7fffffffLL) return cudaErrorInvalidValue;
  return byWidthAndType(h % 4 == 0 && aligned16({o, y}), y, yBf16, [&](auto width, auto* out) {
    constexpr int V = decltype(width)::value;
    byInputType(o, oBf16, [&](auto* stored) {
      headGateKernel<V><<<gridFor(n / V), kThreads, 0, s>>>(stored, g, out, n / V, int(h / V));
    });
  });
}

cudaError_t launchHeadGateGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* o, bool oBf16, const float* g,
                               void* dO, bool dOBf16, float* dg, float* delta, int64_t rows, int64_t h) {
  if (rows == 0) return cudaSuccess;
  if (h > 0x7fffffffLL) return cudaErrorInvalidValue;
  const unsigned blocks = gridFor(rows * 32);  // a warp per row
  return byWidthAndType(h % 4 == 0 && aligned16({dy, o, dO}), dO, dOBf16, [&](auto width, auto* out) {
    byInputType(dy, dyBf16, [&](auto* grad) {
      byInputType(o, oBf16, [&](auto* stored) {
        headGateGradKernel<decltype(width)::value><<<blocks, kThreads, 0, s>>>(grad, stored, g, out, dg, delta, rows, int(h));
      });
    });
  });
}

TSGPT_LAUNCHER(headGate, launchHeadGate, "o", "oBf16", "g", "y", "yBf16", "rows", "h");
TSGPT_LAUNCHER(headGateGrad, launchHeadGateGrad, "dy", "dyBf16", "o", "oBf16", "g", "dO", "dOBf16", "dg", "delta", "rows",
               "h");

}  // namespace tsgpt
