// One CUDA device as the backend sees it: a stream that every kernel and copy is queued on, a
// stream-ordered memory pool (cudaMallocAsync; freed blocks stay cached by the pool), byte
// accounting for memory(), a cache of pinned staging buffers for async reads, and a cuBLASLt handle.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>
#include <map>

namespace tsgpt {

// Any failed CUDA/cuBLAS call; the binding layer turns it into a JS Error.
struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string cudaErrorText(cudaError_t e);
void check(cudaError_t e, const char* what);  // throws CudaError naming `what` and the error

struct MemoryStats {
  uint64_t inUse, peak, poolReserved, poolUsed, live, allocRetries;
};

class Device {
 public:
  explicit Device(int ordinal);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  int ordinal() const { return ordinal_; }
  cudaStream_t stream() const { return stream_; }
  const cudaDeviceProp& props() const { return props_; }

  // Tensor memory: stream-ordered; `bytes == 0` gives nullptr. Throws on out-of-memory with the
  // size asked for and what is in use.
  void* alloc(uint64_t bytes);
  void free(void* p);
  MemoryStats memory() const;

  // Pinned host staging for device→host reads that must not block the JS thread.
  void* acquirePinned(uint64_t bytes);
  void releasePinned(void* p, uint64_t bytes);

  void* cublasLt() const { return lt_; }
  void* workspace() const { return workspace_; }
  uint64_t workspaceBytes() const { return workspaceBytes_; }

 private:
  int ordinal_;
  cudaDeviceProp props_{};
  cudaStream_t stream_ = nullptr;
  cudaMemPool_t pool_ = nullptr;
  void* lt_ = nullptr;
  void* workspace_ = nullptr;
  uint64_t workspaceBytes_ = 32ull << 20;
  std::unordered_map<void*, uint64_t> sizes_;
  uint64_t inUse_ = 0, peak_ = 0, allocRetries_ = 0;
  std::map<uint64_t, std::vector<void*>> pinned_;  // by power-of-two bucket size
};

// Matmul through cuBLASLt (matmul.cc). Row-major: out[b] = op(A[b]) · op(B[b]), A[b] = a + b·strideA
// elements (strideA = 0 broadcasts one matrix over the batch). precision: 0 = bf16 operands (a and b
// point to bf16 values) with fp32 accumulation, 1 = tf32, 2 = fp32 (float32 operands). out is float32, or
// bf16 where outBf16 (precision 0 only: an activation the record keeps in bf16, rounded from the fp32 sum).
// With c (out's shape and type, k > 0): out = alpha·op(A)·op(B) + beta·c in the same call (cuBLASLt's epilogue).
void matmul(Device& dev, const void* a, const void* b, void* out, bool outBf16, int64_t batch, int64_t m,
            int64_t n, int64_t k, bool transA, bool transB, int64_t strideA, int64_t strideB,
            int precision, const void* c = nullptr, float alpha = 1.f, float beta = 0.f);
// FP8 GEMM (matmul.cc; Hopper): row-major out [m, n] (float32, or bf16 where outBf16) = alpha·A·Bᵀ + beta·out with
// A [m, k] and B [n, k] FP8 bytes (e4m3, or e5m2 where flagged; not both e5m2: cuBLASLt has no such kernel), each with
// k contiguous; m, n, k multiples of 16. fastAccum: CUBLASLT_MATMUL_DESC_FAST_ACCUM. beta = 1 accumulates (the chunked
// head's dW; float32 out only). The FP8 head's GEMMs (ops/fp8_matmul, ops/fp8_head_loss).
void matmulFp8(Device& dev, const void* a, bool aE5m2, const void* b, bool bE5m2, void* out, bool outBf16, int64_t m,
               int64_t n, int64_t k, float alpha, bool fastAccum, float beta);
void releaseMatmulPlans();
// Whether new matmul plans time the heuristic's first candidates and keep the fastest (on by default; matmul.cc says why
// and when not).
void setMatmulAutotune(bool on);

}  // namespace tsgpt
