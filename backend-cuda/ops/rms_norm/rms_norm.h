// The fused RMSNorm's launchers (rms_norm.cu): forward and backward over rows, float32.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// RMSNorm over rows: y = x·rstd, rstd = (mean(x²) + eps)^-½ .
cudaError_t launchRmsNorm(cudaStream_t s, const float* x, float* y, int64_t rows, int64_t cols,
                          float eps);
cudaError_t launchRmsNormGrad(cudaStream_t s, const float* dy, const float* x, float* dx,
                              int64_t rows, int64_t cols, float eps);

}  // namespace tsgpt
