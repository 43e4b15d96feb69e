// The FP8 head loss's own launcher (fp8_head_loss.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// The soft-capped cross-entropy's gradient of logits [rows, cols] (float32, or bf16 where logitsBf16) for dloss = dy[0]
// (÷ rows where mean), from the forward's rowStats, rounded to bf16 where gBf16, divided by gradScale and written as e5m2
// codes row-major (g8 [rows, cols]) and transposed (g8t [cols, rows]): launchSoftcapCrossEntropyGrad then
// launchFp8Quantise in one pass. rows and cols multiples of 4, the logits 8-byte aligned.
cudaError_t launchSoftcapGradFp8(cudaStream_t s, const float* dy, const void* logits, bool logitsBf16, const int32_t* targets,
                                 const float* rowStats, bool gBf16, int64_t rows, int64_t cols, int cap, float scale, float temp,
                                 bool mean, float gradScale, uint8_t* g8, uint8_t* g8t);

// The forward and the gradient's codes of a chunk: launchSoftcapCrossEntropy (rowStats [2·rows]: each row's lse, then its
// loss; loss: their sum, or mean) then launchSoftcapGradFp8. In one pass over the logits on Hopper where rows and cols
// are multiples of 16, cols ≤ 65,536 and g8, g8t 16-byte aligned (the transposed codes then by launchTransposeCodes; the
// probabilities' rounding differs from the two passes' in a few float32 ulp), else by those two launchers. g8 and g8t
// both required, 4-byte aligned.
cudaError_t launchSoftcapLossGradFp8(cudaStream_t s, const float* dy, const void* logits, bool logitsBf16, const int32_t* targets,
                                     float* rowStats, float* loss, bool gBf16, int64_t rows, int64_t cols, int cap, float scale,
                                     float temp, bool mean, float gradScale, uint8_t* g8, uint8_t* g8t);

// codesT [cols, rows] = the bytes codes [rows, cols] transposed; rows and cols multiples of 16, both 16-byte aligned.
cudaError_t launchTransposeCodes(cudaStream_t s, const uint8_t* codes, int64_t rows, int64_t cols, uint8_t* codesT);

}  // namespace tsgpt
