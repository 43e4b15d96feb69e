// The logit soft cap, its derivative and the loss's gradient through it, shared by the cross-entropy's kernels (softcap_cross_entropy.cu) and the FP8
// head's gradient quantised where it is computed (ops/fp8_head_loss), so that the two paths give the same bits.
#pragma once
#include <cmath>
#include "softcap_cross_entropy.h"
#include "../../native/fast_math.cuh"  // fastExp2, fastRcp (with these and a fast division these kernels are bound by their bytes)

namespace tsgpt {

// A cap bounds z to (−scale, scale) (tanh) or (0, scale) (sigmoid): with 0 < scale ≤ 40, Σ exp(z − scale) needs no running
// max (each term ≥ e^−80, a normal float): one exp per element and no branch. Other caps keep the online max.
constexpr float kMaxFixedReference = 40.f;
__host__ __device__ inline bool fixedReference(int cap, float scale) {
  return cap != kLogitCapNone && scale > 0.f && scale <= kMaxFixedReference;
}

// The cap as z = scale·c(x) with c the cap's unit value (σ(x/temp), tanh(x/scale) or x) and dz/dx = slope·h(c).
struct CapParams {
  float scale;       // s (1 without a cap)
  float pre;         // x's factor inside c: −log2(e)/temp (sigmoid, through exp2), 1/scale (tanh), 1 (none)
  float slope;       // scale/temp (sigmoid), 1 (tanh, none)
  float scaleLog2e;  // s·log2(e): exp(z − a) = exp2(c·s·log2(e) − a·log2(e)), one FMA
};

// c(x): 1/(1 + e^(−x/temp)) (0 where the exp overflows, as 1/∞), tanh(x/scale) or x.
template <int kCap>
__device__ __forceinline__ float capUnit(float x, const CapParams& p) {
  if (kCap == kLogitCapSigmoid) return fastRcp(1.f + fastExp2(x * p.pre));
  else if (kCap == kLogitCapTanh) return tanhf(x * p.pre);
  else return x;
}

// z = cap(x).
template <int kCap>
__device__ __forceinline__ float capped(float x, const CapParams& p) {
  return kCap == kLogitCapNone ? x : p.scale * capUnit<kCap>(x, p);
}

// h(c) = (dz/dx)/slope: σ(1 − σ), 1 − tanh², 1.
template <int kCap>
__device__ __forceinline__ float capSlopeUnit(float c) {
  if (kCap == kLogitCapSigmoid) return fmaf(-c, c, c);
  else if (kCap == kLogitCapTanh) return fmaf(-c, c, 1.f);
  else return 1.f;
}

// A row's constants of the loss's gradient: −lse·log2(e) and the upstream gradient g times the cap's slope; a target
// outside [0, cols) makes the row NaN, as its loss.
struct SoftcapRow {
  float negLseLog2e, gSlope;
};
__device__ __forceinline__ SoftcapRow softcapRow(float lse, int64_t target, int64_t cols, float g, const CapParams& p) {
  return {-lse * kLog2e, (target >= 0 && target < cols ? g : NAN) * p.slope};
}

// dloss/dx of one logit x of a row: g·(softmax − one-hot)·dz/dx, kTarget where x is the row's target. Where it is not,
// (p − 0) is p: the kernels that know a value is no target compute the same bits without the compare.
template <int kCap, bool kTarget>
__device__ __forceinline__ float softcapGrad(float x, const SoftcapRow& row, const CapParams& p) {
  const float c = capUnit<kCap>(x, p);
  const float prob = fastExp2(fmaf(c, p.scaleLog2e, row.negLseLog2e));
  return (kTarget ? prob - 1.f : prob) * (row.gSlope * capSlopeUnit<kCap>(c));
}

inline CapParams capParams(int cap, float scale, float temp) {
  if (cap == kLogitCapSigmoid) return {scale, -kLog2e / temp, scale / temp, scale * kLog2e};
  if (cap == kLogitCapTanh) return {scale, 1.f / scale, 1.f, scale * kLog2e};
  return {1.f, 1.f, 1.f, kLog2e};
}

}  // namespace tsgpt
