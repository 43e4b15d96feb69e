// The FP8 head loss's gradient quantised where it is computed (ops/fp8_head_loss/kernel.ts's chunk loop): the logits'
// gradient dloss/dz of the soft-capped cross-entropy, straight to the e5m2 codes the head's two gradient GEMMs read, in
// both layouts. The two launchers it replaces (softcap_cross_entropy.cu's gradient, then fp8_matmul.cu's quantisation)
// wrote the gradient in bf16 and read it back: per 4096-row chunk of the speedrun's 50,304 columns, 824 MB of traffic.
// The values are theirs: the same gradient expression (softcap.cuh's softcapGrad), rounded to bf16 where they stored
// bf16, divided by the scale and rounded to e5m2 and written in fp8_codes.cuh's tiles by the same code as
// fp8_matmul.cu's quantisation.
#include "fp8_head_loss.h"

#include <cuda_bf16.h>

#include <type_traits>

#include "../../native/launchers.h"
#include "../../native/vec.cuh"
#include "../fp8_matmul/fp8_codes.cuh"
#include "../softcap_cross_entropy/softcap.cuh"

namespace tsgpt {
namespace {

// writeFp8Tiles' source: the gradient of the logits at (r, c … c + 3) over the scale, from the row's target and lse.
template <int kCap, typename In, bool kRoundBf16>
struct SoftcapGradSource {
  using Raw = Packed4<In>;
  const In* logits;
  const int32_t* targets;
  const float* lse;
  int64_t cols;
  float dyw;
  CapParams p;
  Fp8Scale gradScale;
  int32_t target[4];  // the thread's rows'
  SoftcapRow consts[4];
  __device__ void row(int j, int64_t r) {
    target[j] = targets[r];
    consts[j] = softcapRow(lse[r], target[j], cols, dyw, p);
  }
  __device__ Raw load(int, int64_t r, int64_t c) const { return loadPacked4(logits + r * cols + c); }
  __device__ void values(int j, const Raw& raw, int64_t c, float (&v)[4]) const {
    float x[4], d[4];
    widen(raw, x);
#pragma unroll
    for (int k = 0; k < 4; ++k) d[k] = softcapGrad<kCap, false>(x[k], consts[j], p);
    if (static_cast<uint64_t>(target[j] - c) < 4) {  // the target is one of the four: one branch, not a compare a value
#pragma unroll
      for (int k = 0; k < 4; ++k)
        if (c + k == target[j]) d[k] = softcapGrad<kCap, true>(x[k], consts[j], p);
    }
#pragma unroll
    for (int k = 0; k < 4; k += 2) {
      if (kRoundBf16) {  // as the two-op path stores it: two values a conversion
        const float2 pair = __bfloat1622float2(__float22bfloat162_rn(make_float2(d[k], d[k + 1])));
        d[k] = pair.x, d[k + 1] = pair.y;
      }
      v[k] = divided(d[k], gradScale), v[k + 1] = divided(d[k + 1], gradScale);  // the IEEE quotient, as the quantisation's
    }
  }
};

template <int kCap, typename In, bool kRoundBf16>
__global__ void __launch_bounds__(256) softcapGradFp8Kernel(const float* __restrict__ dy, const In* __restrict__ logits,
    const int32_t* __restrict__ targets, const float* __restrict__ lse, int64_t rows, int64_t cols, float w, CapParams p,
    Fp8Scale gradScale, uint8_t* __restrict__ g8, uint8_t* __restrict__ g8t) {
  SoftcapGradSource<kCap, In, kRoundBf16> src{logits, targets, lse, cols, dy[0] * w, p, gradScale};
  writeFp8Tiles<true>(rows, cols, g8, g8t, src);
}

}  // namespace

cudaError_t launchSoftcapGradFp8(cudaStream_t s, const float* dy, const void* logits, bool logitsBf16, const int32_t* targets,
                                 const float* rowStats, bool gBf16, int64_t rows, int64_t cols, int cap, float scale, float temp,
                                 bool mean, float gradScale, uint8_t* g8, uint8_t* g8t) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  const auto misaligned = [](const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes != 0; };
  if (rows < 0 || cols < 0 || rows % 4 || cols % 4 || misaligned(logits, logitsBf16 ? 8 : 16) || misaligned(g8, 4) ||
      misaligned(g8t, 4) || (cap != kLogitCapNone && cap != kLogitCapSigmoid && cap != kLogitCapTanh))
    return cudaErrorInvalidValue;
  const CapParams p = capParams(cap, scale, temp);
  const float w = mean ? 1.f / float(rows) : 1.f;
  const auto launch = [&](auto capC, auto* in, auto roundC) {
    using In = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
    constexpr auto kernel = softcapGradFp8Kernel<decltype(capC)::value, In, decltype(roundC)::value>;
    kernel<<<fp8TileGrid<kernel>(rows, cols), 256, 0, s>>>(dy, in, targets, rowStats, rows, cols, w, p, fp8Scale(gradScale), g8,
                                                            g8t);
  };
  const auto withRound = [&](auto capC, auto* in) {
    if (gBf16) launch(capC, in, std::true_type{});
    else launch(capC, in, std::false_type{});
  };
  const auto withCap = [&](auto* in) {
    if (cap == kLogitCapSigmoid) withRound(std::integral_constant<int, kLogitCapSigmoid>{}, in);
    else if (cap == kLogitCapTanh) withRound(std::integral_constant<int, kLogitCapTanh>{}, in);
    else withRound(std::integral_constant<int, kLogitCapNone>{}, in);
  };
  byInputType(logits, logitsBf16, withCap);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(softcapGradFp8, launchSoftcapGradFp8, "dy", "logits", "logitsBf16", "targets", "rowStats", "gBf16", "rows", "cols",
               "cap", "scale", "temp", "mean", "gradScale", "g8", "g8t");

}  // namespace tsgpt
