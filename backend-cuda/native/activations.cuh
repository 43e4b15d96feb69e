// Elementwise activations shared by kernels that must agree to the bit: the attention gate's σ in HeadGate's kernels
// and in the attention's gated epilogue (causal_attention_mma.cu), SwiGLU's.
#pragma once

namespace tsgpt {

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

}  // namespace tsgpt
