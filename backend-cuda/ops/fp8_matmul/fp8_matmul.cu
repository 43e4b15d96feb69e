// FP8 quantisation for the head's FP8 matmuls (train_gpt.ts's fp8Head(), record-2025-11.md §3.3): the codes of
// x/scale in e4m3 (activations, weights) or e5m2 (the logits' gradient), written row-major, transposed or both, as
// cuBLASLt's FP8 GEMMs (native/matmul.cc's matmulFp8) need each operand with its contraction dimension contiguous.
// Memory-bound: one read of x and one byte written per element and layout. A block takes a 64×64 tile (256 threads,
// 4 consecutive columns each on 4 rows), writes its row-major codes directly and the transposed ones through shared
// memory (4 consecutive output bytes per thread: one 32-bit store).
#include "fp8_matmul.h"

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>

#include "../../native/launchers.h"

namespace tsgpt {
namespace {

constexpr int kTile = 64;

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

__device__ __forceinline__ float toFloat(float v) { return v; }
__device__ __forceinline__ float toFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename In, bool E5M2>
__global__ void __launch_bounds__(256) fp8QuantiseKernel(const In* __restrict__ x, int64_t rows, int64_t cols, float scale,
                                                         uint8_t* __restrict__ out, uint8_t* __restrict__ outT) {
  __shared__ uint8_t tile[kTile][kTile + 4];  // the tile's codes [row][column]; rows padded to a 4-byte multiple
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t tilesR = (rows + kTile - 1) / kTile, tilesC = (cols + kTile - 1) / kTile;
  for (int64_t tr = blockIdx.y; tr < tilesR; tr += gridDim.y) {
    for (int64_t tc = blockIdx.x; tc < tilesC; tc += gridDim.x) {
      const int64_t r0 = tr * kTile, c = tc * kTile + 4 * tx;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int rr = ty + 16 * j;
        const int64_t r = r0 + rr;
        if (r >= rows || c >= cols) continue;  // cols % 4 == 0: a group of 4 columns is all inside or all outside
        float v[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) v[k] = toFloat(x[r * cols + c + k]) / scale;  // IEEE division, as tfjs's
        const uint32_t q = toFp8x4<E5M2>(v);
        if (out) *reinterpret_cast<uint32_t*>(out + r * cols + c) = q;
        if (outT) *reinterpret_cast<uint32_t*>(&tile[rr][4 * tx]) = q;
      }
      if (outT) {  // the same for the whole block
        __syncthreads();
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int cc = ty + 16 * j;
          const int64_t oc = tc * kTile + cc, orow = r0 + 4 * tx;  // output row oc (x's column), x's rows orow … orow + 3
          if (oc >= cols || orow >= rows) continue;  // rows % 4 == 0
          const uint32_t q = uint32_t(tile[4 * tx][cc]) | uint32_t(tile[4 * tx + 1][cc]) << 8 |
                             uint32_t(tile[4 * tx + 2][cc]) << 16 | uint32_t(tile[4 * tx + 3][cc]) << 24;
          *reinterpret_cast<uint32_t*>(outT + oc * rows + orow) = q;
        }
        __syncthreads();  // before the next tile overwrites it
      }
    }
  }
}

template <typename In, bool E5M2>
void launchTyped(cudaStream_t s, const void* x, int64_t rows, int64_t cols, float scale, uint8_t* out, uint8_t* outT) {
  const int64_t tilesR = (rows + kTile - 1) / kTile, tilesC = (cols + kTile - 1) / kTile;
  const dim3 grid(unsigned(std::min<int64_t>(tilesC, 1 << 20)), unsigned(std::min<int64_t>(tilesR, 65535)));
  fp8QuantiseKernel<In, E5M2><<<grid, 256, 0, s>>>(static_cast<const In*>(x), rows, cols, scale, out, outT);
}

}  // namespace

cudaError_t launchFp8Quantise(cudaStream_t s, const void* x, bool xBf16, int64_t rows, int64_t cols, float scale, bool e5m2,
                              uint8_t* out, uint8_t* outT) {
  if (rows == 0 || cols == 0 || (out == nullptr && outT == nullptr)) return cudaSuccess;
  const auto misaligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 != 0; };
  if (rows < 0 || cols < 0 || rows % 4 || cols % 4 || misaligned(out) || misaligned(outT)) return cudaErrorInvalidValue;
  if (xBf16) {
    if (e5m2) launchTyped<__nv_bfloat16, true>(s, x, rows, cols, scale, out, outT);
    else launchTyped<__nv_bfloat16, false>(s, x, rows, cols, scale, out, outT);
  } else {
    if (e5m2) launchTyped<float, true>(s, x, rows, cols, scale, out, outT);
    else launchTyped<float, false>(s, x, rows, cols, scale, out, outT);
  }
  return cudaGetLastError();
}

TSGPT_LAUNCHER(fp8Quantise, launchFp8Quantise, "x", "xBf16", "rows", "cols", "scale", "e5m2", "out", "outT");

}  // namespace tsgpt
