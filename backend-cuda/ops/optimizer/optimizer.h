// The fused optimiser updates' launchers (optimizer.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// Fused optimiser updates over n floats, outputs distinct from inputs:
// Adam  m' = β1·m + (1−β1)·g, v' = β2·v + (1−β2)·g², p' = p − lr·(m'/bc1)/(sqrt(v'/bc2) + eps);
// Muon  buf' = μ·buf + (1−μ)·g, nesterov = (1−μ)·g + μ·buf'. The hyperparameters come as the host's
// doubles: 1 − β and 1 − μ are taken in double and then rounded, as tfjs rounds the composite's scalars.
cudaError_t launchAdamUpdate(cudaStream_t s, const float* p, const float* m, const float* v, const float* g, float* pOut,
                             float* mOut, float* vOut, int64_t n, double beta1, double beta2, double bc1, double bc2,
                             double eps, double lr);
cudaError_t launchMuonMomentum(cudaStream_t s, const float* buf, const float* g, float* bufOut, float* nesterov, int64_t n,
                               double momentum);

}  // namespace tsgpt
