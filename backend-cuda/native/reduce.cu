// Row reductions: `outer` rows of `inner` contiguous elements each (the TypeScript side transposes
// the reduced axes to the end first). A warp per row for short rows, a block per row for long ones,
// several blocks per row (two passes) for a few very long rows.
#include <cfloat>
#include <algorithm>
#include <climits>
#include "kernels.h"
#include "launch.h"
#include "launchers.h"
#include "rows.cuh"

namespace tsgpt {
namespace {

// Accumulator: float for float32 (and for mean), int64 for integer sums so int32 sums wrap like
// the CPU backend's only at the final store.
template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<int32_t> { using type = long long; };
template <> struct AccOf<uint8_t> { using type = long long; };

template <typename A>
__device__ __forceinline__ A identity(int op) {
  switch (op) {
    case kMax: return std::is_same_v<A, float> ? A(-INFINITY) : A(LLONG_MIN);
    case kMin: return std::is_same_v<A, float> ? A(INFINITY) : A(LLONG_MAX);
    case kProd: case kAll: return A(1);
    default: return A(0);
  }
}

template <typename A>
__device__ __forceinline__ A combine(int op, A a, A b) {
  switch (op) {
    case kMax: return a > b ? a : b;
    case kMin: return a < b ? a : b;
    case kProd: return a * b;
    case kAll: return (a != A(0) && b != A(0)) ? A(1) : A(0);
    case kAny: return (a != A(0) || b != A(0)) ? A(1) : A(0);
    default: return a + b;  // kSum, kMean
  }
}

template <typename A>
__device__ __forceinline__ A warpReduce(int op, A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = combine<A>(op, v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Partial reduction of row `x[0..inner)` by threads lane, lane+step, ...
template <typename T, typename A>
__device__ __forceinline__ A partial(int op, const T* x, int64_t inner, int lane, int step) {
  A acc = identity<A>(op);
  for (int64_t j = lane; j < inner; j += step) acc = combine<A>(op, acc, A(x[j]));
  return acc;
}

template <typename T, typename A>
__device__ __forceinline__ void store(int op, T* out, A v, int64_t inner) {
  if (op == kMean) *out = T(v / A(inner));
  else *out = T(v);
}

template <typename T>
__global__ void reduceWarpPerRow(int op, const T* __restrict__ x, T* __restrict__ out,
                                 int64_t outer, int64_t inner) {
  using A = typename AccOf<T>::type;
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= outer) return;
  A v = warpReduce<A>(op, partial<T, A>(op, x + row * inner, inner, lane, 32));
  if (lane == 0) store<T, A>(op, out + row, v, inner);
}

// The whole block's combination of `v` (valid in thread 0).
template <typename A>
__device__ __forceinline__ A blockCombine(int op, A v) {
  __shared__ A warpSums[32];
  v = warpReduce<A>(op, v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, nWarps = blockDim.x / 32;
  if (lane == 0) warpSums[warp] = v;
  __syncthreads();
  v = identity<A>(op);
  if (warp == 0) v = warpReduce<A>(op, lane < nWarps ? warpSums[lane] : identity<A>(op));
  return v;
}

template <typename T>
__global__ void reduceBlockPerRow(int op, const T* __restrict__ x, T* __restrict__ out,
                                  int64_t inner) {
  using A = typename AccOf<T>::type;
  const int64_t row = blockIdx.x;
  const A v = blockCombine<A>(op, partial<T, A>(op, x + row * inner, inner, threadIdx.x, blockDim.x));
  if (threadIdx.x == 0) store<T, A>(op, out + row, v, inner);
}

// Few long rows (a gradient summed to a scalar, a norm): one block per row would leave most of the
// GPU idle, so each row is cut into `chunks` pieces, each block combines one piece into partials[],
// and a second pass combines each row's partials.
template <typename T>
__global__ void reduceChunks(int op, const T* __restrict__ x, typename AccOf<T>::type* __restrict__ partials,
                             int64_t inner, int64_t chunk, int chunks) {
  using A = typename AccOf<T>::type;
  const int64_t row = blockIdx.x / chunks, c = blockIdx.x % chunks;
  const int64_t start = c * chunk, len = start < inner ? (inner - start < chunk ? inner - start : chunk) : 0;
  const A v = blockCombine<A>(op, partial<T, A>(op, x + row * inner + start, len, threadIdx.x, blockDim.x));
  if (threadIdx.x == 0) partials[blockIdx.x] = v;
}

template <typename T>
__global__ void reducePartials(int op, const typename AccOf<T>::type* __restrict__ partials, T* __restrict__ out,
                               int64_t outer, int chunks, int64_t inner) {
  using A = typename AccOf<T>::type;
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= outer) return;
  const A v = warpReduce<A>(op, partial<A, A>(op, partials + row * chunks, chunks, lane, 32));
  if (lane == 0) store<T, A>(op, out + row, v, inner);
}

// ArgMax/ArgMin: (value, index) pairs; ties resolve to the lowest index, as the CPU backend does.
template <typename T>
__device__ __forceinline__ void argCombine(bool isMax, T& v, int& i, T v2, int i2) {
  const bool better = isMax ? (v2 > v || (v2 == v && i2 < i)) : (v2 < v || (v2 == v && i2 < i));
  if (better) { v = v2; i = i2; }
}

template <typename T>
__global__ void argReduceBlockPerRow(bool isMax, const T* __restrict__ x, int32_t* __restrict__ out,
                                     int64_t inner) {
  __shared__ T sv[32];
  __shared__ int si[32];
  const T* r = x + blockIdx.x * inner;
  T v = r[0];
  int idx = 0;
  for (int64_t j = threadIdx.x; j < inner; j += blockDim.x) argCombine<T>(isMax, v, idx, r[j], int(j));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const T v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    argCombine<T>(isMax, v, idx, v2, i2);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, nWarps = blockDim.x / 32;
  if (lane == 0) { sv[warp] = v; si[warp] = idx; }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < nWarps; ++w) argCombine<T>(isMax, v, idx, sv[w], si[w]);
    out[blockIdx.x] = idx;
  }
}

template <typename T>
cudaError_t reduceTyped(cudaStream_t s, int op, const T* x, void* out, int64_t outer, int64_t inner) {
  if (op == kArgMax || op == kArgMin) {
    argReduceBlockPerRow<T><<<(unsigned)outer, inner >= 256 ? 256 : 32, 0, s>>>(op == kArgMax, x, (int32_t*)out, inner);
  } else if (inner >= (1 << 16) && outer < 1024) {
    using A = typename AccOf<T>::type;
    const int64_t chunks64 = std::min<int64_t>((inner + 8191) / 8192, (2048 + outer - 1) / outer);
    const int chunks = int(std::max<int64_t>(chunks64, 2));
    const int64_t chunk = (inner + chunks - 1) / chunks;
    A* partials = nullptr;
    cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&partials), sizeof(A) * outer * chunks, s);
    if (e != cudaSuccess) return e;
    reduceChunks<T><<<(unsigned)(outer * chunks), 512, 0, s>>>(op, x, partials, inner, chunk, chunks);
    const int rowsPerBlock = kThreads / 32;
    reducePartials<T><<<(unsigned)((outer + rowsPerBlock - 1) / rowsPerBlock), kThreads, 0, s>>>(op, partials, (T*)out, outer, chunks, inner);
    e = cudaGetLastError();
    const cudaError_t f = cudaFreeAsync(partials, s);  // stream-ordered: after the second pass
    return e != cudaSuccess ? e : f;
  } else if (inner <= 1024) {
    const int rowsPerBlock = kThreads / 32;
    reduceWarpPerRow<T><<<(unsigned)((outer + rowsPerBlock - 1) / rowsPerBlock), kThreads, 0, s>>>(op, x, (T*)out, outer, inner);
  } else {
    reduceBlockPerRow<T><<<(unsigned)outer, 512, 0, s>>>(op, x, (T*)out, inner);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launchReduce(cudaStream_t s, int op, int dtype, const void* x, void* out, int64_t outer,
                         int64_t inner) {
  if (outer == 0) return cudaSuccess;
  if (inner == 0) {  // an empty reduction yields the identity (0 for sums)
    return launchFill(s, (op == kArgMax || op == kArgMin) ? int(kInt32) : dtype, out, outer,
                      op == kProd || op == kAll ? 1.0 : (op == kMax ? -INFINITY : (op == kMin ? INFINITY : 0.0)));
  }
  if (outer > 0x7fffffffLL) return cudaErrorInvalidValue;
  switch (dtype) {
    case kFloat32: return reduceTyped<float>(s, op, (const float*)x, out, outer, inner);
    case kInt32: return reduceTyped<int32_t>(s, op, (const int32_t*)x, out, outer, inner);
    case kBool: return reduceTyped<uint8_t>(s, op, (const uint8_t*)x, out, outer, inner);
    default: return cudaErrorInvalidValue;
  }
}

namespace {

__global__ void sumPartialPairsKernel(const float* __restrict__ partials, int count, float* __restrict__ first,
                                      float* __restrict__ second, const float* __restrict__ add) {
  __shared__ float scratch[32];
  float a = 0.f, b = 0.f;
  for (int j = threadIdx.x; j < count; j += blockDim.x) {
    a += partials[2 * j];
    b += partials[2 * j + 1];
  }
  a = blockReduce<false>(a, scratch);
  b = blockReduce<false>(b, scratch);
  if (threadIdx.x == 0) {
    *first = add ? a + add[0] : a;  // a gradient so far: the Add's value
    *second = add ? b + add[1] : b;
  }
}

}  // namespace

cudaError_t launchSumPartialPairs(cudaStream_t s, const float* partials, int count, float* first, float* second, const float* add) {
  sumPartialPairsKernel<<<1, 1024, 0, s>>>(partials, count, first, second, add);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(reduce, launchReduce, "op", "dtype", "x", "out", "outer", "inner");

}  // namespace tsgpt
