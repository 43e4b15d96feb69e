#include "device.h"

#include <cublasLt.h>
#include <cstdio>

namespace tsgpt {

std::string cudaErrorText(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    throw CudaError(std::string(what) + " failed: " + cudaErrorText(e));
  }
}

static std::string mib(uint64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / (1 << 20));
  return buf;
}

Device::Device(int ordinal) : ordinal_(ordinal) {
  check(cudaSetDevice(ordinal), "cudaSetDevice");
  check(cudaGetDeviceProperties(&props_, ordinal), "cudaGetDeviceProperties");
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaDeviceGetDefaultMemPool(&pool_, ordinal), "cudaDeviceGetDefaultMemPool");
  // Keep freed blocks in the pool instead of returning them to the driver at each sync.
  uint64_t threshold = UINT64_MAX;
  check(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &threshold),
        "cudaMemPoolSetAttribute(ReleaseThreshold)");
  cublasLtHandle_t h;
  const cublasStatus_t st = cublasLtCreate(&h);
  if (st != CUBLAS_STATUS_SUCCESS)
    throw CudaError(std::string("cublasLtCreate failed: ") + cublasLtGetStatusName(st));
  lt_ = h;
  check(cudaMalloc(&workspace_, workspaceBytes_), "cudaMalloc(cuBLASLt workspace)");
}

Device::~Device() {
  cudaStreamSynchronize(stream_);
  releaseMatmulPlans();
  for (auto& [bucket, list] : pinned_)
    for (void* p : list) cudaFreeHost(p);
  for (auto& [p, bytes] : sizes_) cudaFreeAsync(p, stream_);
  cudaStreamSynchronize(stream_);
  cudaFree(workspace_);
  cublasLtDestroy(static_cast<cublasLtHandle_t>(lt_));
  cudaStreamDestroy(stream_);
}

void* Device::alloc(uint64_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  cudaError_t e = cudaMallocAsync(&p, bytes, stream_);
  if (e == cudaErrorMemoryAllocation) {
    // Cached blocks of other sizes may be what is missing: wait for pending frees, hand the
    // cache back to the driver and try once more.
    cudaGetLastError();
    ++allocRetries_;
    cudaStreamSynchronize(stream_);
    cudaMemPoolTrimTo(pool_, 0);
    e = cudaMallocAsync(&p, bytes, stream_);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t freeB = 0, totalB = 0;
    cudaMemGetInfo(&freeB, &totalB);
    throw CudaError("out of device memory: asked for " + mib(bytes) + " with " + mib(inUse_) +
                    " in use by tensors (" + std::to_string(sizes_.size()) + " buffers), " +
                    mib(freeB) + " free of " + mib(totalB) + " on device " +
                    std::to_string(ordinal_) + ": " + cudaErrorText(e));
  }
  sizes_[p] = bytes;
  inUse_ += bytes;
  if (inUse_ > peak_) peak_ = inUse_;
  return p;
}

void Device::free(void* p) {
  if (p == nullptr) return;
  auto it = sizes_.find(p);
  if (it == sizes_.end()) throw CudaError("free of a device pointer this backend did not allocate");
  inUse_ -= it->second;
  sizes_.erase(it);
  check(cudaFreeAsync(p, stream_), "cudaFreeAsync");
}

MemoryStats Device::memory() const {
  MemoryStats s{inUse_, peak_, 0, 0, sizes_.size(), allocRetries_};
  uint64_t v = 0;
  if (cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrReservedMemCurrent, &v) == cudaSuccess)
    s.poolReserved = v;
  if (cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrUsedMemCurrent, &v) == cudaSuccess)
    s.poolUsed = v;
  return s;
}

static uint64_t bucketOf(uint64_t bytes) {
  uint64_t b = 4096;
  while (b < bytes) b <<= 1;
  return b;
}

void* Device::acquirePinned(uint64_t bytes) {
  const uint64_t b = bucketOf(bytes);
  auto& list = pinned_[b];
  if (!list.empty()) {
    void* p = list.back();
    list.pop_back();
    return p;
  }
  void* p = nullptr;
  check(cudaMallocHost(&p, b), "cudaMallocHost(read staging)");
  return p;
}

void Device::releasePinned(void* p, uint64_t bytes) {
  const uint64_t b = bucketOf(bytes);
  auto& list = pinned_[b];
  if (b <= (64ull << 20) && list.size() < 4) list.push_back(p);
  else cudaFreeHost(p);
}

}  // namespace tsgpt
