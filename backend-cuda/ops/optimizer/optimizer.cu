// Fused optimiser updates (train_gpt.ts's adamUpdate() and muonMomentum()), one pass each:
//   Adam: m' = β1·m + (1−β1)·g;  v' = β2·v + (1−β2)·g²;  p' = p − lr·(m'/bc1)/(sqrt(v'/bc2) + eps)
//   Muon momentum: buf' = μ·buf + (1−μ)·g;  nesterov = (1−μ)·g + μ·buf'
// The composites run ~14 (Adam) and 6 (Muon) elementwise kernels, each reading and writing a whole
// parameter-sized tensor; here Adam reads 4 and writes 3 floats per element, Muon reads 2 and writes 2.
// The operations, their order and their rounding are the composite's: each one correctly rounded
// (__fmul_rn & co. keep nvcc from contracting a·b + c into one FMA), the 1 − β constants rounded once
// on the host as tfjs rounds its scalars; so the fused kernels give the composite's values exactly.
// Memory-bound: 4 elements per thread with float4 loads where n % 4 = 0 and pointers are aligned.
#include "optimizer.h"

#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

struct AdamHyper {
  float beta1, oneMinusBeta1, beta2, oneMinusBeta2, bc1, bc2, eps, lr;
};

template <int V>
__global__ void adamUpdateKernel(const float* __restrict__ p, const float* __restrict__ m, const float* __restrict__ v,
                                 const float* __restrict__ g, float* __restrict__ pOut, float* __restrict__ mOut,
                                 float* __restrict__ vOut, int64_t groups, AdamHyper h) {
  TSGPT_GRID_STRIDE(i, groups) {
    float pv[V], mv[V], vv[V], gv[V];
    loadVec<V>(p + i * V, pv);
    loadVec<V>(m + i * V, mv);
    loadVec<V>(v + i * V, vv);
    loadVec<V>(g + i * V, gv);
#pragma unroll
    for (int k = 0; k < V; ++k) {
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
                                   float* __restrict__ nesterov, int64_t groups, float mu, float oneMinusMu) {
  TSGPT_GRID_STRIDE(i, groups) {
    float b[V], gv[V], nv[V];
    loadVec<V>(buf + i * V, b);
    loadVec<V>(g + i * V, gv);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float scaledG = __fmul_rn(gv[k], oneMinusMu);
      b[k] = __fadd_rn(__fmul_rn(b[k], mu), scaledG);
      nv[k] = __fadd_rn(scaledG, __fmul_rn(b[k], mu));
    }
    storeVec<V>(bufOut + i * V, b);
    storeVec<V>(nesterov + i * V, nv);
  }
}

}  // namespace

cudaError_t launchAdamUpdate(cudaStream_t s, const float* p, const float* m, const float* v, const float* g, float* pOut,
                             float* mOut, float* vOut, int64_t n, double beta1, double beta2, double bc1, double bc2,
                             double eps, double lr) {
  if (n == 0) return cudaSuccess;
  const AdamHyper h{float(beta1), float(1 - beta1), float(beta2), float(1 - beta2), float(bc1), float(bc2), float(eps), float(lr)};
  if (n % 4 == 0 && aligned16({p, m, v, g, pOut, mOut, vOut}))
    adamUpdateKernel<4><<<gridFor(n / 4), kThreads, 0, s>>>(p, m, v, g, pOut, mOut, vOut, n / 4, h);
  else
    adamUpdateKernel<1><<<gridFor(n), kThreads, 0, s>>>(p, m, v, g, pOut, mOut, vOut, n, h);
  return cudaGetLastError();
}

cudaError_t launchMuonMomentum(cudaStream_t s, const float* buf, const float* g, float* bufOut, float* nesterov, int64_t n,
                               double mu) {
  if (n == 0) return cudaSuccess;
  const float momentum = float(mu), oneMinusMomentum = float(1 - mu);
  if (n % 4 == 0 && aligned16({buf, g, bufOut, nesterov}))
    muonMomentumKernel<4><<<gridFor(n / 4), kThreads, 0, s>>>(buf, g, bufOut, nesterov, n / 4, momentum, oneMinusMomentum);
  else
    muonMomentumKernel<1><<<gridFor(n), kThreads, 0, s>>>(buf, g, bufOut, nesterov, n, momentum, oneMinusMomentum);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(adamUpdate, launchAdamUpdate, "p", "m", "v", "g", "pOut", "mOut", "vOut", "n", "beta1", "beta2", "bc1", "bc2",
               "eps", "lr");
TSGPT_LAUNCHER(muonMomentum, launchMuonMomentum, "buf", "g", "bufOut", "nesterov", "n", "momentum");

}  // namespace tsgpt
