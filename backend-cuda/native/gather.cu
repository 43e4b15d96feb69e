// Gather (GatherV2), its gradient UnsortedSegmentSum (an atomic scatter-add), and OneHot; whole rows of a matrix by
// a warp a row (the embedding lookups and their gradients).
#include "kernels.h"
#include "launch.h"
#include "launchers.h"
#include "rows.cuh"

namespace tsgpt {
namespace {

template <typename T>
__global__ void gatherKernel(const T* __restrict__ params, const int32_t* __restrict__ idx,
                             T* __restrict__ out, int64_t outer, int64_t axisDim, int64_t inner,
                             int64_t nIdx, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) {  // i over out[batch, outer, nIdx, inner]
    const int64_t in = i % inner;
    int64_t rest = i / inner;
    const int64_t j = rest % nIdx;
    rest /= nIdx;
    const int64_t o = rest % outer;
    const int64_t b = rest / outer;
    const int64_t k = idx[b * nIdx + j];
    out[i] = (k >= 0 && k < axisDim) ? params[((b * outer + o) * axisDim + k) * inner + in] : T(0);
  }
}

// The common case, whole rows of a matrix (batch = outer = 1, inner a multiple of 4 floats, 16-byte aligned): one warp
// a row of out, 16-byte copies, no index arithmetic per element (the general kernel's three 64-bit divisions an
// element held the embedding lookup to ~1.3 TB/s).
__global__ void gatherRowsKernel(const float4* __restrict__ params, const int32_t* __restrict__ idx, float4* __restrict__ out,
                                 int64_t axisDim, int64_t vecs, int64_t nIdx) {
  forEachRowByWarp(nIdx, [&](int64_t j, int lane) {
    const int64_t k = idx[j];
    float4* const o = out + j * vecs;
    const bool inside = k >= 0 && k < axisDim;  // an index outside gives zeros, as the general kernel
    const float4* const p = params + (inside ? k : 0) * vecs;
#pragma unroll 4
    for (int64_t v = lane; v < vecs; v += 32) o[v] = inside ? p[v] : make_float4(0.f, 0.f, 0.f, 0.f);
  });
}

// The same for the gradient of whole rows (out [numSegments, inner] += the rows of x, by ids; inner a multiple of 4
// floats, 16-byte aligned): a warp a row of x, float4 atomics on Hopper (a quarter of the operations), no division.
__global__ void segmentSumRowsKernel(const float4* __restrict__ x, const int32_t* __restrict__ ids, float4* __restrict__ out,
                                     int64_t vecs, int64_t rows, int64_t numSegments) {
  forEachRowByWarp(rows, [&](int64_t r, int lane) {
    const int64_t seg = ids[r];
    if (seg < 0 || seg >= numSegments) return;  // an id outside adds nothing, as the general kernel
    float4* const o = out + seg * vecs;
    const float4* const xr = x + r * vecs;
#pragma unroll 4
    for (int64_t v = lane; v < vecs; v += 32) {
      const float4 a = xr[v];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      atomicAdd(o + v, a);
#else
      float* const f = reinterpret_cast<float*>(o + v);
      atomicAdd(f, a.x);
      atomicAdd(f + 1, a.y);
      atomicAdd(f + 2, a.z);
      atomicAdd(f + 3, a.w);
#endif
    }
  });
}

template <typename T>
__global__ void segmentSumKernel(const T* __restrict__ x, const int32_t* __restrict__ ids,
                                 T* __restrict__ out, int64_t inner, int64_t numSegments, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) {
    const int64_t seg = ids[i / inner];
    if (seg >= 0 && seg < numSegments) atomicAdd(out + seg * inner + i % inner, x[i]);
  }
}

template <typename T>
__global__ void oneHotKernel(const int32_t* __restrict__ idx, T* __restrict__ out, int64_t depth,
                             T on, T off, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) { out[i] = idx[i / depth] == i % depth ? on : off; }
}

}  // namespace

cudaError_t launchGather(cudaStream_t s, int elemBytes, const void* params, const int32_t* idx,
                         void* out, int64_t batch, int64_t outer, int64_t axisDim, int64_t inner,
                         int64_t nIdx) {
  const int64_t n = batch * outer * nIdx * inner;
  if (n == 0) return cudaSuccess;
  if (elemBytes == 4 && batch * outer == 1 && inner % 4 == 0 && reinterpret_cast<uintptr_t>(params) % 16 == 0 &&
      reinterpret_cast<uintptr_t>(out) % 16 == 0) {
    gatherRowsKernel<<<gridFor(nIdx * 32), kThreads, 0, s>>>((const float4*)params, idx, (float4*)out, axisDim, inner / 4, nIdx);
    return cudaGetLastError();
  }
  const unsigned g = gridFor(n);
  switch (elemBytes) {
    case 4: gatherKernel<uint32_t><<<g, kThreads, 0, s>>>((const uint32_t*)params, idx, (uint32_t*)out, outer, axisDim, inner, nIdx, n); break;
    case 1: gatherKernel<uint8_t><<<g, kThreads, 0, s>>>((const uint8_t*)params, idx, (uint8_t*)out, outer, axisDim, inner, nIdx, n); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launchSegmentSum(cudaStream_t s, int dtype, const void* x, const int32_t* ids, void* out,
                             int64_t rows, int64_t inner, int64_t numSegments) {
  const int64_t n = rows * inner;
  if (n == 0) return cudaSuccess;
  if (dtype == kFloat32 && inner % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
      reinterpret_cast<uintptr_t>(out) % 16 == 0) {
    segmentSumRowsKernel<<<gridFor(rows * 32), kThreads, 0, s>>>((const float4*)x, ids, (float4*)out, inner / 4, rows, numSegments);
    return cudaGetLastError();
  }
  const unsigned g = gridFor(n);
  switch (dtype) {
    case kFloat32: segmentSumKernel<float><<<g, kThreads, 0, s>>>((const float*)x, ids, (float*)out, inner, numSegments, n); break;
    case kInt32: segmentSumKernel<int32_t><<<g, kThreads, 0, s>>>((const int32_t*)x, ids, (int32_t*)out, inner, numSegments, n); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launchOneHot(cudaStream_t s, int dtype, const int32_t* idx, void* out, int64_t n,
                         int64_t depth, double onValue, double offValue) {
  const int64_t total = n * depth;
  if (total == 0) return cudaSuccess;
  const unsigned g = gridFor(total);
  switch (dtype) {
    case kFloat32: oneHotKernel<float><<<g, kThreads, 0, s>>>(idx, (float*)out, depth, (float)onValue, (float)offValue, total); break;
    case kInt32: oneHotKernel<int32_t><<<g, kThreads, 0, s>>>(idx, (int32_t*)out, depth, (int32_t)onValue, (int32_t)offValue, total); break;
    case kBool: oneHotKernel<uint8_t><<<g, kThreads, 0, s>>>(idx, (uint8_t*)out, depth, onValue != 0, offValue != 0, total); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

TSGPT_LAUNCHER(gather, launchGather, "elemBytes", "params", "indices", "out", "batch", "outer", "axisDim", "inner", "nIdx");
TSGPT_LAUNCHER(segmentSum, launchSegmentSum, "dtype", "x", "ids", "out", "rows", "inner", "numSegments");
TSGPT_LAUNCHER(oneHot, launchOneHot, "dtype", "indices", "out", "n", "depth", "onValue", "offValue");

}  // namespace tsgpt
