// The fused soft-capped cross-entropy's launchers (softcap_cross_entropy.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// Soft-capped cross-entropy of raw logits [rows, cols] (float32, or bf16 where logitsBf16) against int32 targets.
// rowStats: 2·rows floats written by the forward (each row's logsumexp, then each row's loss) and
// read by the backward; loss: one float, the sum (or mean) of the rows' losses; dy: one float.
enum LogitCap : int { kLogitCapNone = 0, kLogitCapSigmoid = 1, kLogitCapTanh = 2 };
cudaError_t launchSoftcapCrossEntropy(cudaStream_t s, const void* logits, bool logitsBf16, const int32_t* targets,
                                      float* rowStats, float* loss, int64_t rows, int64_t cols, int cap, float scale,
                                      float temp, bool mean);
cudaError_t launchSoftcapCrossEntropyGrad(cudaStream_t s, const float* dy, const void* logits, bool logitsBf16,
                                          const int32_t* targets, const float* rowStats, void* dlogits,
                                          bool dlogitsBf16, int64_t rows, int64_t cols, int cap, float scale,
                                          float temp, bool mean);
// loss = the sum (or mean) of rowLoss [rows] by one block in a fixed order: the forward's last step.
cudaError_t launchSumRowLosses(cudaStream_t s, const float* rowLoss, float* loss, int64_t rows, bool mean);

}  // namespace tsgpt
