// The fused rotary embedding's launcher (rotary.cu), both ways.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// Rotary position embedding: x, y [B,T,H,2·half] (each float32, or bf16 where its flag says), cos/sin tables
// [T,half]; the pair (j, j + half) of token t turns by the tables' [t, j]; inverse turns back (the gradient).
cudaError_t launchRotary(cudaStream_t s, const void* x, bool xBf16, const float* cosT, const float* sinT, void* y, bool yBf16,
                         int64_t B, int64_t T, int64_t H, int64_t half, bool inverse);

// The same with each row (a head of 2·half) RMS-normed first (eps), and its gradient dx from dy [B,T,H,2·half] float32
// and x: the shaped blocks' q and k under QK-norm. half a multiple of 4 with half / 4 a power of two ≤ 32, pointers
// 16-byte aligned (else cudaErrorInvalidValue).
cudaError_t launchNormedRotary(cudaStream_t s, const void* x, bool xBf16, const float* cosT, const float* sinT, void* y, bool yBf16,
                               int64_t B, int64_t T, int64_t H, int64_t half, float eps);
cudaError_t launchNormedRotaryGrad(cudaStream_t s, const float* dy, const void* x, bool xBf16, const float* cosT, const float* sinT,
                                   float* dx, int64_t B, int64_t T, int64_t H, int64_t half, float eps);

}  // namespace tsgpt
