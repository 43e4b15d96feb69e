// The token smear's launchers (smear.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// Rows [B·T, d] of batch rows of T; gate_t = λ·σ(Σ_{k<gate} x[t, k]·w[k]) (operands rounded to bf16 where bf16);
// m_t = 0 at t ≡ 0 (mod T), else 1 where docIds is null (across documents), else docIds[t] == docIds[t − 1]:
//   forward:  y[t] = x[t] + (x[t−1]·m_t)·gate_t
//   backward: dx[t] = dy[t] + (dy[t+1]·gate_{t+1})·m_{t+1} (+ the gate's gradient in its first `gate` channels),
//             dw, dlambda (sums in a fixed order).
cudaError_t launchSmear(cudaStream_t s, const float* x, const float* w, const float* lambda, const int32_t* docIds, float* y,
                        int64_t rows, int64_t T, int64_t d, int gate, bool bf16);
cudaError_t launchSmearGrad(cudaStream_t s, const float* dy, const float* x, const float* w, const float* lambda,
                            const int32_t* docIds, float* dx, float* dw, float* dlambda, int64_t rows, int64_t T, int64_t d,
                            int gate, bool bf16);

}  // namespace tsgpt
