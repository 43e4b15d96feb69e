// Row-major batched matmul on cuBLASLt (column-major): C = op(A)·op(B) is computed as
// Cᵀ = op(B)ᵀ·op(A)ᵀ, i.e. cuBLAS's "A" is our B and its "B" is our A, each described by the
// layout it is stored in. Plans (descriptors + an algorithm) are cached per shape; the algorithm is the fastest of the
// heuristic's first candidates, timed once on the plan's first call (below, "autotuning").
// bf16: the operands are bf16 copies the caller made (the backend keeps one per float32 tensor:
// backend.ts's matmulOperand), multiplied with fp32 accumulation into a float32 output (as PyTorch
// autocast does), or a bf16 one for an activation that the record keeps in bf16 (ops/linear); tf32 and fp32
// take the float32 operands with the matching compute type.
#include <cublasLt.h>

#include <cmath>
#include <map>
#include <string>
#include <tuple>

#include "device.h"

namespace tsgpt {
namespace {

void checkLt(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw CudaError(std::string(what) + " failed: " + cublasLtGetStatusName(st) + " (" +
                    cublasLtGetStatusString(st) + ")");
}

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

using PlanKey = std::tuple<int64_t, int64_t, int64_t, int64_t, bool, bool, int64_t, int64_t, int, bool>;
std::map<PlanKey, Plan> plans;

cublasLtMatrixLayout_t layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld,
                              int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t l;
  checkLt(cublasLtMatrixLayoutCreate(&l, type, rows, cols, ld), "cublasLtMatrixLayoutCreate");
  if (batch > 1) {
    const int32_t b32 = static_cast<int32_t>(batch);
    checkLt(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b32, sizeof b32),
            "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)");
    checkLt(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                             sizeof stride),
            "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)");
  }
  return l;
}

// Autotuning. cuBLASLt's heuristic ranks its algorithms by a model of the GPU, not by measurement: on one H200 its first
// choice ran the QKV projection at 693 TFLOP/s and the FP8 head's forward at 911 where the fastest of its first 8 ran
// 785 and 1067 (bench/matmul_native.cu: a micro-step's GEMMs 27.6 → 26.0 ms). A new plan times the heuristic's first
// kCandidates algorithms on its first call's own operands (beta = 0, one warm-up and kTimedRuns timed by events) and
// keeps the fastest. The trials write the
// call's own output, which the call then overwrites, unless the call accumulates into it (C = D, beta ≠ 0): only then a
// scratch output (a first version always took one, and the validation's [262144, 3072] outputs raised the peak by
// 2.4 GB). The cost is paid once per shape: one wait for the GPU and a few runs of the GEMM. The choice depends on
// timings, so two processes may choose differently: rounding differs between runs of a seed, as with PyTorch's
// cudnn.benchmark, and ranks with an unsharded optimiser could drift apart; setMatmulAutotune(false) (train_gpt.ts does
// it there) keeps the heuristic's first choice, the same everywhere.
constexpr int kCandidates = 8, kTimedRuns = 3;
bool autotune = true;

// The algorithm for a plan's descriptors (C and D share lc) within the device's workspace: the heuristic's first, or with
// autotuning the fastest of its first kCandidates on the operands a and b (row-major, as matmul's), timed into `out`
// (nullptr: a scratch output of outBytes).
cublasLtMatmulAlgo_t chooseAlgo(Device& dev, const Plan& p, const char* what, const void* a, const void* b, void* out,
                               uint64_t outBytes) {
  cublasLtMatmulPreference_t pref;
  checkLt(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const uint64_t ws = dev.workspaceBytes();
  checkLt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                               sizeof ws),
          "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
  cublasLtMatmulHeuristicResult_t results[kCandidates]{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      static_cast<cublasLtHandle_t>(dev.cublasLt()), p.op, p.la, p.lb, p.lc, p.lc, pref, autotune ? kCandidates : 1,
      results, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  checkLt(st, "cublasLtMatmulAlgoGetHeuristic");
  if (found == 0) throw CudaError(std::string("cuBLASLt found no algorithm for ") + what);
  if (found == 1) return results[0].algo;

  void* scratch = out ? nullptr : dev.alloc(outBytes);
  void* const target = out ? out : scratch;
  const float one = 1.f, zero = 0.f;
  const auto trial = [&](const cublasLtMatmulAlgo_t& algo) {  // cuBLAS's A is our B (the top of this file)
    return cublasLtMatmul(static_cast<cublasLtHandle_t>(dev.cublasLt()), p.op, &one, b, p.la, a, p.lb, &zero, target, p.lc,
                          target, p.lc, &algo, dev.workspace(), dev.workspaceBytes(), dev.stream());
  };
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  int best = 0;
  float bestMs = INFINITY;
  for (int i = 0; i < found; i++) {
    if (trial(results[i].algo) != CUBLAS_STATUS_SUCCESS) continue;  // the warm-up; an algorithm may refuse
    check(cudaEventRecord(start, dev.stream()), "cudaEventRecord");
    for (int r = 0; r < kTimedRuns; r++) checkLt(trial(results[i].algo), "cublasLtMatmul (autotuning)");
    check(cudaEventRecord(stop, dev.stream()), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize (autotuning)");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    if (ms < bestMs) bestMs = ms, best = i;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (scratch) dev.free(scratch);
  return results[best].algo;
}

Plan& planFor(Device& dev, int64_t batch, int64_t m, int64_t n, int64_t k, bool transA,
              bool transB, int64_t strideA, int64_t strideB, int precision, bool outBf16, const void* a, const void* b,
              void* trialOut) {
  const PlanKey key{batch, m, n, k, transA, transB, strideA, strideB, precision, outBf16};
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;

  const cublasComputeType_t compute =
      precision == 1 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const cudaDataType_t inType = precision == 0 ? CUDA_R_16BF : CUDA_R_32F;
  Plan p;
  checkLt(cublasLtMatmulDescCreate(&p.op, compute, CUDA_R_32F), "cublasLtMatmulDescCreate");
  // cuBLAS's A is our B: stored [k,n] (no transpose) = column-major n×k, or [n,k] = k×n transposed.
  const cublasOperation_t opA = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opB = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
  checkLt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA),
          "cublasLtMatmulDescSetAttribute(TRANSA)");
  checkLt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB),
          "cublasLtMatmulDescSetAttribute(TRANSB)");
  p.la = transB ? layout(inType, k, n, k, batch, strideB) : layout(inType, n, k, n, batch, strideB);
  p.lb = transA ? layout(inType, m, k, m, batch, strideA) : layout(inType, k, m, k, batch, strideA);
  p.lc = layout(outBf16 ? CUDA_R_16BF : CUDA_R_32F, n, m, n, batch, m * n);
  p.algo = chooseAlgo(dev, p, "this matmul", a, b, trialOut, uint64_t(batch * m * n) * (outBf16 ? 2 : 4));
  return plans.emplace(key, p).first->second;
}

// ---- FP8 (the FP8 head's GEMMs, ops/fp8_matmul) ----
// Row-major out [m, n] = alpha·A·Bᵀ + beta·out with A [m, k] and B [n, k]: both with k contiguous, the only layout
// cuBLASLt's FP8 kernels take ("TN": cuBLAS's A = our B transposed, its B = our A not). fp32 accumulation, C = D in
// float32 or bf16.
using Fp8PlanKey = std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, bool>;
std::map<Fp8PlanKey, Plan> fp8Plans;

Plan& fp8PlanFor(Device& dev, int64_t m, int64_t n, int64_t k, bool aE5m2, bool bE5m2, bool fastAccum, bool outBf16,
                 const void* a, const void* b, void* trialOut) {
  const Fp8PlanKey key{m, n, k, aE5m2, bE5m2, fastAccum, outBf16};
  auto it = fp8Plans.find(key);
  if (it != fp8Plans.end()) return it->second;
  Plan p;
  checkLt(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  const cublasOperation_t opA = CUBLAS_OP_T, opB = CUBLAS_OP_N;
  checkLt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA),
          "cublasLtMatmulDescSetAttribute(TRANSA)");
  checkLt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB),
          "cublasLtMatmulDescSetAttribute(TRANSB)");
  // Fast accumulation: no periodic promotion of the tensor cores' partial sums to fp32 (the record's forward).
  const int8_t fast = fastAccum ? 1 : 0;
  checkLt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof fast),
          "cublasLtMatmulDescSetAttribute(FAST_ACCUM)");
  const auto fp8 = [](bool e5m2) { return e5m2 ? CUDA_R_8F_E5M2 : CUDA_R_8F_E4M3; };
  p.la = layout(fp8(bE5m2), k, n, k, 1, 0);  // our B [n, k] row-major: column-major k×n, transposed by opA
  p.lb = layout(fp8(aE5m2), k, m, k, 1, 0);  // our A [m, k] row-major: column-major k×m
  p.lc = layout(outBf16 ? CUDA_R_16BF : CUDA_R_32F, n, m, n, 1, 0);
  p.algo = chooseAlgo(dev, p, "this FP8 matmul", a, b, trialOut, uint64_t(m * n) * (outBf16 ? 2 : 4));
  return fp8Plans.emplace(key, p).first->second;
}

}  // namespace

void setMatmulAutotune(bool on) { autotune = on; }

void releaseMatmulPlans() {
  const auto destroy = [](auto& ps) {
    for (auto& [key, p] : ps) {
      cublasLtMatrixLayoutDestroy(p.la);
      cublasLtMatrixLayoutDestroy(p.lb);
      cublasLtMatrixLayoutDestroy(p.lc);
      cublasLtMatmulDescDestroy(p.op);
    }
    ps.clear();
  };
  destroy(plans);
  destroy(fp8Plans);
}

void matmulFp8(Device& dev, const void* a, bool aE5m2, const void* b, bool bE5m2, void* out, bool outBf16, int64_t m,
               int64_t n, int64_t k, float alpha, bool fastAccum, float beta) {
  if (aE5m2 && bE5m2) throw CudaError("matmulFp8: cuBLASLt has no e5m2 × e5m2 kernel");
  if (m % 16 || n % 16 || k % 16 || m <= 0 || n <= 0 || k <= 0)
    throw CudaError("matmulFp8: m, n and k must be positive multiples of 16");
  if (outBf16 && beta != 0.f) throw CudaError("matmulFp8: beta must be 0 with a bf16 out (accumulate in float32)");
  // the trials may write out unless this call accumulates into it
  Plan& p = fp8PlanFor(dev, m, n, k, aE5m2, bE5m2, fastAccum, outBf16, a, b, beta != 0.f ? nullptr : out);
  checkLt(cublasLtMatmul(static_cast<cublasLtHandle_t>(dev.cublasLt()), p.op, &alpha, b, p.la, a, p.lb, &beta, out, p.lc,
                         out, p.lc, &p.algo, dev.workspace(), dev.workspaceBytes(), dev.stream()),
          "cublasLtMatmul (FP8)");
}

void matmul(Device& dev, const void* a, const void* b, void* out, bool outBf16, int64_t batch, int64_t m,
            int64_t n, int64_t k, bool transA, bool transB, int64_t strideA, int64_t strideB,
            int precision, const void* c, float alpha, float beta) {
  if (batch == 0 || m == 0 || n == 0) return;
  if (c != nullptr && k == 0) throw CudaError("matmul with a C operand needs k > 0 (the caller scales C)");
  if (outBf16 && precision != 0) throw CudaError("matmul: a bf16 out needs bf16 operands");
  if (k == 0) {  // empty contraction: the product is all zeros (zero bytes, in float32 and bf16 alike)
    check(cudaMemsetAsync(out, 0, batch * m * n * (outBf16 ? 2 : 4), dev.stream()), "matmul zero fill");
    return;
  }
  // the trials may write out unless this call accumulates into it (C = D)
  Plan& p = planFor(dev, batch, m, n, k, transA, transB, strideA, strideB, precision, outBf16, a, b,
                    c == out && beta != 0.f ? nullptr : out);
  // cuBLAS's A is our B (see the top of this file).
  // C (read only where beta ≠ 0) has D's layout and type (bf16 with a bf16 out: the residual stream, §5); out-of-place
  // C → D is cuBLASLt's general case.
  const cublasStatus_t st = cublasLtMatmul(
      static_cast<cublasLtHandle_t>(dev.cublasLt()), p.op, &alpha, b, p.la, a, p.lb, &beta,
      c != nullptr ? c : out, p.lc, out, p.lc, &p.algo, dev.workspace(), dev.workspaceBytes(), dev.stream());
  checkLt(st, "cublasLtMatmul");
}

}  // namespace tsgpt
