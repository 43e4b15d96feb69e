// The fused causal attention's launchers (causal_attention.cu: exact fp32; causal_attention_mma.cu: bf16 tensor cores).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// Fused causal attention: q [B,T,H,h], k/v [B,T,Hk,h] (H % Hk = 0), docIds int32
// [B,T] nondecreasing, o [B,T,H,h]; key j visible to query i iff j ≤ i, i − j < window and the
// same document. stats: B·T·H·3 floats per row (m, den, argmax key), written by the forward where
// not null; the backward recomputes them into it first unless statsReady. dq like q, dk/dv like k.
// tensorCores: bf16 tensor-core kernels (causal_attention_mma.cu) where they support the head dim and the
// pointers are 16-byte aligned (the backward also needs delta, B·T·H floats of scratch), else exact fp32.
constexpr int kMaxAttentionHead = 128;
enum AttentionScore : int { kScoreSoftmax = 0, kScoreSoftpick = 1, kScoreSoftmax1 = 2 };
cudaError_t launchAttention(cudaStream_t s, const float* q, const float* k, const float* v, const int* docIds,
                            float* o, float* stats, int B, int T, int H, int Hk, int h, int window, float scale,
                            int score, bool tensorCores);
cudaError_t launchAttentionGrad(cudaStream_t s, const float* q, const float* k, const float* v, const int* docIds,
                                const float* o, const float* dO, float* stats, bool statsReady, float* delta,
                                float* dq, float* dk, float* dv, int B, int T, int H, int Hk, int h, int window,
                                float scale, int score, bool tensorCores);

}  // namespace tsgpt
