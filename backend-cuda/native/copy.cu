// The strided copy behind Transpose, Slice, StridedSlice, Concat, SplitV, Tile, PadV2, Reverse and
// broadcasting (plus the small uploads): every layout change is a walk over an index space with one stride vector for the
// source and one for the destination (negative strides reverse, 0 strides broadcast).
#include <cstring>

#include "kernels.h"
#include "launch.h"
#include "strided.cuh"

namespace tsgpt {
namespace {

template <typename T>
__global__ void stridedCopyKernel(const T* __restrict__ src, T* __restrict__ dst, StridedShape sh,
                                  int64_t n) {
  TSGPT_GRID_STRIDE(i, n) {
    int64_t offS, offD;
    stridedOffsets(i, sh, offS, offD);
    dst[offD] = src[offS];
  }
}

// A host→device copy of at most kSmallUploadBytes carried in the launch's own parameters: the driver
// copies kernel arguments at launch, so the host never waits (a cudaMemcpyAsync from pageable memory
// may wait for the stream), and scalar constants stay asynchronous.
struct SmallPayload {
  uint8_t bytes[kSmallUploadBytes];
};

__global__ void uploadSmallKernel(uint8_t* __restrict__ dst, SmallPayload p, int n) {
  const int i = threadIdx.x;
  if (i < n) dst[i] = p.bytes[i];
}

}  // namespace

cudaError_t launchUploadSmall(cudaStream_t s, void* dst, const void* src, int64_t bytes) {
  if (bytes <= 0) return cudaSuccess;
  if (bytes > kSmallUploadBytes) return cudaErrorInvalidValue;
  SmallPayload p;
  std::memcpy(p.bytes, src, size_t(bytes));
  uploadSmallKernel<<<1, kSmallUploadBytes, 0, s>>>(static_cast<uint8_t*>(dst), p, int(bytes));
  return cudaGetLastError();
}

cudaError_t launchStridedCopy(cudaStream_t s, int elemBytes, const void* src, void* dst,
                              const StridedShape& shape) {
  int64_t n = 1;
  for (int k = 0; k < shape.rank; ++k) n *= shape.dims[k];
  if (n == 0) return cudaSuccess;
  const unsigned g = gridFor(n);
  switch (elemBytes) {
    case 4: stridedCopyKernel<uint32_t><<<g, kThreads, 0, s>>>((const uint32_t*)src, (uint32_t*)dst, shape, n); break;
    case 2: stridedCopyKernel<uint16_t><<<g, kThreads, 0, s>>>((const uint16_t*)src, (uint16_t*)dst, shape, n); break;
    case 1: stridedCopyKernel<uint8_t><<<g, kThreads, 0, s>>>((const uint8_t*)src, (uint8_t*)dst, shape, n); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace tsgpt
