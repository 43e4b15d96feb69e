// Canon B inside the attention's inputs: the launchers of canon_attention_inputs.cu.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../canon_conv/canon_conv.h"

namespace tsgpt {

// The attention's inputs from the QKV projection's output x [B,T,C], C = (H + 2·Hk)·h (q heads, k heads, v heads),
// through Canon B: z = x with each q and k head RMS-normed over h (eps) where qkNorm, else x; u = the Canon layer of z
// (launchCanonConv's taps, w [C,4], per document of docIds int32 [B,T]); then q [B,T,H,h] and k [B,T,Hk,h] = the rotary
// rotation of u's q and k heads (tables cos, sin [T, h/2]) and v [B,T,Hk,h] = λa·u_v + λb·ve (λa·u_v where ve is null;
// lambdas: 2 floats). x is read in bf16 where xBf16; q, k and v are written in bf16 where outBf16. h a power of two from
// 8 to 128 and every pointer 16-byte aligned, else cudaErrorInvalidValue.
cudaError_t launchCanonAttentionInputs(cudaStream_t s, const void* x, bool xBf16, const float* w, const int32_t* docIds,
                                       const float* cosT, const float* sinT, const float* lambdas, const float* ve, void* q,
                                       void* k, void* v, bool outBf16, int64_t B, int64_t T, int64_t H, int64_t Hk, int64_t h,
                                       bool qkNorm, float eps);

// Floats of launchCanonAttentionInputsGrad's scratch `partials` (canonAttentionInputsPartialFloats in kernel.ts): dw's
// partials as launchCanonConvGrad's, one per kCanonRowsPerPartial rows and channel, then a pair of λ sums for each block
// of 128 channels and kCanonRowsPerPartial rows.
inline int64_t canonAttentionInputsPartialFloats(int64_t rows, int64_t C) {
  const int64_t chunks = (rows + kCanonRowsPerPartial - 1) / kCanonRowsPerPartial, channelBlocks = (C + 127) / 128;
  return chunks * C * 4 + 2 * channelBlocks * chunks;
}

// The gradient in one pass from dq (float32), dk and dv (bf16 where kvBf16): dx (bf16 where dxBf16) through the rotation,
// the taps and the heads' norm; dw [C,4], plus dwAcc (w's gradient so far) where not null; dlambdas = [Σ dv·u_v, Σ dv·ve] (0 for λb without ve), plus lambdasAcc (the
// lambdas' gradient so far) where not null; dve = λb·dv where ve is not null, plus veAcc (ve's gradient so far) where not
// null. dw and dlambdas are summed in a fixed order through `partials` (canonAttentionInputsPartialFloats of them).
cudaError_t launchCanonAttentionInputsGrad(cudaStream_t s, const float* dq, const void* dk, const void* dv, bool kvBf16,
                                           const void* x, bool xBf16, const float* w, const int32_t* docIds, const float* cosT,
                                           const float* sinT, const float* lambdas, const float* ve, void* dx, bool dxBf16,
                                           float* dw, const float* dwAcc, float* dlambdas, float* dve, const float* veAcc,
                                           const float* lambdasAcc, float* partials, int64_t B, int64_t T, int64_t H, int64_t Hk,
                                           int64_t h, bool qkNorm, float eps);

}  // namespace tsgpt
