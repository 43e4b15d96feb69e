// test/simt's stand-in for backend-cuda/native/async_copy.cuh (build.ts puts it in that file's place): the copies go
// through the emulator's model of cp.async (simt.h: the destination is NaN until a wait covers the copy), and the opt-in
// for dynamic shared memory is the emulator's.
#pragma once
#include <cuda_runtime.h>

namespace tsgpt {
inline void copyAsync16(void* dst, const void* src, bool valid) { ::simt::copyAsync(dst, src, 16, valid); }
inline void copyAsync4(void* dst, const void* src) { ::simt::copyAsync(dst, src, 4, true); }
template <int kBytes>
inline void copyAsyncOwn(void* dst, const void* src) { ::simt::copyAsync(dst, src, kBytes, true); }
inline void commitAsync() { ::simt::commitAsync(); }
template <int kPending>
inline void waitAsync() { ::simt::waitAsync(kPending); }
template <typename Kernel>
cudaError_t allowSharedMemory(Kernel, size_t bytes) {
  if (bytes > ::simt::kMostSharedBytes) return cudaErrorInvalidValue;
  ::simt::optIn(bytes);
  return cudaSuccess;
}
}  // namespace tsgpt
