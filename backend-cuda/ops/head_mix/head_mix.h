// The fused head mix's launchers (head_mix.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// y = α·x + β·m − γ·c over rows × H heads × h values, coef [3, H] (α, β, γ) on the device; x, m and c float32, or bf16
// where flagged; y float32. Its gradient: dx = α·dy, dm = β·dy, dc = −γ·dy, dcoef = (Σ dy·x, Σ dy·m, −Σ dy·c) per head
// (deterministic sums; 0 for no rows).
cudaError_t launchHeadMix(cudaStream_t s, const void* x, bool xBf16, const void* m, bool mBf16, const void* c, bool cBf16,
                          const float* coef, float* y, int64_t rows, int H, int h);
cudaError_t launchHeadMixGrad(cudaStream_t s, const float* dy, const void* x, bool xBf16, const void* m, bool mBf16,
                              const void* c, bool cBf16, const float* coef, float* dx, float* dm, float* dc, float* dcoef,
                              int64_t rows, int H, int h);

}  // namespace tsgpt
