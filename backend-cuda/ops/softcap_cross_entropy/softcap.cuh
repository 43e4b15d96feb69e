// The logit soft cap, its derivative and the loss's gradient through it, shared by the cross-entropy's kernels (softcap_cross_entropy.cu) and the FP8
// head's gradient quantised where it is computed (ops/fp8_head_loss).
#pragma once
#include <cmath>
#include "softcap_cross_entropy.h"

namespace tsgpt {

struct CapParams {
  float scale;  // s
  float inv;    // 1/temp (sigmoid) or 1/scale (tanh): the pre-activation factor
  float slope;  // scale/temp (sigmoid): dz/dx = slope·σ(1−σ)
};

// z = cap(x) and, when asked, dz/dx. The sigmoid and the softmax's exp use the hardware's approximations (__expf,
// __fdividef: a few ulp, ~5e-7 relative here): with expf and an IEEE division these kernels were bound by their
// instructions, not their bytes (the FP8 head's cross-entropy over [4096, 50304] bf16 logits: 0.32 ms forward,
// 0.68 ms gradient on an H200, 1.3 and 1.2 TB/s).
template <int kCap>
__device__ __forceinline__ float capped(float x, const CapParams& p, float* dzdx) {
  if (kCap == kLogitCapSigmoid) {
    const float sig = __fdividef(1.f, 1.f + __expf(-x * p.inv));  // 0 where the exp overflows, as 1/∞
    if (dzdx) *dzdx = p.slope * sig * (1.f - sig);
    return p.scale * sig;
  } else if (kCap == kLogitCapTanh) {
    const float th = tanhf(x * p.inv);
    if (dzdx) *dzdx = 1.f - th * th;
    return p.scale * th;
  } else {
    if (dzdx) *dzdx = 1.f;
    return x;
  }
}

// dloss/dx of one logit x (column j) of a row with target t and logsumexp l, for dloss = g: the softmax minus the
// one-hot, through the cap.
template <int kCap>
__device__ __forceinline__ float softcapGrad(float x, int64_t j, int64_t t, float l, float g, const CapParams& p) {
  float dz;
  const float z = capped<kCap>(x, p, &dz);
  return g * (__expf(z - l) - (j == t ? 1.f : 0.f)) * dz;
}

inline CapParams capParams(int cap, float scale, float temp) {
  if (cap == kLogitCapSigmoid) return {scale, 1.f / temp, scale / temp};
  if (cap == kLogitCapTanh) return {scale, 1.f / scale, 1.f};
  return {1.f, 1.f, 1.f};
}

}  // namespace tsgpt
