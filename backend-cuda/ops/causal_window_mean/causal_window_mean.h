// The causal windowed mean's launchers (causal_window_mean.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// Positions per partial sum of the first pass: chunkSums holds B × ⌈T / kWindowMeanChunk⌉ × C doubles
// (WINDOW_MEAN_CHUNK in kernel.ts).
constexpr int kWindowMeanChunk = 32;
// Positions each thread of the second pass walks (a multiple of kWindowMeanChunk).
constexpr int kWindowMeanWalk = 256;

// Causal windowed mean over x [B,T,C] per document (docIds int32 [B,T], nondecreasing along T):
//   y[b,t,c] = (1 / n(t)) · Σ_{s ∈ [lo(t), t]} x[b,s,c],  lo(t) = max(t − window + 1, first token of t's document),
//   n(t) = t − lo(t) + 1.
// The gradient: dx[b,s,c] = Σ_{t : lo(t) ≤ s ≤ t} dy[b,t,c] / n(t), the same walk backwards in time; invCounts
// is B·T doubles of scratch for the 1 / n(t). window ≥ 1 (a window over T sees as much as T). x is float32, or bf16
// where xBf16 (read as stored: shaped attention's input is the norm's bf16-only output under bf16 precision).
cudaError_t launchCausalWindowMean(cudaStream_t s, const void* x, bool xBf16, const int32_t* docIds, float* y,
                                   double* chunkSums, int64_t B, int64_t T, int64_t C, int64_t window);
// accumulated (nullptr: none): x's gradient so far, added to dx as an Add would (tfjs_node.ts's summing thunks).
cudaError_t launchCausalWindowMeanGrad(cudaStream_t s, const float* dy, const int32_t* docIds, const float* accumulated,
                                       float* dx, double* chunkSums, double* invCounts, int64_t B, int64_t T, int64_t C,
                                       int64_t window);

}  // namespace tsgpt
