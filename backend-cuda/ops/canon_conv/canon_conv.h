// The fused Canon convolution's launchers (canon_conv.cu).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tsgpt {

// Rows of the weight gradient's first pass per partial sum: dw's partials are ⌈B·T / kCanonRowsPerPartial⌉ × C × 4
// floats (CANON_ROWS_PER_PARTIAL in kernel.ts).
constexpr int kCanonRowsPerPartial = 256;
// The row norm (Canon A and C) takes whole rows a block each way, kCanonRowNormRows of them, a thread a vector of 4
// channels (of 1 where rows are not 16-byte aligned), up to kCanonRowNormMaxVectors; its partials are one a block,
// summed in groups of kCanonPartialsPerGroup after: ⌈rows / 32⌉ + ⌈rows / 1024⌉ partials of C × 4 floats
// (canonPartialFloats in kernel.ts).
constexpr int kCanonRowNormRows = 32;
constexpr int kCanonPartialsPerGroup = 32;
constexpr int kCanonRowNormMaxVectors = 512;
// The row norm's leading channels as a second output (Canon A's z as the attention gate's input): at most this many.
constexpr int kCanonMaxLeadCols = 32;

// Canon layer over x [B,T,C] (rows r = b·T + t), weights w [C,4], docIds int32 [B,T]:
//   y[r,c] = x[r,c] + Σ_{k<4} w[c,k]·x[r−3+k, c], a tap counting only where t−3+k ≥ 0 and the same document.
// The gradient: dx[r,c] = dy[r,c] + Σ_k w[c,k]·dy[r+3−k, c] (same conditions, seen from the later token), and
// dw[c,k] = Σ_r dy[r,c]·x[r−3+k, c], summed in a fixed order through `partials` (see kCanonRowsPerPartial). x is
// float32, or bf16 where xBf16; y float32, or bf16 where yBf16. With normChannels > 0 (Canon B under QK-norm) the taps
// read x RMS-normed (eps) in heads of normGroup channels over its first normChannels channels, and dx is the gradient
// through that norm; normGroup a power of two from 4 to 128 dividing normChannels, C a multiple of 4 and the pointers
// 16-byte aligned (else cudaErrorInvalidValue). With rowNorm (Canon A and C: the sublayer's norm) the taps read x
// RMS-normed over the whole row, and the gradient's dx goes through that norm too, plus accumulated (x's gradient so far,
// where not null), with its bf16 copy in dxTwin where not null (float32 dx only; C at most 4·kCanonRowNormMaxVectors, or
// kCanonRowNormMaxVectors where rows are not 16-byte aligned). With the row norm, lead (where not null; y's type) takes
// each row's first leadCols normed channels too (Canon A's z as the attention gate's input), and the gradient adds dLead
// (where not null: [rows, leadCols], float32, or bf16 where dLeadBf16) to those channels' gradient before the norm's;
// leadCols from 1 to min(C, kCanonMaxLeadCols), a multiple of 4 where the rows go 4 channels a thread (C a multiple of
// 4, pointers 16-byte aligned). With relu2 (Canon D before the relu2 MLP's activation, no norm) y = relu(conv)², and the gradient kernel
// takes dy of that. dx is float32, or bf16 where dxBf16. dw adds dwAccumulated (w's gradient so far) where not null.
cudaError_t launchCanonConv(cudaStream_t s, const void* x, bool xBf16, const float* w, const int32_t* docIds, void* y,
                            bool yBf16, int64_t B, int64_t T, int64_t C, int64_t normChannels, int64_t normGroup, float eps,
                            bool rowNorm, bool relu2, void* lead, int64_t leadCols);
cudaError_t launchCanonConvGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* x, bool xBf16, const float* w,
                                const int32_t* docIds, void* dx, bool dxBf16, float* dw, const float* dwAccumulated, float* partials, int64_t B,
                                int64_t T, int64_t C, int64_t normChannels, int64_t normGroup, float eps, bool rowNorm,
                                const float* accumulated, __nv_bfloat16* dxTwin, bool relu2, const void* dLead, bool dLeadBf16,
                                int64_t leadCols);

}  // namespace tsgpt
