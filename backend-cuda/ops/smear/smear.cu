// Token smear (train_gpt.ts's smear(): modded-nanogpt's x[t] += λ·σ(gate(x[t][:k]))·x[t−1] at the embedding), forward and
// backward side by side, a warp a row:
//   forward:  gate_t = λ·σ(Σ_{j<k} x[t, j]·w[j]);  y[t] = x[t] + (x[t−1]·m_t)·gate_t
//   backward: dg_t = Σ_c dy[t, c]·x[t−1, c]·m_t;  dλ = Σ_t dg_t·σ_t;  dpre_t = dg_t·λ·σ_t(1 − σ_t);  dw[j] = Σ_t x[t, j]·dpre_t;
//             dx[t] = dy[t] + (dy[t+1]·gate_{t+1})·m_{t+1} + (dpre_t·w in the first k channels)
// m_t is 0 at a batch row's first token, else 1 (across documents: the record's packed stream) or whether t and t − 1 are
// in one document. Each row's gate is made again where it
// is needed (a 12-value dot: cheaper than a tensor of them). The composite's float32 operations in its order: y, and
// the shifted term of dx, equal it bit for bit given the same gate; the gate's dot (k products: the composite's Linear,
// whose operands are rounded to bf16 under bf16 matmuls, as here where bf16) and the sums are in another order.
// dw and dλ: each block's partial sums, then one block adds them in a fixed order (deterministic).
#include "smear.h"

#include <algorithm>

#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/rows.cuh"  // warpSum
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

constexpr int kRowsPerBlock = 8;  // a warp a row

struct Gate {
  float sigma, gate;  // σ(pre) and λ·σ(pre)
};

// Row r's gate (every lane gets it); lanes < k also return their channel's operand (rounded where bf16).
__device__ __forceinline__ Gate gateOf(const float* __restrict__ xr, const float* __restrict__ w, float lambda, int k,
                                       bool bf16, int lane, float* lead = nullptr) {
  float p = 0.f;
  if (lane < k) {
    float a = xr[lane], b = w[lane];
    if (bf16) { a = roundedToBf16(a); b = roundedToBf16(b); }
    if (lead) *lead = a;
    p = a * b;
  }
  const float sigma = 1.f / (1.f + expf(-warpSum(p)));
  return {sigma, __fmul_rn(sigma, lambda)};
}

// m_t: 0 at a batch row's first token, else 1 across documents (no ids), else whether t and t − 1 share a document.
__device__ __forceinline__ float maskAt(const int32_t* __restrict__ docIds, int64_t row, int64_t T) {
  return row % T == 0 ? 0.f : !docIds || docIds[row] == docIds[row - 1] ? 1.f : 0.f;
}

template <int V>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
smearKernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ lambda, const int32_t* __restrict__ docIds,
            float* __restrict__ y, int64_t rows, int64_t T, int64_t d, int k, bool bf16) {
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;  // warp-uniform
  const int lane = threadIdx.x & 31;
  const float* xr = x + row * d;
  const float g = gateOf(xr, w, *lambda, k, bf16, lane).gate, m = maskAt(docIds, row, T);
  const bool first = row % T == 0;
  for (int64_t j = lane * V; j < d; j += 32 * V) {
    float v[V], p[V];
    loadVec<V>(xr + j, v);
    if (first) {
#pragma unroll
      for (int q = 0; q < V; ++q) p[q] = 0.f;  // the composite's zero padding
    } else {
      loadVec<V>(xr - d + j, p);
    }
#pragma unroll
    for (int q = 0; q < V; ++q) v[q] = __fadd_rn(v[q], __fmul_rn(__fmul_rn(p[q], m), g));
    storeVec<V>(y + row * d + j, v);
  }
}

// dx of each row, and this block's partial sums of dw (k values) and dλ into partials[block·(k + 1) …].
template <int V>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
smearGradKernel(const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ w,
                const float* __restrict__ lambda, const int32_t* __restrict__ docIds, float* __restrict__ dx,
                float* __restrict__ partials, int64_t rows, int64_t T, int64_t d, int k, bool bf16) {
  __shared__ float part[kRowsPerBlock][33];
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + warp;
  float dwPart = 0.f, dlPart = 0.f;
  if (row < rows) {  // warp-uniform
    const float lam = *lambda;
    const float* xr = x + row * d;
    const float* dyr = dy + row * d;
    float lead = 0.f;
    const Gate here = gateOf(xr, w, lam, k, bf16, lane, &lead);
    const float m = maskAt(docIds, row, T);
    const bool first = row % T == 0, last = (row + 1) % T == 0;
    const float gNext = last ? 0.f : gateOf(xr + d, w, lam, k, bf16, lane).gate, mNext = last ? 0.f : maskAt(docIds, row + 1, T);
    // dg_t: the gate's gradient, Σ_c dy·(x[t−1]·m)
    float dot = 0.f;
    if (!first) {
      for (int64_t j = lane * V; j < d; j += 32 * V) {
        float g[V], p[V];
        loadVec<V>(dyr + j, g);
        loadVec<V>(xr - d + j, p);
#pragma unroll
        for (int q = 0; q < V; ++q) dot = fmaf(g[q], __fmul_rn(p[q], m), dot);
      }
    }
    const float dg = warpSum(dot);
    // gate = σ·λ: dλ += dg·σ; σ = sigmoid(pre): dpre = (dg·λ)·(σ·(1 − σ)) (tfjs's Multiply and Sigmoid gradients)
    dlPart = dg * here.sigma;
    float dpre = __fmul_rn(__fmul_rn(dg, lam), __fmul_rn(here.sigma, __fsub_rn(1.f, here.sigma)));
    if (bf16) dpre = roundedToBf16(dpre);  // the Linear's gradient products take bf16 operands
    const float wk = lane < k ? (bf16 ? roundedToBf16(w[lane]) : w[lane]) : 0.f;
    if (lane < k) dwPart = lead * dpre;
    const float dLead = dpre * wk;  // lane j < k: the gate's gradient in channel j
    // this lane's first V channels' share of it (every lane shuffles: the values of lanes lane·V + q)
    float leadAdd[V];
#pragma unroll
    for (int q = 0; q < V; ++q) {
      const int from = lane * V + q;
      leadAdd[q] = __shfl_sync(0xffffffffu, dLead, from < 32 ? from : 0);
      if (from >= k) leadAdd[q] = 0.f;
    }
    for (int64_t j = lane * V; j < d; j += 32 * V) {
      float g[V], n[V];
      loadVec<V>(dyr + j, g);
      if (last) {
#pragma unroll
        for (int q = 0; q < V; ++q) n[q] = 0.f;
      } else {
        loadVec<V>(dyr + d + j, n);
      }
#pragma unroll
      for (int q = 0; q < V; ++q) g[q] = __fadd_rn(g[q], __fmul_rn(__fmul_rn(n[q], gNext), mNext));
      if (j < k) {  // the gate's channels (the first step only)
#pragma unroll
        for (int q = 0; q < V; ++q)
          if (j + q < k) g[q] = __fadd_rn(g[q], leadAdd[q]);
      }
      storeVec<V>(dx + row * d + j, g);
    }
  }
  part[warp][lane] = dwPart;
  if (lane == 0) part[warp][32] = dlPart;
  __syncthreads();
  if (threadIdx.x <= k) {  // k dw sums, then dλ's, over the block's warps in order
    const int c = threadIdx.x == k ? 32 : threadIdx.x;
    float s = 0.f;
    for (int r = 0; r < kRowsPerBlock; ++r) s += part[r][c];
    partials[int64_t(blockIdx.x) * (k + 1) + threadIdx.x] = s;
  }
}

// out[c] = Σ_b partials[b·(k + 1) + c] for c ≤ k, a warp a sum, in a fixed order: dw[0 … k), then dλ.
__global__ void sumPartialsKernel(const float* __restrict__ partials, int blocks, int k, float* __restrict__ dw, float* __restrict__ dl) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, warps = blockDim.x / 32;
  for (int c = warp; c <= k; c += warps) {
    float s = 0.f;
    for (int b = lane; b < blocks; b += 32) s += partials[int64_t(b) * (k + 1) + c];
    s = warpSum(s);
    if (lane == 0) (c < k ? dw[c] : *dl) = s;
  }
}

bool rowsOf4(int64_t d, std::initializer_list<const void*> ptrs) { return d % 4 == 0 && aligned16(ptrs); }

}  // namespace

cudaError_t launchSmear(cudaStream_t s, const float* x, const float* w, const float* lambda, const int32_t* docIds, float* y,
                        int64_t rows, int64_t T, int64_t d, int gate, bool bf16) {
  if (rows == 0) return cudaSuccess;
  if (T <= 0 || rows % T != 0 || gate < 1 || gate > 32 || gate > d || rows > 0x7fffffffLL * kRowsPerBlock) return cudaErrorInvalidValue;
  const unsigned blocks = unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  if (rowsOf4(d, {x, y})) smearKernel<4><<<blocks, kRowsPerBlock * 32, 0, s>>>(x, w, lambda, docIds, y, rows, T, d, gate, bf16);
  else smearKernel<1><<<blocks, kRowsPerBlock * 32, 0, s>>>(x, w, lambda, docIds, y, rows, T, d, gate, bf16);
  return cudaGetLastError();
}

cudaError_t launchSmearGrad(cudaStream_t s, const float* dy, const float* x, const float* w, const float* lambda,
                            const int32_t* docIds, float* dx, float* dw, float* dlambda, int64_t rows, int64_t T, int64_t d,
                            int gate, bool bf16) {
  if (T <= 0 || rows % T != 0 || gate < 1 || gate > 32 || gate > d || rows > 0x7fffffffLL * kRowsPerBlock) return cudaErrorInvalidValue;
  const int blocks = int((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  float* partials = nullptr;
  cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&partials), sizeof(float) * std::max(1, blocks) * (gate + 1), s);
  if (e != cudaSuccess) return e;
  if (blocks > 0) {
    if (rowsOf4(d, {dy, x, dx})) smearGradKernel<4><<<blocks, kRowsPerBlock * 32, 0, s>>>(dy, x, w, lambda, docIds, dx, partials, rows, T, d, gate, bf16);
    else smearGradKernel<1><<<blocks, kRowsPerBlock * 32, 0, s>>>(dy, x, w, lambda, docIds, dx, partials, rows, T, d, gate, bf16);
  }
  sumPartialsKernel<<<1, 256, 0, s>>>(partials, blocks, gate, dw, dlambda);  // 0 for no rows
  e = cudaGetLastError();
  const cudaError_t f = cudaFreeAsync(partials, s);
  return e != cudaSuccess ? e : f;
}

TSGPT_LAUNCHER(smear, launchSmear, "x", "w", "lambda", "docIds", "y", "rows", "T", "d", "gate", "bf16");
TSGPT_LAUNCHER(smearGrad, launchSmearGrad, "dy", "x", "w", "lambda", "docIds", "dx", "dw", "dlambda", "rows", "T", "d", "gate", "bf16");

}  // namespace tsgpt
