// What the fused causal attention's two implementations share: the exact fp32 kernels
// (causal_attention.cu) and the bf16 tensor-core kernels (causal_attention_mma.cu). The formulas are in the
// comment at the top of causal_attention.cu.
#pragma once
#include <cmath>
#include <type_traits>
#include "causal_attention.h"
#include "../../native/async_copy.cuh"

namespace tsgpt {

constexpr float kSoftpickEps = 1e-6f;
constexpr float kSoftpickFloor = -60.f;
constexpr unsigned kFull = 0xffffffffu;
constexpr int kStats = 3;  // per query row: m, den, argmax key (−1: none)

struct Dims {
  int B, T, H, Hk, h, window;
  float scale;
};

template <int kScore>
__device__ __forceinline__ float initialMax() {
  return kScore == kScoreSoftmax ? -INFINITY : kScore == kScoreSoftmax1 ? 0.f : kSoftpickFloor;
}

// Row offsets in elements: q/o/dq rows are (b, t, head) of [B,T,H,h], k/v rows of [B,T,Hk,h].
__device__ __forceinline__ int64_t qRow(const Dims& d, int b, int t, int head) {
  return ((int64_t)b * d.T + t) * d.H + head;
}
__device__ __forceinline__ int64_t kRow(const Dims& d, int b, int t, int head) {
  return ((int64_t)b * d.T + t) * d.Hk + head;
}

// e^x: exact (expf) for the fp32 kernels, the hardware approximation (__expf, ~2 ulp) for the bf16 ones.
template <bool kFast>
__device__ __forceinline__ float attnExp(float x) {
  return kFast ? __expf(x) : expf(x);
}

// The probability of a visible key from its row's statistics (m, 1/den), as the forward defines it.
template <int kScore, bool kFast>
__device__ __forceinline__ float probability(float s, float m, float invDen) {
  if (kScore == kScoreSoftpick) return fmaxf(attnExp<kFast>(s - m) - attnExp<kFast>(-m), 0.f) * invDen;
  return attnExp<kFast>(s - m) * invDen;
}

// ds for a visible key: g = dO·v, D = dO·O, isArgmax: this key set m (softpick).
template <int kScore, bool kFast>
__device__ __forceinline__ float scoreGrad(float s, float g, float m, float invDen, float D, bool isArgmax) {
  if (kScore == kScoreSoftpick) {
    const float e = attnExp<kFast>(s - m), d = e - attnExp<kFast>(-m);
    const float ds = e * invDen * (d > 0.f ? g - D : D);  // g·[d>0] − sgn(d)·D (sgn(0) = −1, as tfjs's abs)
    return isArgmax ? ds - D * kSoftpickEps * invDen : ds;
  }
  return attnExp<kFast>(s - m) * invDen * (g - D);
}

// f(std::integral_constant<int, score>): the score as a compile-time constant for the kernel templates.
template <typename F>
cudaError_t byScore(int score, F&& f) {
  switch (score) {
    case kScoreSoftmax: return f(std::integral_constant<int, kScoreSoftmax>{});
    case kScoreSoftpick: return f(std::integral_constant<int, kScoreSoftpick>{});
    case kScoreSoftmax1: return f(std::integral_constant<int, kScoreSoftmax1>{});
    default: return cudaErrorInvalidValue;
  }
}

// The dims both implementations take: head dim ≤ 128, H a multiple of Hk, a window, T < 2^24.
inline cudaError_t checkDims(const Dims& d) {
  if (d.h < 1 || d.h > kMaxAttentionHead || d.H < 1 || d.Hk < 1 || d.H % d.Hk != 0 || d.window < 1 ||
      d.T >= (1 << 24))  // the argmax key index travels as a float
    return cudaErrorInvalidValue;
  return cudaSuccess;
}

}  // namespace tsgpt
