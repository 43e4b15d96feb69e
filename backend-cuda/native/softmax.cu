// Softmax over the last axis, one block per row: max, sum of exp(x - max), then the scaled write.
#include "kernels.h"
#include "launch.h"
#include "launchers.h"
#include "rows.cuh"

namespace tsgpt {
namespace {

__global__ void softmaxKernel(const float* __restrict__ x, float* __restrict__ y, int64_t cols) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * cols;
  float* yr = y + blockIdx.x * cols;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, xr[j]);
  m = blockReduce<true>(m, scratch);
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += expf(xr[j] - m);
  s = blockReduce<false>(s, scratch);
  const float inv = 1.f / s;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = expf(xr[j] - m) * inv;
}

}  // namespace

cudaError_t launchSoftmax(cudaStream_t s, const float* x, float* y, int64_t rows, int64_t cols) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (rows > 0x7fffffffLL) return cudaErrorInvalidValue;
  softmaxKernel<<<(unsigned)rows, cols >= 1024 ? 512 : 128, 0, s>>>(x, y, cols);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(softmax, launchSoftmax, "x", "y", "rows", "cols");

}  // namespace tsgpt
