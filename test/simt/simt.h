// A SIMT emulator for running the CUDA kernels' logic on a CPU (test/simt/build.ts compiles a kernel file with it,
// through a C++ compiler, with this header first): each CUDA thread is a fiber (ucontext), and the warp's shuffles and
// ballots, its __syncwarp and the block's __syncthreads are rendezvous where its fibers wait for each other. Blocks run one at a time,
// so a `static` stands in for a __shared__ array and an allocation of the launch's bytes for the dynamic shared memory.
// Device memory is host memory. What it checks: a kernel's indexing, its maths and its warps' and blocks' exchanges,
// against the benchmarks' float64 references (and, built with -fsanitize=address, its reads and writes inside the
// tensors and inside the shared memory it asked for); and, as adversarially as the hardware may:
// - the memory model of cp.async (test/simt/async_copy.cuh): a copy's destination holds NaN bytes from the copy until
//   the thread's wait that covers its commit group, so a read of a slot before its copy lands, or a refill of a slot
//   that a thread still reads, turns the results to NaN;
// - the order of the threads between two rendezvous, shuffled on SIMT_SEED, and warps held back for a while at random (a
//   race between threads or warps shows on some seeds);
// - shared memory that no thread wrote: NaN bytes at each block's start;
// - the launch's limits: 1,024 threads a block, 65,535 blocks in y and z, 48 KiB of shared memory a block (static and
//   dynamic) unless the launch opted in (allowSharedMemory) for its dynamic bytes, 227 KiB (Hopper's most) in any case.
// What it does not: timing, registers, tensor-core instructions (the attention's kernels do not build).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

// CUDA's qualifiers as plain C++ (after cuda_runtime.h, whose host definitions they replace)
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __maxnreg__
#undef __shared__
#undef __align__
// (__shared__ arrays: build.ts makes each a `static` that it registers with sharedStatic)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __maxnreg__(n)
#define __align__(n)

namespace simt {

constexpr size_t kStackBytes = 64 * 1024;  // a fiber's stack: the kernels keep their windows in a few hundred bytes
constexpr size_t kDefaultSharedBytes = 48 * 1024, kMostSharedBytes = 227 * 1024;  // a block's, without and with the opt-in
constexpr unsigned char kPoison = 0xFF;  // NaN in every float and bf16 (and -1 in an int)

// An asynchronous copy in flight: its bytes as they were read, and where they land.
struct Copy {
  unsigned char* dst;
  unsigned char bytes[16];
  int size;
  void land() const { std::memcpy(dst, bytes, size_t(size)); }
};

struct Fiber {
  ucontext_t context;
  uint3 thread;
  bool done = false;
  std::unique_ptr<char[]> stack;
  const unsigned* waitingOn = nullptr;  // a rendezvous' generation that the fiber waits to see move on from `waitingFor`
  unsigned waitingFor = 0;
  std::vector<Copy> uncommitted;
  std::deque<std::vector<Copy>> committed;  // the oldest group first
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
  size_t dynamicBytes = 0;
  size_t optedInBytes = 0;                         // the dynamic bytes the launch opted in for (0: none)
  std::vector<std::pair<void*, size_t>> statics;  // the block's __shared__ arrays met so far
  uint64_t schedule = 0;                           // the thread order's random state
};
inline Grid grid;
// The launch's dynamic shared memory: an allocation of exactly its bytes, so that AddressSanitizer stops a read or write
// past them (a ring's slots counted short in its launcher)
inline std::unique_ptr<unsigned char[]> dynamicSharedBuffer;
inline unsigned char* dynamicShared = nullptr;

template <typename... Values>
[[noreturn]] void fail(const char* what, Values... values) {
  std::fprintf(stderr, "simt: ");
  std::fprintf(stderr, what, values...);
  std::fprintf(stderr, "\n");
  std::exit(3);
}

// The shared memory a block may take: 48 KiB in all, or its static bytes and the dynamic bytes it opted in for.
inline void checkShared() {
  size_t staticBytes = 0;
  for (const auto& [p, n] : grid.statics) staticBytes += n;
  if (staticBytes + grid.dynamicBytes > kMostSharedBytes)
    fail("%zu bytes of static and dynamic shared memory, more than a block's %zu", staticBytes + grid.dynamicBytes, kMostSharedBytes);
  if (grid.optedInBytes < grid.dynamicBytes && staticBytes + grid.dynamicBytes > kDefaultSharedBytes)
    fail("%zu bytes of shared memory without the opt-in (allowSharedMemory) for the %zu dynamic", staticBytes + grid.dynamicBytes, grid.dynamicBytes);
}

// A __shared__ array met by a thread (build.ts adds the call after each declaration): counted once a block, and filled
// with NaN bytes there, as no thread has written it yet.
inline void sharedStatic(void* p, size_t bytes) {
  for (const auto& [q, n] : grid.statics)
    if (q == p) return;
  grid.statics.emplace_back(p, bytes);
  std::memset(p, kPoison, bytes);
  checkShared();
}

// Back to the scheduler until `generation` moves on from `value` (the scheduler does not switch to a fiber that would only
// find it has not: a switch costs a system call).
inline void await(const unsigned& generation, unsigned value) {
  grid.current->waitingOn = &generation;
  grid.current->waitingFor = value;
  swapcontext(&grid.current->context, &grid.scheduler);
  grid.current->waitingOn = nullptr;
}
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
  if (w.generation == generation) await(w.generation, generation);
  return generation & 1;
}

// v of lane srcLane (mod 32) of the warp, each lane leaving its own
inline float shuffle(float v, int srcLane) {
  const unsigned slot = meetWarp([&](Warp& w, unsigned s, int l) { w.values[s][l] = v; });
  return grid.warps[linearThread() / 32].values[slot][srcLane & 31];
}
inline float shuffleXor(float v, int laneMask) { return shuffle(v, linearThread() % 32 ^ laneMask); }

inline unsigned ballot(bool predicate) {
  const unsigned slot = meetWarp([&](Warp& w, unsigned s, int l) {
    if (w.arrived == 0) w.bits[s] = 0;
    if (predicate) w.bits[s] |= 1u << l;
  });
  return grid.warps[linearThread() / 32].bits[slot];
}

// __syncwarp: a rendezvous of the warp's lanes (the ballot's, its value unused), so that what a lane wrote before it is
// there for every lane after it (cp.async's copies too, once their thread's wait has covered them)
inline void syncWarp() { (void)ballot(true); }

inline void syncBlock() {
  const unsigned generation = grid.blockGeneration;
  if (++grid.blockArrived == int(grid.blockDim.x * grid.blockDim.y * grid.blockDim.z)) {
    grid.blockArrived = 0;
    grid.blockGeneration++;
  }
  if (grid.blockGeneration == generation) await(grid.blockGeneration, generation);
}

// cp.async as the memory model allows it at its most adversarial: the destination is NaN from the copy until a wait of
// the copying thread covers the copy's commit group (the source is read at the copy).
inline void copyAsync(void* dst, const void* src, int size, bool valid) {
  Copy copy{static_cast<unsigned char*>(dst), {}, size};
  if (valid) std::memcpy(copy.bytes, src, size_t(size));
  std::memset(dst, kPoison, size_t(size));
  grid.current->uncommitted.push_back(copy);
}
inline void commitAsync() {
  Fiber& f = *grid.current;
  f.committed.push_back(std::move(f.uncommitted));
  f.uncommitted.clear();
}
// Lands all but the `pending` most recent commit groups (the copies not yet committed stay in flight).
inline void waitAsync(size_t pending) {
  Fiber& f = *grid.current;
  for (; f.committed.size() > pending; f.committed.pop_front())
    for (const Copy& copy : f.committed.front()) copy.land();
}

inline void fiberMain() {
  grid.body();
  commitAsync();  // the copies a thread left in flight land when it exits
  waitAsync(0);
  grid.current->done = true;
  swapcontext(&grid.current->context, &grid.scheduler);
}

// xorshift64 on the schedule's state (seeded from SIMT_SEED at the first launch)
inline uint64_t nextRandom() {
  if (grid.schedule == 0) {
    const char* seed = std::getenv("SIMT_SEED");
    grid.schedule = (seed ? std::strtoull(seed, nullptr, 10) : 1) * 0x9E3779B97F4A7C15ull | 1;
  }
  grid.schedule ^= grid.schedule << 13;
  grid.schedule ^= grid.schedule >> 7;
  grid.schedule ^= grid.schedule << 17;
  return grid.schedule;
}

// f() as every thread of every block, the blocks one after another, a block's threads in turn until each finishes.
template <typename F>
void run(dim3 blocks, dim3 threads, F f) {
  grid.gridDim = blocks;
  grid.blockDim = threads;
  const size_t n = size_t(threads.x) * threads.y * threads.z;
  if (n == 0 || n > 1024) fail("a block of %zu threads (1 to 1,024)", n);
  if (n % 32 != 0) fail("a block of %zu threads is not whole warps", n);
  if (blocks.y > 65535 || blocks.z > 65535) fail("a grid of %u blocks in y or z (at most 65,535)", std::max(blocks.y, blocks.z));
  grid.body = f;
  std::vector<int> order(n), stalled(n / 32);  // the round's order of the threads; the rounds each warp is held back
  for (unsigned bz = 0; bz < blocks.z; ++bz)
    for (unsigned by = 0; by < blocks.y; ++by)
      for (unsigned bx = 0; bx < blocks.x; ++bx) {
        grid.block = make_uint3(bx, by, bz);
        if (grid.fibers.size() < n) grid.fibers.resize(n);  // their stacks kept from block to block
        grid.warps.assign(n / 32, Warp{});
        grid.blockArrived = 0;
        grid.statics.clear();
        std::memset(dynamicShared, kPoison, grid.dynamicBytes);  // no thread has written it
        for (size_t i = 0; i < n; ++i) {
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
        // Rounds: each fiber that is not done runs to its next rendezvous, in an order of the round's own; a warp may be
        // held back for up to 64 rounds (one in 16 each round), as a warp of the hardware may fall behind the others.
        std::fill(stalled.begin(), stalled.end(), 0);
        for (bool running = true; running;) {
          running = false;
          bool ran = false;
          for (size_t i = 0; i < n; ++i) order[i] = int(i);
          for (size_t i = n - 1; i > 0; --i) std::swap(order[i], order[nextRandom() % (i + 1)]);
          for (int& rounds : stalled) rounds = rounds > 0 ? rounds - 1 : nextRandom() % 16 == 0 ? int(1 + nextRandom() % 64) : 0;
          bool held = false;
          for (int i : order) {
            Fiber& fiber = grid.fibers[i];
            if (fiber.done) continue;
            running = true;
            if (stalled[i / 32] > 0) held = true;
            if (stalled[i / 32] > 0 || (fiber.waitingOn && *fiber.waitingOn == fiber.waitingFor)) continue;
            ran = true;
            grid.current = &fiber;
            swapcontext(&grid.scheduler, &fiber.context);
          }
          if (running && !ran) {
            // every fiber left waits: for a warp held back (let it go), or for one that has exited (a deadlock here)
            if (!held) fail("block (%u, %u, %u): its threads wait at a barrier or shuffle that the others have left", bx, by, bz);
            std::fill(stalled.begin(), stalled.end(), 0);
          }
        }
      }
}

// A launch `kernel<<<blocks, threads, shared, stream>>>(args...)`, as build.ts rewrites it.
template <typename Kernel, typename... Args>
void launch(Kernel kernel, dim3 blocks, dim3 threads, size_t sharedBytes, Args... args) {
  grid.dynamicBytes = sharedBytes;
  grid.statics.clear();
  checkShared();
  static_assert(__STDCPP_DEFAULT_NEW_ALIGNMENT__ >= 16, "the kernels' dynamic shared arrays are 16-byte aligned");
  dynamicSharedBuffer.reset(sharedBytes ? new unsigned char[sharedBytes] : nullptr);
  dynamicShared = dynamicSharedBuffer.get();
  run(blocks, threads, [=] { kernel(args...); });
  grid.optedInBytes = 0;
}
// The opt-in for a kernel's dynamic shared memory, which the launchers ask for just before the launch (the emulator
// cannot tell kernels apart: the launch after it takes it)
inline void optIn(size_t bytes) { grid.optedInBytes = std::max(grid.optedInBytes, bytes); }

}  // namespace simt

#define threadIdx (::simt::grid.current->thread)
#define blockIdx (::simt::grid.block)
#define blockDim (::simt::grid.blockDim)
#define gridDim (::simt::grid.gridDim)

inline float __shfl_xor_sync(unsigned, float v, int laneMask) { return ::simt::shuffleXor(v, laneMask); }
inline float __shfl_sync(unsigned, float v, int srcLane) { return ::simt::shuffle(v, srcLane); }
inline unsigned __ballot_sync(unsigned, bool predicate) { return ::simt::ballot(predicate); }
inline void __syncthreads() { ::simt::syncBlock(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::simt::syncWarp(); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
using std::isinf;
using std::isnan;
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }  // one rounding, as the GPU's FFMA
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
