// Fused rotary position embedding, forward and backward in one kernel (train_gpt.ts's rotary()).
// x [B,T,H,h], h = 2·half: the pair (x1, x2) = (x[.., j], x[.., j + half]) of token t turns by the
// angle whose cosine and sine are the tables' [t, j] (train_gpt.ts's rotaryTables, [1,T,1,half]):
//   forward:  y1 = x1·cos + x2·sin,  y2 = x2·cos − x1·sin
//   backward: the transpose rotation  dx1 = dy1·cos − dy2·sin,  dx2 = dy1·sin + dy2·cos
// i.e. the forward with sin negated, so one kernel serves both (sign = +1 forward, −1 backward).
// Stationary dims (frequency 0: cos = 1, sin = 0, half-truncated RoPE) simply come out unchanged.
// Memory-bound: one read of x, one write of y; the tables (T·h floats) are shared by all B·H rows
// and stay in L2. A thread does 4 pairs with float4 loads where half % 4 = 0 and pointers are aligned.
// x is read as stored (a bf16-only activation: float32 or bf16) and y written in float32 or bf16 (rounded once, from
// the float32 rotation: the values the attention's bf16 operands would get).
#include "rotary.h"

#include "../../native/launch.h"
#include "../../native/vec.cuh"
#include "../../native/launchers.h"

namespace tsgpt {
namespace {

template <int V, typename In, typename Out>
__global__ void rotaryKernel(const In* __restrict__ x, const float* __restrict__ cosT,
                             const float* __restrict__ sinT, Out* __restrict__ y, int64_t groups, int T,
                             int H, int half, float sign) {
  const int groupsPerRow = half / V;
  TSGPT_GRID_STRIDE(i, groups) {
    const int64_t row = i / groupsPerRow;  // (b·T + t)·H + head
    const int j = int(i - row * groupsPerRow) * V;
    const int64_t t = (row / H) % T;
    const In* xr = x + row * 2 * half;
    Out* yr = y + row * 2 * half;
    float x1[V], x2[V], c[V], s[V], y1[V], y2[V];
    loadVec<V>(xr + j, x1);
    loadVec<V>(xr + half + j, x2);
    loadVec<V>(cosT + t * half + j, c);
    loadVec<V>(sinT + t * half + j, s);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float sn = sign * s[k];
      y1[k] = x1[k] * c[k] + x2[k] * sn;
      y2[k] = x2[k] * c[k] - x1[k] * sn;
    }
    storeVec<V>(yr + j, y1);
    storeVec<V>(yr + half + j, y2);
  }
}

}  // namespace

cudaError_t launchRotary(cudaStream_t s, const void* x, bool xBf16, const float* cosT, const float* sinT, void* y, bool yBf16,
                         int64_t B, int64_t T, int64_t H, int64_t half, bool inverse) {
  const int64_t pairs = B * T * H * half;
  if (pairs == 0) return cudaSuccess;
  if (T > 0x7fffffffLL || H > 0x7fffffffLL || half > 0x7fffffffLL) return cudaErrorInvalidValue;
  const float sign = inverse ? -1.f : 1.f;
  return byWidthAndType(half % 4 == 0 && aligned16({x, cosT, sinT, y}), y, yBf16, [&](auto width, auto* out) {
    constexpr int V = decltype(width)::value;
    byInputType(x, xBf16, [&](auto* in) {
      rotaryKernel<V><<<gridFor(pairs / V), kThreads, 0, s>>>(in, cosT, sinT, out, pairs / V, int(T), int(H), int(half), sign);
    });
  });
}

TSGPT_LAUNCHER(rotary, launchRotary, "x", "xBf16", "cos", "sin", "y", "yBf16", "B", "T", "H", "half", "inverse");

}  // namespace tsgpt
