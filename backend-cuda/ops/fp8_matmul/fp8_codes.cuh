// FP8 codes of float values, as the head's FP8 GEMMs take them (fp8_matmul.cu's quantisation, and the head loss's
// gradient quantised where it is computed: ops/fp8_head_loss).
#pragma once
#include <cuda_fp8.h>
#include <cstdint>
#include <cuda_runtime.h>

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
  // one test for the four (NaN fails it too), and the per-value replacement only where one is out of range: the
  // replacement was a third of the instructions of the FP8 head's gradient (fp8_head_loss.cu)
  if (outOfRange<E5M2>(v[0]) || outOfRange<E5M2>(v[1]) || outOfRange<E5M2>(v[2]) || outOfRange<E5M2>(v[3])) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if (outOfRange<E5M2>(v[k])) bits = (bits & ~(0xFFu << (8 * k))) | outOfRangeCode<E5M2>(v[k]) << (8 * k);
    }
  }
  return bits;
}

// v / s as the IEEE division (PyTorch's x.div(s) before its cast to FP8) without one: a reciprocal computed once on the
// host and one FMA correction (Markstein's), the correctly rounded quotient wherever |v| ≥ 2⁻¹⁰⁰ and v / s is a normal
// float (the residual v − q·s is then exact; div.rn's instructions were a fifth of the FP8 head gradient's). Below,
// the quotient may be off in its last bit, which no FP8 code shows unless s < 2⁻⁸³ (e5m2's smallest step is 2⁻¹⁶).
// The residual is negated twice so that v = ±0 keeps its sign (−0 has its own code); an infinite or NaN first quotient
// is kept (the correction would make ∞ NaN). bench/head_loss_native.cu compares it with the division on all 2³² floats
// for the record's scales and others.
struct Fp8Scale {
  float s, inv;
};
inline Fp8Scale fp8Scale(float s) { return {s, float(1.0 / double(s))}; }
__device__ __forceinline__ float divided(float v, const Fp8Scale& k) {
  const float q = v * k.inv;
  const float q1 = fmaf(-fmaf(q, k.s, -v), k.inv, q);
  return isfinite(q) ? q1 : q;
}

// The FP8 codes of a [rows, cols] matrix, written row-major to out and/or transposed to outT (either may be null; rows
// and cols multiples of 4), from a Source of values four at a time. A block owns a strip of 64 rows at a time and walks
// its 64×64 tiles gridDim.x apart, loading the next tile while it converts and stores the current one: with one tile a
// block, a block's loads waited while it stored and synchronised, and the kernels moved ~2.4 TB/s. 256 threads of 4
// consecutive columns on 4 rows (ty + 16j); the transposed codes through shared memory (4 consecutive output bytes per
// thread: one 32-bit store). Called by a kernel of 256 threads, the same for the whole block (it synchronises); grid:
// fp8TileGrid.
//   Source::Raw                     a thread's loads of one tile row (4 values)
//   src.row(j, r)                   once a strip for the thread's row j ∈ 0…3 (r < rows), before its loads
//   src.load(j, r, c) → Raw         the four values at columns c … c + 3 as loaded
//   src.values(j, raw, c, v)        the four values to encode
constexpr int kFp8Tile = 64;

template <bool E5M2, typename Source>
__device__ __forceinline__ void writeFp8Tiles(int64_t rows, int64_t cols, uint8_t* __restrict__ out, uint8_t* __restrict__ outT,
                                              Source& src) {
  __shared__ uint8_t tile[kFp8Tile][kFp8Tile + 4];  // the tile's codes [row][column]; rows padded to a 4-byte multiple
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t tilesR = (rows + kFp8Tile - 1) / kFp8Tile, tilesC = (cols + kFp8Tile - 1) / kFp8Tile;
  for (int64_t tr = blockIdx.y; tr < tilesR; tr += gridDim.y) {
    const int64_t r0 = tr * kFp8Tile;
    const auto rowInside = [&](int j) { return r0 + ty + 16 * j < rows; };
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (rowInside(j)) src.row(j, r0 + ty + 16 * j);
    typename Source::Raw next[4];
    const auto load = [&](int64_t tc) {
      const int64_t c = tc * kFp8Tile + 4 * tx;
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (rowInside(j) && c < cols) next[j] = src.load(j, r0 + ty + 16 * j, c);  // cols % 4 == 0: all 4 in or out
    };
    if (blockIdx.x < tilesC) load(blockIdx.x);
    for (int64_t tc = blockIdx.x; tc < tilesC; tc += gridDim.x) {
      typename Source::Raw raw[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) raw[j] = next[j];
      if (tc + gridDim.x < tilesC) load(tc + gridDim.x);
      const int64_t c = tc * kFp8Tile + 4 * tx;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (!rowInside(j) || c >= cols) continue;
        const int rr = ty + 16 * j;
        float v[4];
        src.values(j, raw[j], c, v);
        const uint32_t q = toFp8x4<E5M2>(v);
        if (out) *reinterpret_cast<uint32_t*>(out + (r0 + rr) * cols + c) = q;
        if (outT) *reinterpret_cast<uint32_t*>(&tile[rr][4 * tx]) = q;
      }
      if (outT) {  // the same for the whole block
        __syncthreads();
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int cc = ty + 16 * j;
          const int64_t oc = tc * kFp8Tile + cc, orow = r0 + 4 * tx;  // output row oc (a column), rows orow … orow + 3
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

// writeFp8Tiles' grid for a [rows, cols] matrix and its kernel kKernel (of 256 threads): the strips of kTile rows in y
// and in x as many tile walkers a strip as fill the GPU's resident blocks once (a second, partial wave of walkers would
// finish late), within the grid's limits. The resident count is asked once a kernel (a process drives one GPU).
template <auto kKernel, int kTile = kFp8Tile>
dim3 fp8TileGrid(int64_t rows, int64_t cols) {
  static const int64_t resident = [] {
    int device = 0, sms = 0, perSm = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, kKernel, 256, 0);
    return int64_t(sms > 0 ? sms : 1) * (perSm > 0 ? perSm : 1);
  }();
  const int64_t tilesR = (rows + kTile - 1) / kTile, tilesC = (cols + kTile - 1) / kTile;
  const int64_t y = tilesR < 65535 ? tilesR : 65535, walkers = (resident + y - 1) / y;
  return dim3(unsigned(walkers < tilesC ? walkers : tilesC), unsigned(y));
}

}  // namespace tsgpt
