// The fused rotary embedding's launcher (rotary.cu), both ways.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// Rotary position embedding: x, y [B,T,H,2·half] (each float32, or bf16 where its flag says), cos/sin tables
// [T,half]; the pair (j, j + half) of token t turns by the tables' [t, j]; inverse turns back (the gradient).
cudaError_t launchRotary(cudaStream_t s, const void* x, bool xBf16, const float* cosT, const float* sinT, void* y, bool yBf16,
                         int64_t B, int64_t T, int64_t H, int64_t half, bool inverse);

}  // namespace tsgpt
