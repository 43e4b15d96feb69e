// Fused optimiser updates (train_gpt.ts's adamUpdate() and muonMomentum()), one pass each:
//   Adam: m' = β1·m + (1−β1)·g;  v' = β2·v + (1−β2)·g²;  p' = p − lr·(m'/bc1)/(sqrt(v'/bc2) + eps), g this step's
//         gradient plus the earlier steps' sum where one is given (rounded to bf16 where roundGrad)
//   Muon momentum: buf' = μ·buf + (1−μ)·g;  nesterov = (1−μ)·g + μ·buf'
// The composites run ~14 (Adam) and 6 (Muon) elementwise kernels, each reading and writing a whole
// parameter-sized tensor; here Adam reads 4 (5 with a sum) and writes 3 floats per element, Muon reads 2 and writes 2.
// With --bf16-state the outputs are rounded to bf16 (roundParam, roundMoments, roundBuf), as the composite's
// roundToBf16 after the update; the update itself is computed from the unrounded values, as there. Adam stores what it
// rounds in bf16 (§5: the bf16 parameters and every Adam moment, at half the bytes) and reads p, m and v as stored.
// The operations, their order and their rounding are the composite's: each one correctly rounded
// (__fmul_rn & co. keep nvcc from contracting a·b + c into one FMA), the 1 − β constants rounded once
// on the host as tfjs rounds its scalars; so the fused kernels give the composite's values exactly.
// Memory-bound: 4 elements per thread with float4 loads where n % 4 = 0 and pointers are aligned.
//
// NorMuon's update (train_gpt.ts's normuonUpdate(), record-2025-11.md §6.2 steps 4–6) over a batch of n orthogonalised
// updates O [n, r, c] (turned wide, r ≤ c) in four small kernels instead of ~16 tfjs kernels:
//   1. v' = β2·v + (1−β2)·mean of O² per neuron (a row of a square matrix, else a column);
//   2. per chunk of a matrix, the partial sums of O² and of (O/√max(v', 1e-10))²;
//   3. per matrix, in a fixed order: f = ‖O‖ / max(‖O/√v'‖, 1e-10);
//   4. U = (O/√max(v', 1e-10))·f, plus decay·W where U·W ≥ 0 (cautious weight decay), times the matrix's scale.
// Deterministic (fixed-order sums, no atomics); the sums differ in order from the composite's, so the results agree
// within float32 rounding, not bit for bit.
#include "optimizer.h"

#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/rows.cuh"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

struct AdamHyper {
  float beta1, oneMinusBeta1, beta2, oneMinusBeta2, bc1, bc2, eps, lr;
  bool roundGrad;  // the gradient (and the sum so far) rounded to bf16 before use: a bf16 parameter's
};

// p of type P and m, v of type M as stored (float, or bf16 for a bf16-only tensor); p' stored as POut and m', v' as MOut:
// a bf16 store rounds to nearest even, the composite's roundToBf16 (roundParam, roundMoments).
// g: this step's gradient; gSum (may be null): the sum of the earlier steps' since the last Adam step, added first
// (§6.4: Adam every other step on the sum of the two steps' gradients), as the composite's r(r(gSum) + r(g)).
template <int V, typename P, typename M, typename POut, typename MOut>
__global__ void adamUpdateKernel(const P* __restrict__ p, const M* __restrict__ m, const M* __restrict__ v,
                                 const float* __restrict__ g, const float* __restrict__ gSum, POut* __restrict__ pOut,
                                 MOut* __restrict__ mOut, MOut* __restrict__ vOut, int64_t groups, AdamHyper h) {
  TSGPT_GRID_STRIDE(i, groups) {
    float pv[V], mv[V], vv[V], gv[V], sv[V];
    loadVec<V>(p + i * V, pv);
    loadVec<V>(m + i * V, mv);
    loadVec<V>(v + i * V, vv);
    loadVec<V>(g + i * V, gv);
    if (gSum) loadVec<V>(gSum + i * V, sv);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      if (h.roundGrad) gv[k] = roundedToBf16(gv[k]);
      if (gSum) gv[k] = __fadd_rn(h.roundGrad ? roundedToBf16(sv[k]) : sv[k], gv[k]);
      if (gSum && h.roundGrad) gv[k] = roundedToBf16(gv[k]);
      mv[k] = __fadd_rn(__fmul_rn(mv[k], h.beta1), __fmul_rn(gv[k], h.oneMinusBeta1));
      vv[k] = __fadd_rn(__fmul_rn(vv[k], h.beta2), __fmul_rn(__fmul_rn(gv[k], gv[k]), h.oneMinusBeta2));
      const float update = __fdiv_rn(__fdiv_rn(mv[k], h.bc1), __fadd_rn(__fsqrt_rn(__fdiv_rn(vv[k], h.bc2)), h.eps));
      pv[k] = __fsub_rn(pv[k], __fmul_rn(update, h.lr));
    }
    storeVec<V>(pOut + i * V, pv);
    storeVec<V>(mOut + i * V, mv);
    storeVec<V>(vOut + i * V, vv);
  }
}

template <int V>
__global__ void muonMomentumKernel(const float* __restrict__ buf, const float* __restrict__ g, float* __restrict__ bufOut,
                                   float* __restrict__ nesterov, int64_t groups, float mu, float oneMinusMu, bool roundBuf) {
  TSGPT_GRID_STRIDE(i, groups) {
    float b[V], gv[V], nv[V];
    loadVec<V>(buf + i * V, b);
    loadVec<V>(g + i * V, gv);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float scaledG = __fmul_rn(gv[k], oneMinusMu);
      b[k] = __fadd_rn(__fmul_rn(b[k], mu), scaledG);
      nv[k] = __fadd_rn(scaledG, __fmul_rn(b[k], mu));  // from the unrounded buf'
      if (roundBuf) b[k] = roundedToBf16(b[k]);
    }
    storeVec<V>(bufOut + i * V, b);
    storeVec<V>(nesterov + i * V, nv);
  }
}

// 1 (wide matrices): one thread per (matrix, column), walking the rows: coalesced over columns.
__global__ void norMuonColumnMeanSquareKernel(const float* __restrict__ o, const float* __restrict__ v, float* __restrict__ vOut,
                                              int64_t n, int64_t r, int64_t c, float beta2, float oneMinusBeta2) {
  TSGPT_GRID_STRIDE(idx, n * c) {
    const int64_t i = idx / c, j = idx % c;
    const float* col = o + i * r * c + j;
    float sum = 0.f;
    for (int64_t row = 0; row < r; ++row) sum = fmaf(col[row * c], col[row * c], sum);
    vOut[idx] = fmaf(v[idx], beta2, (sum / float(r)) * oneMinusBeta2);
  }
}

// 1 (square matrices): one warp per (matrix, row).
__global__ void norMuonRowMeanSquareKernel(const float* __restrict__ o, const float* __restrict__ v, float* __restrict__ vOut,
                                           int64_t rows, int64_t c, float beta2, float oneMinusBeta2) {
  const int lane = threadIdx.x & 31;
  for (int64_t row = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32; row < rows; row += (int64_t)gridDim.x * blockDim.x / 32) {
    const float* x = o + row * c;
    float sum = 0.f;
    for (int64_t j = lane; j < c; j += 32) sum = fmaf(x[j], x[j], sum);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) vOut[row] = fmaf(v[row], beta2, (sum / float(c)) * oneMinusBeta2);
  }
}

// The neuron of element (row, col) of matrix i: its row for a square matrix, else its column.
__device__ __forceinline__ int64_t norMuonNeuron(int64_t i, int64_t row, int64_t col, int64_t r, int64_t c) {
  return r == c ? i * r + row : i * c + col;
}

// 2: block (chunk, matrix) writes partials[(i·chunks + chunk)·2 + {0, 1}] = Σ O², Σ (O/√max(v', 1e-10))².
__global__ void norMuonPartialNormsKernel(const float* __restrict__ o, const float* __restrict__ vNew, float* __restrict__ partials,
                                          int64_t r, int64_t c, int64_t chunks) {
  __shared__ float scratch[32];
  const int64_t i = blockIdx.y, size = r * c, per = (size + chunks - 1) / chunks;
  const int64_t begin = blockIdx.x * per, end = min(size, begin + per);
  float sumO = 0.f, sumScaled = 0.f;
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const float x = o[i * size + e], scaled = x / sqrtf(fmaxf(vNew[norMuonNeuron(i, e / c, e % c, r, c)], 1e-10f));
    sumO = fmaf(x, x, sumO);
    sumScaled = fmaf(scaled, scaled, sumScaled);
  }
  sumO = blockReduce<false>(sumO, scratch);
  sumScaled = blockReduce<false>(sumScaled, scratch);
  if (threadIdx.x == 0) {
    partials[(i * chunks + blockIdx.x) * 2] = sumO;
    partials[(i * chunks + blockIdx.x) * 2 + 1] = sumScaled;
  }
}

// 3: one block per matrix: factor[i] = ‖O‖ / max(‖O/√v'‖, 1e-10), the chunks summed in a fixed order.
__global__ void norMuonFactorKernel(const float* __restrict__ partials, float* __restrict__ factor, int64_t chunks) {
  __shared__ float scratch[32];
  const int64_t i = blockIdx.x;
  float sumO = 0.f, sumScaled = 0.f;
  for (int64_t k = threadIdx.x; k < chunks; k += blockDim.x) {
    sumO += partials[(i * chunks + k) * 2];
    sumScaled += partials[(i * chunks + k) * 2 + 1];
  }
  sumO = blockReduce<false>(sumO, scratch);
  sumScaled = blockReduce<false>(sumScaled, scratch);
  if (threadIdx.x == 0) factor[i] = sqrtf(sumO) / fmaxf(sqrtf(sumScaled), 1e-10f);
}

// 4: the update, elementwise.
__global__ void norMuonApplyKernel(const float* __restrict__ o, const float* __restrict__ vNew, const float* __restrict__ w,
                                   const float* __restrict__ scale, const float* __restrict__ factor, float* __restrict__ u,
                                   int64_t n, int64_t r, int64_t c, float decay) {
  const int64_t size = r * c;
  TSGPT_GRID_STRIDE(idx, n * size) {
    const int64_t i = idx / size, e = idx % size;
    float x = o[idx] / sqrtf(fmaxf(vNew[norMuonNeuron(i, e / c, e % c, r, c)], 1e-10f)) * factor[i];
    if (decay > 0.f && x * w[idx] >= 0.f) x += w[idx] * decay;
    u[idx] = x * scale[i];
  }
}

}  // namespace

cudaError_t launchNorMuonUpdate(cudaStream_t s, const float* o, const float* v, const float* w, const float* scale, float* u,
                                float* vOut, float* scratch, int64_t n, int64_t r, int64_t c, double beta2, double decay) {
  if (n == 0 || r == 0 || c == 0) return cudaSuccess;
  const float b2 = float(beta2), oneMinusB2 = float(1 - beta2);
  if (r == c)
    norMuonRowMeanSquareKernel<<<gridFor(n * r * 32), kThreads, 0, s>>>(o, v, vOut, n * r, c, b2, oneMinusB2);
  else
    norMuonColumnMeanSquareKernel<<<gridFor(n * c), kThreads, 0, s>>>(o, v, vOut, n, r, c, b2, oneMinusB2);
  const int64_t chunks = norMuonChunks(r * c);
  float* partials = scratch;
  float* factor = scratch + n * chunks * 2;
  norMuonPartialNormsKernel<<<dim3(unsigned(chunks), unsigned(n)), kThreads, 0, s>>>(o, vOut, partials, r, c, chunks);
  norMuonFactorKernel<<<unsigned(n), kThreads, 0, s>>>(partials, factor, chunks);
  norMuonApplyKernel<<<gridFor(n * r * c), kThreads, 0, s>>>(o, vOut, w, scale, factor, u, n, r, c, float(decay));
  return cudaGetLastError();
}

cudaError_t launchAdamUpdate(cudaStream_t s, const void* p, bool pBf16, const void* m, const void* v, bool momentsBf16,
                             const float* g, const float* gSum, void* pOut, void* mOut, void* vOut, int64_t n, double beta1,
                             double beta2, double bc1, double bc2, double eps, double lr, bool roundParam, bool roundMoments,
                             bool roundGrad) {
  if (n == 0) return cudaSuccess;
  const AdamHyper h{float(beta1), float(1 - beta1), float(beta2), float(1 - beta2), float(bc1), float(bc2), float(eps), float(lr),
                    roundGrad};
  const bool vec4 = n % 4 == 0 && aligned16({p, m, v, g, gSum, pOut, mOut, vOut});
  byStorage(pBf16, [&](auto* pType) {
    byStorage(momentsBf16, [&](auto* mType) {
      byStorage(roundParam, [&](auto* pOutType) {
        byStorage(roundMoments, [&](auto* mOutType) {
          using P = std::remove_pointer_t<decltype(pType)>;
          using M = std::remove_pointer_t<decltype(mType)>;
          using POut = std::remove_pointer_t<decltype(pOutType)>;
          using MOut = std::remove_pointer_t<decltype(mOutType)>;
          auto launch = [&](auto width) {
            constexpr int W = decltype(width)::value;
            adamUpdateKernel<W, P, M, POut, MOut><<<gridFor(n / W), kThreads, 0, s>>>(static_cast<const P*>(p),
                static_cast<const M*>(m), static_cast<const M*>(v), g, gSum, static_cast<POut*>(pOut), static_cast<MOut*>(mOut),
                static_cast<MOut*>(vOut), n / W, h);
          };
          if (vec4) launch(std::integral_constant<int, 4>{});
          else launch(std::integral_constant<int, 1>{});
        });
      });
    });
  });
  return cudaGetLastError();
}

cudaError_t launchMuonMomentum(cudaStream_t s, const float* buf, const float* g, float* bufOut, float* nesterov, int64_t n,
                               double mu, bool roundBuf) {
  if (n == 0) return cudaSuccess;
  const float momentum = float(mu), oneMinusMomentum = float(1 - mu);
  if (n % 4 == 0 && aligned16({buf, g, bufOut, nesterov}))
    muonMomentumKernel<4><<<gridFor(n / 4), kThreads, 0, s>>>(buf, g, bufOut, nesterov, n / 4, momentum, oneMinusMomentum, roundBuf);
  else
    muonMomentumKernel<1><<<gridFor(n), kThreads, 0, s>>>(buf, g, bufOut, nesterov, n, momentum, oneMinusMomentum, roundBuf);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(adamUpdate, launchAdamUpdate, "p", "pBf16", "m", "v", "momentsBf16", "g", "gSum", "pOut", "mOut", "vOut", "n",
               "beta1", "beta2", "bc1", "bc2", "eps", "lr", "roundParam", "roundMoments", "roundGrad");
TSGPT_LAUNCHER(muonMomentum, launchMuonMomentum, "buf", "g", "bufOut", "nesterov", "n", "momentum", "roundBuf");
TSGPT_LAUNCHER(norMuonUpdate, launchNorMuonUpdate, "o", "v", "w", "scale", "u", "vOut", "scratch", "n", "r", "c", "beta2", "decay");

}  // namespace tsgpt
