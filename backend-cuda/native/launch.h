// Grid sizing shared by the .cu files: grid-stride loops over int64 element counts
// (a logits tensor of 48K tokens × 50304 exceeds 2^31 elements).
#pragma once
#include <cstdint>
#include <algorithm>

namespace tsgpt {
constexpr int kThreads = 256;
inline unsigned gridFor(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 16384));
}
#define TSGPT_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)
}  // namespace tsgpt
