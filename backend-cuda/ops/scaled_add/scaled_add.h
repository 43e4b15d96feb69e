// The fused scaled add's launchers (scaled_add.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// y = a·x + b·z over n values, a and b one float each on the device (x, z and y float32, or bf16 where flagged); its
// gradient dx = a·dy (+ xAcc), dz = b·dy (+ zAcc) (x's and z's gradients so far, where not null), da = Σ dy·x,
// db = Σ dy·z (deterministic sums; 0 for n = 0); dx and dz rounded to bf16 into dxBf16 and dzBf16 too where not null
// (the copies a bf16 matmul reads: the backend's gradientTwin); abAcc (where not null): [a's, b's] gradients so far, added
// to da and db (a and b one [2] tensor: the block lambdas).
cudaError_t launchScaledAdd(cudaStream_t s, const void* x, bool xBf16, const void* z, bool zBf16, const float* a, const float* b,
                            void* y, bool yBf16, int64_t n);
cudaError_t launchScaledAddGrad(cudaStream_t s, const float* dy, const void* x, bool xBf16, const void* z, bool zBf16,
                                const float* a, const float* b, const float* xAcc, const float* zAcc, float* dx, float* dz,
                                float* da, float* db, int64_t n, void* dxBf16 = nullptr, void* dzBf16 = nullptr,
                                const float* abAcc = nullptr);

}  // namespace tsgpt
