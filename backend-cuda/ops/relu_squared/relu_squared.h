// The fused ReLU²'s launchers (relu_squared.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// y = relu(x)² and dx = dy·2·relu(x) over n values; x and dy are float32, or bf16 where flagged; y and dx float32, or
// bf16 where flagged.
cudaError_t launchReluSquared(cudaStream_t s, const void* x, bool xBf16, void* y, bool yBf16, int64_t n);
cudaError_t launchReluSquaredGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* x, bool xBf16, void* dx,
                                  bool dxBf16, int64_t n);

}  // namespace tsgpt
