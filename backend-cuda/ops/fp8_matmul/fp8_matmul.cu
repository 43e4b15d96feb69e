// FP8 quantisation for the head's FP8 matmuls (train_gpt.ts's fp8Head(), record-2025-11.md §3.3): the codes of
// x/scale in e4m3 (activations, weights) or e5m2 (the logits' gradient), written row-major, transposed or both, as
// cuBLASLt's FP8 GEMMs (native/matmul.cc's matmulFp8) need each operand with its contraction dimension contiguous.
// Memory-bound: one read of x and one byte written per element and layout. A block takes a 64×64 tile (256 threads,
// 4 consecutive columns each on 4 rows), writes its row-major codes directly and the transposed ones through shared
// memory (4 consecutive output bytes per thread: one 32-bit store).
#include "fp8_matmul.h"
#include "fp8_codes.cuh"

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>

#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

constexpr int kTile = 64;

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
