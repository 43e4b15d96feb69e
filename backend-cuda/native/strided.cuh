// The walk shared by the strided kernels (copy, broadcasting binary ops): element i of a dense index
// space → its element offsets in two operands of a StridedShape (strides[0] and strides[1]).
#pragma once
#include "kernels.h"

namespace tsgpt {

__device__ __forceinline__ void stridedOffsets(int64_t i, const StridedShape& sh, int64_t& off0, int64_t& off1) {
  int64_t rem = i;
  off0 = 0;
  off1 = 0;
#pragma unroll
  for (int k = kMaxRank - 1; k >= 0; --k) {
    if (k >= sh.rank) continue;
    const int64_t d = sh.dims[k];
    const int64_t idx = rem % d;
    rem /= d;
    off0 += idx * sh.strides[0][k];
    off1 += idx * sh.strides[1][k];
  }
}

}  // namespace tsgpt
