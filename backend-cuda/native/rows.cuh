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
