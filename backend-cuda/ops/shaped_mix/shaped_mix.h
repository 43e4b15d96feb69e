// Shaped attention's mix with its causal window mean: the launchers (shaped_mix.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// Positions per partial sum of the first pass: chunkSums holds B × ⌈T / kShapedMixChunk⌉ × C doubles (SHAPED_MIX_CHUNK
// in kernel.ts).
constexpr int kShapedMixChunk = 32;
// Positions each thread of the second pass walks (a multiple of kShapedMixChunk); the backward's partials hold
// B × ⌈T / kShapedMixWalk⌉ × C × 3 doubles (SHAPED_MIX_WALK in kernel.ts).
constexpr int kShapedMixWalk = 128;

// y = α·x + β·m − γ·(C·x) per head over x, m [B,T,H,h] (C = H·h channels a row), coef [3, H] (α, β, γ) on the device,
// C·x the mean of x over each token's window in its document (docIds int32 [B,T], nondecreasing along T):
//   (C·x)[b,t] = (1 / n(t)) · Σ_{s ∈ [lo(t), t]} x[b,s],  lo(t) = max(t − window + 1, the first token of t's document),
//   n(t) = t − lo(t) + 1.
// x and m are float32, or bf16 where flagged (read as stored: the norm's and the attention's bf16-only outputs); y float32.
// window ≥ 1 (a window over T sees as much as T).
cudaError_t launchShapedMix(cudaStream_t s, const void* x, bool xBf16, const void* m, bool mBf16, const float* coef,
                            const int32_t* docIds, float* y, double* chunkSums, int64_t B, int64_t T, int64_t H, int64_t h,
                            int64_t window);
// Its gradient: with S = Cᵀ·dy (S[s] = Σ dy[t] / n(t) over the t whose window holds s),
//   dx = α·dy − γ·S (+ accumulated where given: x's gradient so far, added as an Add would), dm = β·dy (float32, or bf16
//   where dmBf16: the attention's backward reads dO in bf16), dcoef [3, H] = (Σ dy·x, Σ dy·m, −Σ x·S) per head
//   (Σ x·S = Σ dy·(C·x): the same sum, taken where S is), deterministic.
// Scratch: chunkSums as above, invCounts B·T doubles, partials B·⌈T / kShapedMixWalk⌉·C·3 doubles.
cudaError_t launchShapedMixGrad(cudaStream_t s, const float* dy, const void* x, bool xBf16, const void* m, bool mBf16,
                                const float* coef, const int32_t* docIds, const float* accumulated, float* dx, void* dm,
                                bool dmBf16, float* dcoef, double* chunkSums, double* invCounts, double* partials, int64_t B,
                                int64_t T, int64_t H, int64_t h, int64_t window);

}  // namespace tsgpt
