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

}  // namespace tsgpt
