// The fused RMSNorm's launchers (rms_norm.cu): forward and backward over rows; x float32 or (xBf16) bf16, y float32 or
// (yBf16) bf16, dy float32 or (dyBf16) bf16, dx float32.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// RMSNorm over rows: y = x·rstd, rstd = (mean(x²) + eps)^-½, y of each row's first outCols ≤ cols channels (dy the
// same: 0 past them); the gradient adds acc (float32, x's shape) where not null. lead (where not null; outCols = cols):
// a second output [rows, leadCols] of y's first leadCols channels (y's type), whose gradient dLead (float32, or bf16
// where dLeadBf16) the gradient adds to dy's first leadCols channels (the attention gate's input: no slice of y, no
// zero-padded gradient of one). dxBf16 (where not null): dx rounded to bf16 there too (the copy a bf16 matmul reads: the
// backend's gradientTwin).
cudaError_t launchRmsNorm(cudaStream_t s, const void* x, bool xBf16, void* y, bool yBf16, int64_t rows, int64_t cols,
                          int64_t outCols, float eps, void* lead = nullptr, int64_t leadCols = 0);
cudaError_t launchRmsNormGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* x, bool xBf16, const float* acc,
                              float* dx, int64_t rows, int64_t cols, int64_t outCols, float eps,
                              const void* dLead = nullptr, bool dLeadBf16 = false, int64_t leadCols = 0,
                              void* dxBf16 = nullptr);

}  // namespace tsgpt
