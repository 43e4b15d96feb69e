// The fused causal attention's launchers (causal_attention.cu: exact fp32; causal_attention_mma.cu: bf16 tensor cores).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// Fused causal attention: q [B,T,H,h], k/v [B,T,Hk,h] (H % Hk = 0), docIds int32
// [B,T] nondecreasing, o [B,T,H,h]; key j visible to query i iff j ≤ i, i − j < window and the
// same document. stats: B·T·H·3 floats per row (m, den, argmax key), written by the forward where
// not null. dq like q, dk/dv like k.
constexpr int kMaxAttentionHead = 128;
enum AttentionScore : int { kScoreSoftmax = 0, kScoreSoftpick = 1, kScoreSoftmax1 = 2 };
// Exact, fp32 (causal_attention.cu): the backward recomputes stats into its buffer first unless statsReady.
cudaError_t launchAttention(cudaStream_t s, const float* q, const float* k, const float* v, const int* docIds,
                            float* o, float* stats, int B, int T, int H, int Hk, int h, int window, float scale,
                            int score);
cudaError_t launchAttentionGrad(cudaStream_t s, const float* q, const float* k, const float* v, const int* docIds,
                                const float* o, const float* dO, float* stats, bool statsReady, float* dq, float* dk,
                                float* dv, const float* dvAccumulated, int B, int T, int H, int Hk, int h, int window,
                                float scale, int score);
// On bf16 tensor cores (causal_attention_mma.cu): q, k, v and dO16 in bf16, o in bf16 where oBf16 (else float32),
// the rest float32; head dims 64 and 128, every tensor 16-byte aligned (else cudaErrorInvalidValue /
// cudaErrorMisalignedAddress). The backward needs the forward's stats and delta, B·T·H floats of scratch (D = dO·O per
// row, from dO16 and o as stored, unless deltaReady: the gate's backward wrote it); it zeroes dq and adds into it
// with atomics. gate (float32 [B,T,H] logits) and y (bf16 like o), both or neither: the forward also writes the gated
// output y = o·σ(gate) (GatedCausalAttention), from o as stored.
// dvAccumulated (both backwards; nullptr: none): v's gradient so far, like v, added to dv in its store as the Add it
// replaces would (float32, the sum so far first): shaped attention's values are its input X, whose other gradients
// (the head mix's, the window mean's) come first. kvBf16 (the tensor cores' backward): dk and dv in bf16 (FlashAttention-3's;
// not with dvAccumulated: cudaErrorInvalidValue), else float32.
cudaError_t launchAttentionBf16(cudaStream_t s, const void* q, const void* k, const void* v, const int* docIds, void* o,
                                bool oBf16, float* stats, const float* gate, void* y, int B, int T, int H, int Hk, int h,
                                int window, float scale, int score);
cudaError_t launchAttentionGradBf16(cudaStream_t s, const void* q, const void* k, const void* v, const int* docIds,
                                    const void* o, bool oBf16, const void* dO16, const float* stats, float* delta,
                                    bool deltaReady, float* dq, void* dk, void* dv, bool kvBf16,
                                    const float* dvAccumulated, int B, int T, int H, int Hk, int h, int window, float scale,
                                    int score);

}  // namespace tsgpt
