// Fused RMSNorm without a learned weight (the model's norm()), forward and backward side by side.
//   forward:  rstd = (mean_j x_j² + eps)^-½,  y = x·rstd
//   backward: dx = rstd·dy − x·rstd³·mean_j(dy_j·x_j)
// The backward recomputes rstd in the same pass as the dot product (one extra FMA per element) so
// the forward saves nothing but x. One kernel each way instead of the composite's many.
#include "rms_norm.h"

#include "../../native/launch.h"
#include "../../native/rows.cuh"
#include "../../native/launchers.h"

namespace tsgpt {
namespace {

__global__ void rmsNormKernel(const float* __restrict__ x, float* __restrict__ y, int64_t cols,
                              float eps) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * cols;
  float* yr = y + blockIdx.x * cols;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) ss += xr[j] * xr[j];
  ss = blockReduce<false>(ss, scratch);
  const float r = rsqrtf(ss / float(cols) + eps);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = xr[j] * r;
}

__global__ void rmsNormGradKernel(const float* __restrict__ dy, const float* __restrict__ x,
                                  float* __restrict__ dx, int64_t cols, float eps) {
  __shared__ float scratch[32];
  const int64_t off = blockIdx.x * cols;
  float dot = 0.f, ss = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float xv = x[off + j];
    dot += dy[off + j] * xv;
    ss += xv * xv;
  }
  dot = blockReduce<false>(dot, scratch);
  ss = blockReduce<false>(ss, scratch);
  const float r = rsqrtf(ss / float(cols) + eps);
  const float c = r * r * r * dot / float(cols);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) dx[off + j] = r * dy[off + j] - c * x[off + j];
}

}  // namespace

cudaError_t launchRmsNorm(cudaStream_t s, const float* x, float* y, int64_t rows, int64_t cols,
                          float eps) {
  if (rows == 0) return cudaSuccess;
  if (rows > 0x7fffffffLL) return cudaErrorInvalidValue;
  rmsNormKernel<<<(unsigned)rows, cols >= 512 ? 256 : 64, 0, s>>>(x, y, cols, eps);
  return cudaGetLastError();
}

cudaError_t launchRmsNormGrad(cudaStream_t s, const float* dy, const float* x, float* dx,
                              int64_t rows, int64_t cols, float eps) {
  if (rows == 0) return cudaSuccess;
  if (rows > 0x7fffffffLL) return cudaErrorInvalidValue;
  rmsNormGradKernel<<<(unsigned)rows, cols >= 512 ? 256 : 64, 0, s>>>(dy, x, dx, cols, eps);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(rmsNorm, launchRmsNorm, "x", "y", "rows", "cols", "eps");
TSGPT_LAUNCHER(rmsNormGrad, launchRmsNormGrad, "dy", "x", "dx", "rows", "cols", "eps");

}  // namespace tsgpt
