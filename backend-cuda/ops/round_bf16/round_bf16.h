// The bf16 rounding's launcher (round_bf16.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// y = float(bf16(x)) over n floats, to nearest even (the hardware conversion); y may be x.
cudaError_t launchRoundBf16(cudaStream_t s, const float* x, float* y, int64_t n);

}  // namespace tsgpt
