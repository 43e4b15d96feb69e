// Copies from global to shared memory that do not pass through registers (cp.async, Ampere and later), and the opt-in
// that kernels over 48 KiB of dynamic shared memory need: the attention's tiles (ops/causal_attention) and the rows
// Canon's gradients read ahead (ops/canon_conv).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace tsgpt {

__device__ __forceinline__ uint32_t sharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes; src-size 0 fills the 16 bytes with zeros instead (the attention's rows past T). The copies of one commit
// group complete together.
__device__ __forceinline__ void copyAsync16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sharedAddress(dst)), "l"(src), "r"(valid ? 16 : 0));
}
// 4 bytes (one float or int) the same way: the attention backward's per-row values beside its Q and dO tiles.
__device__ __forceinline__ void copyAsync4(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(sharedAddress(dst)), "l"(src));
}
// 4, 8 or 16 bytes into a slot that the copying thread alone reads, with no barrier between: the "memory" clobber keeps
// the compiler from moving the thread's earlier reads of the slot past the copy that refills it.
template <int kBytes>
__device__ __forceinline__ void copyAsyncOwn(void* dst, const void* src) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(sharedAddress(dst)), "l"(src), "n"(kBytes) : "memory");
}
__device__ __forceinline__ void commitAsync() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most kPending of this thread's most recent commit groups are still in flight. The "memory" clobber:
// reads of what landed are not moved before the wait (a thread reading its own slots has no barrier to do that).
template <int kPending>
__device__ __forceinline__ void waitAsync() { asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory"); }

// Kernels whose dynamic shared memory is over what the function allows must opt in: by default 48 KiB less its static
// shared memory (Canon A's and C's gradient, 256 static bytes, failed to launch with a ring of exactly 48 KiB). What each
// kernel may take is kept once known, so that a launch asks the driver only when it needs more (the attention's and
// Canon's launchers call this before every launch; a process drives one device).
template <typename Kernel>
cudaError_t allowSharedMemory(Kernel kernel, size_t bytes) {
  static std::mutex guard;
  static std::unordered_map<const void*, size_t> allowed;  // bytes of dynamic shared memory each kernel may take
  const std::lock_guard<std::mutex> hold(guard);
  const void* key = reinterpret_cast<const void*>(kernel);
  if (const auto known = allowed.find(key); known != allowed.end() && bytes <= known->second) return cudaSuccess;
  cudaFuncAttributes attributes;
  if (const cudaError_t e = cudaFuncGetAttributes(&attributes, kernel); e != cudaSuccess) return e;
  if (bytes <= size_t(attributes.maxDynamicSharedSizeBytes)) {
    allowed[key] = size_t(attributes.maxDynamicSharedSizeBytes);
    return cudaSuccess;
  }
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (e == cudaSuccess) allowed[key] = bytes;
  return e;
}

}  // namespace tsgpt
