// Row-major batched matmul on cuBLASLt (column-major): C = op(A)·op(B) is computed as
// Cᵀ = op(B)ᵀ·op(A)ᵀ, i.e. cuBLAS's "A" is our B and its "B" is our A, each described by the
// layout it is stored in. Plans (descriptors + the heuristic's algorithm) are cached per shape.
// bf16: the operands are bf16 copies the caller made (the backend keeps one per float32 tensor:
// backend.ts's matmulOperand), multiplied with fp32 accumulation into a float32 output (as PyTorch
// autocast does); tf32 and fp32 take the float32 operands with the matching compute type.
#include <cublasLt.h>

#include <map>
#include <string>
#include <tuple>

#include "device.h"
#include "kernels.h"

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

using PlanKey = std::tuple<int64_t, int64_t, int64_t, int64_t, bool, bool, int64_t, int64_t, int>;
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

Plan& planFor(Device& dev, int64_t batch, int64_t m, int64_t n, int64_t k, bool transA,
              bool transB, int64_t strideA, int64_t strideB, int precision) {
  const PlanKey key{batch, m, n, k, transA, transB, strideA, strideB, precision};
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
  p.lc = layout(CUDA_R_32F, n, m, n, batch, m * n);

  cublasLtMatmulPreference_t pref;
  checkLt(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const uint64_t ws = dev.workspaceBytes();
  checkLt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                               sizeof ws),
          "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      static_cast<cublasLtHandle_t>(dev.cublasLt()), p.op, p.la, p.lb, p.lc, p.lc, pref, 1, &result,
      &found);
  cublasLtMatmulPreferenceDestroy(pref);
  checkLt(st, "cublasLtMatmulAlgoGetHeuristic");
  if (found == 0) throw CudaError("cuBLASLt found no algorithm for this matmul");
  p.algo = result.algo;
  return plans.emplace(key, p).first->second;
}

}  // namespace

void releaseMatmulPlans() {
  for (auto& [key, p] : plans) {
    cublasLtMatrixLayoutDestroy(p.la);
    cublasLtMatrixLayoutDestroy(p.lb);
    cublasLtMatrixLayoutDestroy(p.lc);
    cublasLtMatmulDescDestroy(p.op);
  }
  plans.clear();
}

void matmul(Device& dev, const void* a, const void* b, float* out, int64_t batch, int64_t m,
            int64_t n, int64_t k, bool transA, bool transB, int64_t strideA, int64_t strideB,
            int precision, const float* c, float alpha, float beta) {
  if (batch == 0 || m == 0 || n == 0) return;
  if (c != nullptr && k == 0) throw CudaError("matmul with a C operand needs k > 0 (the caller scales C)");
  if (k == 0) {  // empty contraction: the product is all zeros
    check(launchFill(dev.stream(), kFloat32, out, batch * m * n, 0.0), "matmul zero fill");
    return;
  }
  Plan& p = planFor(dev, batch, m, n, k, transA, transB, strideA, strideB, precision);
  // cuBLAS's A is our B (see the top of this file).
  // C (read only where beta ≠ 0) has D's layout; out-of-place C → D is cuBLASLt's general case.
  const cublasStatus_t st = cublasLtMatmul(
      static_cast<cublasLtHandle_t>(dev.cublasLt()), p.op, &alpha, b, p.la, a, p.lb, &beta,
      c != nullptr ? c : out, p.lc, out, p.lc, &p.algo, dev.workspace(), dev.workspaceBytes(), dev.stream());
  checkLt(st, "cublasLtMatmul");
}

}  // namespace tsgpt
