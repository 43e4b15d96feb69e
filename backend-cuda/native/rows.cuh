// Block-wide sum and max for the row kernels (softmax, RMSNorm): one block per row.
#pragma once

namespace tsgpt {

template <bool kMax>
__device__ __forceinline__ float blockReduce(float v, float* scratch /* 32 floats */) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, w) : v + w;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, nWarps = blockDim.x / 32;
  __syncthreads();  // scratch may still be read by an earlier call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nWarps ? scratch[lane] : (kMax ? -INFINITY : 0.f);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, w) : v + w;
  }
  return v;  // every thread holds the block's result
}

}  // namespace tsgpt
