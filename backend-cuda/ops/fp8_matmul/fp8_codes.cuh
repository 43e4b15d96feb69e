// FP8 codes of float values, as the head's FP8 GEMMs take them (fp8_matmul.cu's quantisation, and the head loss's
// gradient quantised where it is computed: ops/fp8_head_loss).
#pragma once
#include <cuda_fp8.h>
#include <cstdint>

namespace tsgpt {

// The rounding is the non-saturating cast of PyTorch's float8 types and of __NV_NOSAT: round to nearest even on the
// format's grid, subnormals included; e4m3fn has no infinity, so a value that rounds past ±448 (above 464 = 448 + half
// its spacing; 464 itself ties to the even 448) is NaN (0x7F); e5m2 overflows to ±inf from 61440 = 57344 + half its
// spacing on (the tie goes to the even 2^16, i.e. past the range). The hardware conversion (cvt.rn.satfinite, two
// values per instruction) only saturates, so the out-of-range values and NaN are replaced after it.
template <bool E5M2>
__device__ __forceinline__ uint32_t outOfRangeCode(float v) {
  if constexpr (E5M2) return isnan(v) ? 0x7Fu : signbit(v) ? 0xFCu : 0x7Cu;
  else return 0x7Fu;
}
template <bool E5M2>
__device__ __forceinline__ bool outOfRange(float v) {
  const float a = fabsf(v);
  if constexpr (E5M2) return !(a < 61440.f);  // NaN too
  else return !(a <= 464.f);
}

template <bool E5M2>
__device__ __forceinline__ uint32_t toFp8x4(const float (&v)[4]) {
  constexpr __nv_fp8_interpretation_t kind = E5M2 ? __NV_E5M2 : __NV_E4M3;
  uint32_t bits = uint32_t(__nv_cvt_float2_to_fp8x2(make_float2(v[0], v[1]), __NV_SATFINITE, kind)) |
                  uint32_t(__nv_cvt_float2_to_fp8x2(make_float2(v[2], v[3]), __NV_SATFINITE, kind)) << 16;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if (outOfRange<E5M2>(v[k])) bits = (bits & ~(0xFFu << (8 * k))) | outOfRangeCode<E5M2>(v[k]) << (8 * k);
  }
  return bits;
}

}  // namespace tsgpt
