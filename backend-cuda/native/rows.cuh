// Warp- and block-wide sum and max for the row kernels (softmax, RMSNorm, attention's rows), and a warp a row over a grid.
#pragma once
#include <cmath>
#include <cstdint>

namespace tsgpt {

// f(row, lane) for every row in [0, rows), a warp a row over the grid (the embedding lookups and their gradients).
template <typename F>
__device__ __forceinline__ void forEachRowByWarp(int64_t rows, F f) {
  const int64_t warps = (int64_t)gridDim.x * blockDim.x / 32;
  for (int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32; r < rows; r += warps) f(r, int(threadIdx.x & 31));
}

// Every lane of the warp gets the sum (max) of the 32 lanes' v.
template <bool kMax>
__device__ __forceinline__ float warpReduce(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, w) : v + w;
  }
  return v;
}
__device__ __forceinline__ float warpSum(float v) { return warpReduce<false>(v); }
__device__ __forceinline__ float warpMax(float v) { return warpReduce<true>(v); }

// The warp's sums of N values at once (N a power of two up to 32), one to each group of 32 / N lanes: lane l gets the
// sum of the lanes' v[l / (32 / N)], the same bits as warpSum(v[l / (32 / N)]). At each of the first log2 N steps a lane
// keeps half of its values and sends its partner the other half, which the partner keeps (the bits of the lane's index
// from the highest choose the half): N − 1 + 5 − log2 N shuffles where N warpSums take 5·N (8 values: 9 against 40).
// Each value's sums pair the same lanes in the same order as warpSum's, and a + b is b + a. Every lane calls it.
template <int N>
__device__ __forceinline__ float warpSums(const float (&v)[N]) {
  static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "N is a power of two up to 32");
  const int lane = int(threadIdx.x) & 31;
  float t[N];
#pragma unroll
  for (int i = 0; i < N; ++i) t[i] = v[i];
#pragma unroll
  for (int n = N, offset = 16; n > 1; n >>= 1, offset >>= 1) {  // t[0 … n) the values this lane still sums
    const bool upper = (lane & offset) != 0;  // keeps the upper half of t, its partner the lower
#pragma unroll
    for (int i = 0; i < n / 2; ++i) {
      const float keep = upper ? t[i + n / 2] : t[i], send = upper ? t[i] : t[i + n / 2];
      t[i] = keep + __shfl_xor_sync(0xffffffffu, send, offset);
    }
  }
  float s = t[0];
#pragma unroll
  for (int offset = 16 / N; offset > 0; offset >>= 1) s += __shfl_xor_sync(0xffffffffu, s, offset);
  return s;
}

// Every thread of the block gets the sum (max) of the block's v: one block per row.
template <bool kMax>
__device__ __forceinline__ float blockReduce(float v, float* scratch /* 32 floats */) {
  v = warpReduce<kMax>(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, nWarps = blockDim.x / 32;
  __syncthreads();  // scratch may still be read by an earlier call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nWarps ? scratch[lane] : (kMax ? -INFINITY : 0.f);
  return warpReduce<kMax>(v);  // every thread holds the block's result
}

}  // namespace tsgpt
