// The embedding lookup's launcher (embedding.cu).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tsgpt {

// out [n, d] float32 = the rows of table [V, d] (stored in bf16) at ids [n], widened (exact); an id outside [0, V) gives
// a row of zeros, as the float32 table's gather.
cudaError_t launchEmbeddingBf16(cudaStream_t s, const __nv_bfloat16* table, const int32_t* ids, float* out, int64_t V, int64_t d,
                                int64_t n);

}  // namespace tsgpt
