// A SIMT emulator for running the CUDA kernels' logic on a CPU (test/simt/build.ts compiles a kernel file with it,
// through a C++ compiler, with this header first): each CUDA thread is a fiber (ucontext), and the warp's shuffles and
// ballots and the block's __syncthreads are rendezvous where its fibers wait for each other. Blocks run one at a time,
// so a `static` stands in for __shared__ and one buffer for the dynamic shared memory. cp.async copies at once
// (test/simt/async_copy.cuh). Device memory is host memory. What it checks: a kernel's indexing, its maths and its
// warps' and blocks' exchanges, against the benchmarks' float64 references (and, built with -fsanitize=address, its
// reads and writes inside the tensors). What it does not: timing, the memory model (a read of a ring slot before its copy
// lands passes here), register or shared-memory limits, tensor-core instructions (the attention's kernels do not build).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

// CUDA's qualifiers as plain C++ (after cuda_runtime.h, whose host definitions they replace)
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#undef __align__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n)

namespace simt {

constexpr size_t kStackBytes = 64 * 1024;  // a fiber's stack: the kernels keep their windows in a few hundred bytes

struct Fiber {
  ucontext_t context;
  uint3 thread;
  bool done = false;
  std::unique_ptr<char[]> stack;
};

// A warp's rendezvous: each lane leaves its value, the last to arrive opens the next generation; values of two
// generations are kept apart, since a lane can be one exchange ahead of another but not two.
struct Warp {
  float values[2][32];
  unsigned bits[2];
  int arrived = 0;
  unsigned generation = 0;
};

struct Grid {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  Fiber* current = nullptr;
  uint3 block;
  dim3 blockDim, gridDim;
  std::vector<Warp> warps;
  int blockArrived = 0;
  unsigned blockGeneration = 0;
  std::function<void()> body;
};
inline Grid grid;
alignas(16) inline unsigned char dynamicShared[256 * 1024];

inline void yield() { swapcontext(&grid.current->context, &grid.scheduler); }
inline int linearThread() { return int((grid.current->thread.z * grid.blockDim.y + grid.current->thread.y) * grid.blockDim.x + grid.current->thread.x); }

// Waits for the warp's other lanes; returns the generation whose slots hold their values.
template <typename Leave>
unsigned meetWarp(Leave leave) {
  Warp& w = grid.warps[linearThread() / 32];
  const unsigned generation = w.generation;
  leave(w, generation & 1, linearThread() % 32);
  if (++w.arrived == 32) {
    w.arrived = 0;
    w.generation++;
  }
  while (w.generation == generation) yield();
  return generation & 1;
}

inline float shuffleXor(float v, int laneMask) {
  const int lane = linearThread() % 32;
  const unsigned slot = meetWarp([&](Warp& w, unsigned s, int l) { w.values[s][l] = v; });
  return grid.warps[linearThread() / 32].values[slot][lane ^ laneMask];
}

inline unsigned ballot(bool predicate) {
  const unsigned slot = meetWarp([&](Warp& w, unsigned s, int l) {
    if (w.arrived == 0) w.bits[s] = 0;
    if (predicate) w.bits[s] |= 1u << l;
  });
  return grid.warps[linearThread() / 32].bits[slot];
}

inline void syncBlock() {
  const unsigned generation = grid.blockGeneration;
  if (++grid.blockArrived == int(grid.blockDim.x * grid.blockDim.y * grid.blockDim.z)) {
    grid.blockArrived = 0;
    grid.blockGeneration++;
  }
  while (grid.blockGeneration == generation) yield();
}

inline void fiberMain() {
  grid.body();
  grid.current->done = true;
  swapcontext(&grid.current->context, &grid.scheduler);
}

// f() as every thread of every block, the blocks one after another, a block's threads in turn until each finishes.
template <typename F>
void run(dim3 blocks, dim3 threads, F f) {
  grid.gridDim = blocks;
  grid.blockDim = threads;
  const int n = int(threads.x * threads.y * threads.z);
  if (n % 32 != 0) {
    std::fprintf(stderr, "simt: a block of %d threads is not whole warps\n", n);
    std::exit(3);
  }
  grid.body = f;
  for (unsigned bz = 0; bz < blocks.z; ++bz)
    for (unsigned by = 0; by < blocks.y; ++by)
      for (unsigned bx = 0; bx < blocks.x; ++bx) {
        grid.block = make_uint3(bx, by, bz);
        if (grid.fibers.size() < size_t(n)) grid.fibers.resize(n);  // their stacks kept from block to block
        grid.warps.assign(n / 32, Warp{});
        grid.blockArrived = 0;
        for (int i = 0; i < n; ++i) {
          Fiber& fiber = grid.fibers[i];
          fiber.thread = make_uint3(i % threads.x, i / threads.x % threads.y, i / (threads.x * threads.y));
          fiber.done = false;
          if (!fiber.stack) fiber.stack.reset(new char[kStackBytes]);
          getcontext(&fiber.context);
          fiber.context.uc_stack.ss_sp = fiber.stack.get();
          fiber.context.uc_stack.ss_size = kStackBytes;
          fiber.context.uc_link = nullptr;
          makecontext(&fiber.context, fiberMain, 0);
        }
        for (bool running = true; running;) {
          running = false;
          for (int i = 0; i < n; ++i) {
            Fiber& fiber = grid.fibers[i];
            if (fiber.done) continue;
            running = true;
            grid.current = &fiber;
            swapcontext(&grid.scheduler, &fiber.context);
          }
        }
      }
}

// A launch `kernel<<<blocks, threads, shared, stream>>>(args...)`, as build.ts rewrites it.
template <typename Kernel, typename... Args>
void launch(Kernel kernel, dim3 blocks, dim3 threads, size_t sharedBytes, Args... args) {
  if (sharedBytes > sizeof(dynamicShared)) {
    std::fprintf(stderr, "simt: %zu bytes of dynamic shared memory, more than the emulator's %zu\n", sharedBytes, sizeof(dynamicShared));
    std::exit(3);
  }
  run(blocks, threads, [=] { kernel(args...); });
}

}  // namespace simt

#define threadIdx (::simt::grid.current->thread)
#define blockIdx (::simt::grid.block)
#define blockDim (::simt::grid.blockDim)
#define gridDim (::simt::grid.gridDim)

inline float __shfl_xor_sync(unsigned, float v, int laneMask) { return ::simt::shuffleXor(v, laneMask); }
inline unsigned __ballot_sync(unsigned, bool predicate) { return ::simt::ballot(predicate); }
inline void __syncthreads() { ::simt::syncBlock(); }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
using std::isinf;
using std::isnan;
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max(int64_t a, int64_t b) { return a > b ? a : b; }

// The runtime's calls that the launchers and the benchmarks make, over host memory (the other runtime calls are not
// emulated: a kernel file that makes them does not build here)
namespace simt {
template <typename T>
cudaError_t malloc(T** p, size_t bytes) {
  *p = static_cast<T*>(std::calloc(1, bytes ? bytes : 1));
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
template <typename T>
cudaError_t mallocAsync(T** p, size_t bytes, cudaStream_t) { return malloc(p, bytes); }
inline cudaError_t free(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t freeAsync(void* p, cudaStream_t) { return free(p); }
inline cudaError_t memcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t = 0) { std::memcpy(dst, src, bytes); return cudaSuccess; }
inline cudaError_t memset(void* dst, int value, size_t bytes, cudaStream_t = 0) { std::memset(dst, value, bytes); return cudaSuccess; }
inline cudaError_t success(...) { return cudaSuccess; }
inline cudaError_t elapsed(float* ms, cudaEvent_t, cudaEvent_t) { *ms = 0.f; return cudaSuccess; }
inline const char* errorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "an error (emulated launch)"; }
}  // namespace simt
#define cudaMalloc ::simt::malloc
#define cudaMallocAsync ::simt::mallocAsync
#define cudaFree ::simt::free
#define cudaFreeAsync ::simt::freeAsync
#define cudaMemcpy ::simt::memcpy
#define cudaMemcpyAsync ::simt::memcpy
#define cudaMemset ::simt::memset
#define cudaMemsetAsync ::simt::memset
#define cudaDeviceSynchronize ::simt::success
#define cudaGetLastError ::simt::success
#define cudaEventCreate ::simt::success
#define cudaEventRecord ::simt::success
#define cudaEventSynchronize ::simt::success
#define cudaEventDestroy ::simt::success
#define cudaEventElapsedTime ::simt::elapsed
#define cudaGetErrorString ::simt::errorString
