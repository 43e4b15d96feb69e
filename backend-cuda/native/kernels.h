// Launchers for the backend's CUDA kernels: plain C++ entry points, one group per .cu file.
// Every launcher enqueues on `stream` and returns cudaGetLastError() (launch errors only; errors
// during execution surface at the next synchronising call). Sizes of 0 launch nothing.
// The op codes and dtype codes below are mirrored in backend-cuda/ops.ts: change both together.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

constexpr int kMaxRank = 8;

enum DType : int { kFloat32 = 0, kInt32 = 1, kBool = 2 };

// Unary elementwise ops (elementwise.cu). alpha/beta are per-op parameters (see the kernel).
enum UnaryOp : int {
  kAbs = 0, kNeg, kExp, kLog, kLog1p, kSqrt, kRsqrt, kSquare, kTanh, kSigmoid, kRelu, kStep,
  kSin, kCos, kReciprocal, kFloor, kCeil, kRound, kSign, kLogicalNot, kErf, kSoftplus, kClip,
  kLeakyRelu, kExpm1, kElu, kRelu6, kAtan, kSelu
};

// Binary elementwise ops with broadcasting (elementwise.cu). Ops from kEqual on produce bool.
enum BinaryOp : int {
  kAdd = 0, kSub, kMul, kDiv, kFloorDiv, kMaximum, kMinimum, kPow, kSquaredDifference, kMod,
  kAtan2, kEqual = 32, kNotEqual, kLess, kLessEqual, kGreater, kGreaterEqual, kLogicalAnd,
  kLogicalOr
};

enum ReduceOp : int { kSum = 0, kMean, kMax, kMin, kProd, kAll, kAny, kArgMax, kArgMin };

// A shape of up to kMaxRank dims with per-operand element strides (0 where broadcast).
struct StridedShape {
  int rank;
  int64_t dims[kMaxRank];
  int64_t strides[3][kMaxRank];  // up to three operands: [in0, in1 | out, ...] by kernel
};

cudaError_t launchUnary(cudaStream_t s, int op, int dtype, const void* x, void* y, int64_t n,
                        float alpha, float beta);
// strides[0]=a, strides[1]=b; out contiguous; a float32 operand stored in bf16 only where aBf16 / bBf16 (read as stored)
cudaError_t launchBinary(cudaStream_t s, int op, int dtype, const void* a, bool aBf16, const void* b, bool bBf16, void* out,
                         const StridedShape& shape);
cudaError_t launchSelect(cudaStream_t s, int elemBytes, const uint8_t* cond, const void* a,
                         const void* b, void* out, int64_t n);
cudaError_t launchCast(cudaStream_t s, int fromDtype, int toDtype, const void* x, void* y, int64_t n);
cudaError_t launchFill(cudaStream_t s, int dtype, void* out, int64_t n, double value);
cudaError_t launchRange(cudaStream_t s, int dtype, void* out, int64_t n, double start, double step);
cudaError_t launchF32ToBf16(cudaStream_t s, const float* x, void* y, int64_t n);
cudaError_t launchBf16ToF32(cudaStream_t s, const void* x, float* y, int64_t n);

// first = Σ_j partials[2j], second = Σ_j partials[2j + 1] over `count` pairs, by one block in a fixed order (0 for
// count = 0), plus add[0] and add[1] where add is not null (a gradient so far): the second pass of the deterministic
// two-sum reductions (reduce.cu; scaled_add.cu, attention_inputs.cu).
cudaError_t launchSumPartialPairs(cudaStream_t s, const float* partials, int count, float* first, float* second,
                                  const float* add = nullptr);

// out[dstOffset + Σ i_k·strides[1][k]] = in[srcOffset + Σ i_k·strides[0][k]] (copy.cu).
cudaError_t launchStridedCopy(cudaStream_t s, int elemBytes, const void* src, void* dst,
                              const StridedShape& shape);
// dst[0..bytes) = src[0..bytes) for bytes ≤ kSmallUploadBytes, through kernel arguments (copy.cu).
constexpr int kSmallUploadBytes = 256;
cudaError_t launchUploadSmall(cudaStream_t s, void* dst, const void* src, int64_t bytes);

// Rows of length `inner`, `outer` of them, contiguous; out has `outer` elements (reduce.cu).
cudaError_t launchReduce(cudaStream_t s, int op, int dtype, const void* x, void* out, int64_t outer,
                         int64_t inner);

// out[b, o, j, i] = params[b, o, idx[b, j], i] (gather.cu); out-of-range indices give 0.
cudaError_t launchGather(cudaStream_t s, int elemBytes, const void* params, const int32_t* idx,
                         void* out, int64_t batch, int64_t outer, int64_t axisDim, int64_t inner,
                         int64_t nIdx);
// out[ids[r], i] += x[r, i] for r < rows (out zeroed by the caller); ids out of range are skipped.
cudaError_t launchSegmentSum(cudaStream_t s, int dtype, const void* x, const int32_t* ids, void* out,
                             int64_t rows, int64_t inner, int64_t numSegments);
cudaError_t launchOneHot(cudaStream_t s, int dtype, const int32_t* idx, void* out, int64_t n,
                         int64_t depth, double onValue, double offValue);

cudaError_t launchSoftmax(cudaStream_t s, const float* x, float* y, int64_t rows, int64_t cols);

}  // namespace tsgpt
