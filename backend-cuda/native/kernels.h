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
cudaError_t launchBinary(cudaStream_t s, int op, int dtype, const void* a, const void* b, void* out,
                         const StridedShape& shape);  // strides[0]=a, strides[1]=b; out contiguous
cudaError_t launchSelect(cudaStream_t s, int elemBytes, const uint8_t* cond, const void* a,
                         const void* b, void* out, int64_t n);
cudaError_t launchCast(cudaStream_t s, int fromDtype, int toDtype, const void* x, void* y, int64_t n);
cudaError_t launchFill(cudaStream_t s, int dtype, void* out, int64_t n, double value);
cudaError_t launchRange(cudaStream_t s, int dtype, void* out, int64_t n, double start, double step);
cudaError_t launchF32ToBf16(cudaStream_t s, const float* x, void* y, int64_t n);
cudaError_t launchBf16ToF32(cudaStream_t s, const void* x, float* y, int64_t n);

// first = Σ_j partials[2j], second = Σ_j partials[2j + 1] over `count` pairs, by one block in a fixed order (0 for
// count = 0): the second pass of the deterministic two-sum reductions (reduce.cu; scaled_add.cu, attention_inputs.cu).
cudaError_t launchSumPartialPairs(cudaStream_t s, const float* partials, int count, float* first, float* second);

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

// RMSNorm over rows: y = x·rstd, rstd = (mean(x²) + eps)^-½ (rmsnorm.cu).
cudaError_t launchRmsNorm(cudaStream_t s, const float* x, float* y, int64_t rows, int64_t cols,
                          float eps);
cudaError_t launchRmsNormGrad(cudaStream_t s, const float* dy, const float* x, float* dx,
                              int64_t rows, int64_t cols, float eps);

// Fused causal attention (attention.cu): q [B,T,H,h], k/v [B,T,Hk,h] (H % Hk = 0), docIds int32
// [B,T] nondecreasing, o [B,T,H,h]; key j visible to query i iff j ≤ i, i − j < window and the
// same document. stats: B·T·H·3 floats per row (m, den, argmax key), written by the forward where
// not null; the backward recomputes them into it first unless statsReady. dq like q, dk/dv like k.
// tensorCores: bf16 tensor-core kernels (attention_mma.cu) where they support the head dim and the
// pointers are 16-byte aligned (the backward also needs delta, B·T·H floats of scratch), else exact fp32.
constexpr int kMaxAttentionHead = 128;
enum AttentionScore : int { kScoreSoftmax = 0, kScoreSoftpick = 1, kScoreSoftmax1 = 2 };
cudaError_t launchAttention(cudaStream_t s, const float* q, const float* k, const float* v, const int* docIds,
                            float* o, float* stats, int B, int T, int H, int Hk, int h, int window, float scale,
                            int score, bool tensorCores);
cudaError_t launchAttentionGrad(cudaStream_t s, const float* q, const float* k, const float* v, const int* docIds,
                                const float* o, const float* dO, float* stats, bool statsReady, float* delta,
                                float* dq, float* dk, float* dv, int B, int T, int H, int Hk, int h, int window,
                                float scale, int score, bool tensorCores);

// Soft-capped cross-entropy of raw logits [rows, cols] against int32 targets (cross_entropy.cu).
// rowStats: 2·rows floats written by the forward (each row's logsumexp, then each row's loss) and
// read by the backward; loss: one float, the sum (or mean) of the rows' losses; dy: one float.
enum LogitCap : int { kLogitCapNone = 0, kLogitCapSigmoid = 1, kLogitCapTanh = 2 };
cudaError_t launchSoftcapCrossEntropy(cudaStream_t s, const float* logits, const int32_t* targets, float* rowStats,
                                      float* loss, int64_t rows, int64_t cols, int cap, float scale, float temp,
                                      bool mean);
cudaError_t launchSoftcapCrossEntropyGrad(cudaStream_t s, const float* dy, const float* logits,
                                          const int32_t* targets, const float* rowStats, void* dlogits,
                                          bool dlogitsBf16, int64_t rows, int64_t cols, int cap, float scale,
                                          float temp, bool mean);

// Rotary position embedding (rotary.cu): x, y [B,T,H,2·half], cos/sin tables [T,half]; the pair
// (j, j + half) of token t turns by the tables' [t, j]; inverse turns back (the gradient).
cudaError_t launchRotary(cudaStream_t s, const float* x, const float* cosT, const float* sinT, float* y, int64_t B,
                         int64_t T, int64_t H, int64_t half, bool inverse);

// The attention's inputs from the QKV projection (attention_inputs.cu): qkv [B,T,(H+2·Hk)·h] (q, k, v
// heads per token) → q [B,T,H,h], k, v [B,T,Hk,h]: q, k = rotary(RMSNorm over h if qkNorm), tables
// [T, h/2]; v = λa·v_raw + λb·ve (ve may be null: λa·v_raw); lambdas: [λa, λb] on the device. The
// gradient writes dqkv, dve = λb·dv (where ve), dlambdas [2] = [Σ dv·v_raw, Σ dv·ve], deterministically.
cudaError_t launchAttentionInputs(cudaStream_t s, const float* qkv, const float* cosT, const float* sinT,
                                  const float* lambdas, const float* ve, float* q, float* k, float* v, int64_t B,
                                  int64_t T, int64_t H, int64_t Hk, int64_t h, bool qkNorm, float eps);
cudaError_t launchAttentionInputsGrad(cudaStream_t s, const float* dq, const float* dk, const float* dv, const float* qkv,
                                      const float* cosT, const float* sinT, const float* lambdas, const float* ve,
                                      void* dqkv, bool dqkvBf16, float* dlambdas, float* dve, int64_t B, int64_t T,
                                      int64_t H, int64_t Hk, int64_t h, bool qkNorm, float eps);

// y = relu(x)² and dx = dy·2·relu(x) over n floats (relu_squared.cu).
// Attention output gate (head_gate.cu): y = o·σ(g) over rows of h (g one logit per row; y bf16 where yBf16);
// its gradient do = dy·σ(g), dg = σ(g)(1 − σ(g))·Σ_h dy·o.
cudaError_t launchHeadGate(cudaStream_t s, const float* o, const float* g, void* y, bool yBf16, int64_t rows, int64_t h);
cudaError_t launchHeadGateGrad(cudaStream_t s, const float* dy, const float* o, const float* g, float* dO, float* dg,
                               int64_t rows, int64_t h);

cudaError_t launchReluSquared(cudaStream_t s, const float* x, void* y, bool yBf16, int64_t n);
cudaError_t launchReluSquaredGrad(cudaStream_t s, const float* dy, const float* x, void* dx, bool dxBf16, int64_t n);

// y = a·x + b·z over n floats, a and b one float each on the device (scaled_add.cu); its gradient
// dx = a·dy, dz = b·dy, da = Σ dy·x, db = Σ dy·z (deterministic sums; 0 for n = 0).
cudaError_t launchScaledAdd(cudaStream_t s, const float* x, const float* z, const float* a, const float* b, float* y,
                            int64_t n);
cudaError_t launchScaledAddGrad(cudaStream_t s, const float* dy, const float* x, const float* z, const float* a,
                                const float* b, float* dx, float* dz, float* da, float* db, int64_t n);

// Fused optimiser updates over n floats (optimizer.cu), outputs distinct from inputs:
// Adam  m' = β1·m + (1−β1)·g, v' = β2·v + (1−β2)·g², p' = p − lr·(m'/bc1)/(sqrt(v'/bc2) + eps);
// Muon  buf' = μ·buf + (1−μ)·g, nesterov = (1−μ)·g + μ·buf'. The 1 − β and 1 − μ come rounded from
// the host's double, as tfjs rounds the composite's scalars.
struct AdamHyper {
  float beta1, oneMinusBeta1, beta2, oneMinusBeta2, bc1, bc2, eps, lr;
};
cudaError_t launchAdamUpdate(cudaStream_t s, const float* p, const float* m, const float* v, const float* g, float* pOut,
                             float* mOut, float* vOut, int64_t n, const AdamHyper& h);
cudaError_t launchMuonMomentum(cudaStream_t s, const float* buf, const float* g, float* bufOut, float* nesterov, int64_t n,
                               float momentum, float oneMinusMomentum);

}  // namespace tsgpt
