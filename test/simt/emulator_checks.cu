// Kernels that break the hardware's rules on purpose, for test/kernels_on_cpu.test.ts to check that the emulator (simt.h)
// catches each: `emulator_checks <case>` prints what the kernel saw, or the emulator stops it (exit 3, its reason).
//   early-read: a cp.async slot read before the wait that covers it (NaN)      waited: read after it (the value)
//   unwritten-shared: a shared array's value read before any thread wrote it (NaN)  skipped-barrier: a barrier that lane 0 skips
//   no-opt-in / opt-in: 64 KiB of dynamic shared memory without and with allowSharedMemory
#include <cstdio>
#include <cstring>

#include "../../backend-cuda/native/async_copy.cuh"

using namespace tsgpt;

__global__ void readSlot(const float* src, float* out, bool wait) {
  extern __shared__ __align__(16) unsigned char slots[];
  float* slot = reinterpret_cast<float*>(slots) + 4 * threadIdx.x;
  copyAsync16(slot, src, true);
  commitAsync();
  if (wait) waitAsync<0>();
  out[threadIdx.x] = slot[0];
}

__global__ void readUnwritten(float* out) {
  __shared__ float value[1];
  out[threadIdx.x] = value[0];
}

__global__ void skipBarrier(float* out) {
  if (threadIdx.x != 0) __syncthreads();
  out[threadIdx.x] = 1.f;
}

int main(int argc, char** argv) {
  const char* c = argc > 1 ? argv[1] : "";
  float src[4] = {1.5f, 2.5f, 3.5f, 4.5f}, out[32] = {};
  if (!std::strcmp(c, "early-read") || !std::strcmp(c, "waited")) {
    readSlot<<<1, 32, 32 * 16>>>(src, out, !std::strcmp(c, "waited"));
  } else if (!std::strcmp(c, "unwritten-shared")) {
    readUnwritten<<<1, 32>>>(out);
  } else if (!std::strcmp(c, "skipped-barrier")) {
    skipBarrier<<<1, 64>>>(out);
  } else if (!std::strcmp(c, "no-opt-in") || !std::strcmp(c, "opt-in")) {
    const size_t bytes = 64 * 1024;
    if (!std::strcmp(c, "opt-in")) allowSharedMemory(readSlot, bytes);
    readSlot<<<1, 32, bytes>>>(src, out, true);
  } else {
    std::fprintf(stderr, "usage: %s early-read|waited|unwritten-shared|skipped-barrier|no-opt-in|opt-in\n", argv[0]);
    return 2;
  }
  std::printf("saw %g\n", out[0]);
  return 0;
}
