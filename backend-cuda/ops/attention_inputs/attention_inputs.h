// The fused attention inputs' launchers (attention_inputs.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// The attention's inputs from the QKV projection: qkv [B,T,(H+2·Hk)·h] (q, k, v heads per token; float32, or bf16
// where qkvBf16: the projection's output, ops/linear) → q [B,T,H,h], k, v [B,T,Hk,h] (float32, or bf16 where outBf16):
// q, k = rotary(RMSNorm over h if qkNorm), tables [T, h/2]; v = λa·v_raw + λb·ve (ve may be null: λa·v_raw); lambdas:
// [λa, λb] on the device. The gradient (dq float32, dk and dv float32 or, where kvBf16, bf16: as the attention's backward
// stores them) writes dqkv, dve = λb·dv (where ve), dlambdas [2] = [Σ dv·v_raw, Σ dv·ve], deterministically.
// v null (dv null in the gradient): qkv [B,T,(H+Hk)·h] holds q and k heads only (the shaped blocks' projection), and
// lambdas, ve, dlambdas, dve, veAcc and lambdasAcc are unused (null).
cudaError_t launchAttentionInputs(cudaStream_t s, const void* qkv, bool qkvBf16, const float* cosT, const float* sinT,
                                  const float* lambdas, const float* ve, void* q, void* k, void* v, bool outBf16,
                                  int64_t B, int64_t T, int64_t H, int64_t Hk, int64_t h, bool qkNorm, float eps);
cudaError_t launchAttentionInputsGrad(cudaStream_t s, const float* dq, const void* dk, const void* dv, bool kvBf16,
                                      const void* qkv, bool qkvBf16, const float* cosT, const float* sinT,
                                      const float* lambdas, const float* ve, void* dqkv, bool dqkvBf16, float* dlambdas,
                                      float* dve, const float* veAcc, int64_t B, int64_t T, int64_t H, int64_t Hk,
                                      int64_t h, bool qkNorm, float eps, const float* lambdasAcc = nullptr);

}  // namespace tsgpt
