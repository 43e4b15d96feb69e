// The fused SwiGLU activation's launchers (swiglu.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// Over rows of 2F values x = [g | u] (the MLP's up projection: gate half, then value half; bf16 where xBf16):
//   y[r, j]  = silu(g)·u = g·σ(g)·u                          (rows of F; bf16 where yBf16)
//   dx[r, j] = dy·u·σ(g)·(1 + g·(1 − σ(g)))  (gate half),  dx[r, F + j] = dy·g·σ(g)  (value half; bf16 where dxBf16)
//   (dy: rows of F, bf16 where dyBf16)
cudaError_t launchSwiglu(cudaStream_t s, const void* x, bool xBf16, void* y, bool yBf16, int64_t rows, int64_t F);
cudaError_t launchSwigluGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* x, bool xBf16, void* dx, bool dxBf16,
                             int64_t rows, int64_t F);

}  // namespace tsgpt
