// The fused attention output gate's launchers (head_gate.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// Attention output gate: y = o·σ(g) over rows of h (o bf16 where oBf16, g one logit per row; y bf16 where yBf16);
// its gradient do = dy·σ(g) (dy bf16 where dyBf16, do where dOBf16), dg = σ(g)(1 − σ(g))·Σ_h dy·o, and where delta is not null
// delta = Σ_h do·o per row (do as stored: the attention backward's D = dO·O).
cudaError_t launchHeadGate(cudaStream_t s, const void* o, bool oBf16, const float* g, void* y, bool yBf16, int64_t rows,
                           int64_t h);
cudaError_t launchHeadGateGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* o, bool oBf16, const float* g,
                               void* dO, bool dOBf16, float* dg, float* delta, int64_t rows, int64_t h);

}  // namespace tsgpt
