// The fused optimiser updates' launchers (optimizer.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// Fused optimiser updates over n floats, outputs distinct from inputs:
// Adam  m' = β1·m + (1−β1)·g, v' = β2·v + (1−β2)·g², p' = p − lr·(m'/bc1)/(sqrt(v'/bc2) + eps);
// Muon  buf' = μ·buf + (1−μ)·g, nesterov = (1−μ)·g + μ·buf'. The hyperparameters come as the host's
// doubles: 1 − β and 1 − μ are taken in double and then rounded, as tfjs rounds the composite's scalars.
// roundBuf: buf' stored rounded to bf16 (nesterov from the unrounded buf'). Adam's p is stored in bf16 where pBf16, m and v
// where momentsBf16 (else float32); p' is stored in bf16 (rounded to nearest even) where roundParam, m' and v' where
// roundMoments, else in float32. Its g is this step's gradient, plus gSum (the earlier steps' since the last Adam step)
// where gSum is not null; roundGrad: each rounded to bf16 before the sum and the sum after it (a bf16 parameter's:
// r(r(gSum) + r(g))).
cudaError_t launchAdamUpdate(cudaStream_t s, const void* p, bool pBf16, const void* m, const void* v, bool momentsBf16,
                             const float* g, const float* gSum, void* pOut, void* mOut, void* vOut, int64_t n, double beta1,
                             double beta2, double bc1, double bc2, double eps, double lr, bool roundParam, bool roundMoments,
                             bool roundGrad);
cudaError_t launchMuonMomentum(cudaStream_t s, const float* buf, const float* g, float* bufOut, float* nesterov, int64_t n,
                               double momentum, bool roundBuf);


// NorMuon's update of n orthogonalised wide updates o [n, r, c] (r ≤ c) with their per-neuron mean squares v ([n, r] for
// a square matrix, its rows; else [n, c], its columns), weights w [n, r, c] and per-matrix scales [n]:
// vOut = β2·v + (1−β2)·mean(o²) per neuron; u = scale·(o/√max(vOut, 1e-10)·‖o‖/max(‖o/√max(vOut, 1e-10)‖, 1e-10)
// + decay·w where that and w agree in sign). scratch holds norMuonScratchFloats(n, r·c) floats.
constexpr int64_t kNorMuonChunkElements = 16384;  // elements per partial sum of a matrix's norms
inline int64_t norMuonChunks(int64_t size) { return (size + kNorMuonChunkElements - 1) / kNorMuonChunkElements; }
inline int64_t norMuonScratchFloats(int64_t n, int64_t size) { return n * norMuonChunks(size) * 2 + n; }
cudaError_t launchNorMuonUpdate(cudaStream_t s, const float* o, const float* v, const float* w, const float* scale, float* u,
                                float* vOut, float* scratch, int64_t n, int64_t r, int64_t c, double beta2, double decay);

}  // namespace tsgpt
