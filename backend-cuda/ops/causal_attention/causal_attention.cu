// Fused causal attention (FlashAttention-2 style), forward and backward side by side, fp32.
// q [B,T,H,h], k and v [B,T,Hk,h] (query head i reads K/V head ⌊i/(H/Hk)⌋), docIds int32 [B,T]
// nondecreasing along T. Key j is visible to query i iff j ≤ i, i − j < window, doc[j] = doc[i].
// s_ij = scale·q_i·k_j. Scores (train_gpt.ts's attention() is the composite they must equal):
//   softmax   p_j = e^{s_j−m} / Σ e^{s−m}
//   softmax1  p_j = e^{s_j−m} / (e^{−m} + Σ e^{s−m}),            m = max(0, max s)
//   softpick  p_j = relu(e^{s_j−m} − e^{−m}) / (Σ|e^{s−m} − e^{−m}| + ε),  m = max(−60, max s), ε = 1e-6
// (sums over the visible keys; ε is added in the frame of the final m, as in the composite).
//
// Forward, per block of kBlockQ queries of one head: loop over key tiles of kBlockK (one key per
// lane), online: m' = max(m, tile max); every running term carries the factor e^{−m}, so the sum l
// and the output accumulator are rescaled by α = e^{m−m'} (softpick: |e^{s−m} − e^{−m}| and
// relu(·) carry e^{−m} too, so the same α is exact). Initial m is −∞ (softmax), 0 (softmax1: the
// extra zero logit) or −60 (softpick's floor), which gives each variant's m without a special case.
// The den at the end is l (softmax), l + e^{−m} (softmax1), l + ε (softpick). Key tiles wholly
// before the window or wholly in earlier documents (nondecreasing docIds: doc[last key] <
// doc[first query]) are skipped; no T×T matrix exists anywhere.
//
// Backward (dO = dL/dO, g_ij = dO_i·v_j, D_i = Σ_j g_ij p_ij = dO_i·O_i):
//   softmax, softmax1: ds_ij = p_ij (g_ij − D_i)   (softmax1's e^{−m} term changes p, not the form)
//   softpick, d_j = e^{s_j−m} − e^{−m}, S = den:
//     ds_ij = (e^{s_j−m}/S)·(g_ij·[d_j>0] − sgn(d_j)·D_i) − [j = argmax]·D_i·ε/S
//   The last term is ∂L/∂m (= −D·ε/S, because ε does not scale with e^{−m}) routed to the key that
//   set m, as the composite's max() gradient does; none when the −60 floor set m.
//   dq_i = scale·Σ_j ds_ij k_j;  dk_j = scale·Σ_i ds_ij q_i;  dv_j = Σ_i p_ij dO_i
// The forward writes the per-row statistics (m, den, argmax key) where it is given a buffer for
// them; a backward without them recomputes them first with a statistics-only pass of the forward
// kernel (one extra q·k pass). Then two kernels, no atomics: dq by query blocks looping over key
// tiles, dk/dv by key tiles looping over the query heads of the K/V head's group and their query blocks.
//
// This is the exact version (fp32 FMA from shared memory, h ≤ 128): tf32/fp32 matmul precision, other head
// dims, and the GPU tests' reference. Its tile structure (query block × key tile, per-row m/den, the
// three-kernel backward) is what the tensor-core version (causal_attention_mma.cu) keeps.
#include <cmath>
#include "causal_attention.cuh"
#include "../../native/launchers.h"
#include "../../native/rows.cuh"  // warpSum, warpMax

namespace tsgpt {
namespace {

constexpr int kWarps = 4;
constexpr int kBlockThreads = kWarps * 32;
constexpr int kBlockQ = 16;                       // queries per block (forward, dq, dk/dv's inner tile)
constexpr int kRowsPerWarp = kBlockQ / kWarps;
constexpr int kBlockK = 32;                       // keys per tile: one per lane
constexpr int kKeysPerWarp = kBlockK / kWarps;    // dk/dv: keys owned by each warp
constexpr int kDimsPerLane = kMaxAttentionHead / 32;

__device__ __forceinline__ bool visible(int i, int j, int jEnd, int window, const int* doc) {
  return j < jEnd && j <= i && i - j < window && doc[j] == doc[i];
}

// acc (this lane's dims lane + 32c) += Σ_jj w_jj · tile[jj][·] over the kBlockK keys of a tile, w_jj held by lane jj.
__device__ __forceinline__ void accumulateKeys(float (&acc)[kDimsPerLane], float w, const float* tile, int stride, int h,
                                               int lane) {
  for (int jj = 0; jj < kBlockK; jj++) {
    const float wj = __shfl_sync(kFull, w, jj);
#pragma unroll
    for (int c = 0; c < kDimsPerLane; c++) {
      const int d = lane + 32 * c;
      if (d < h) acc[c] = fmaf(wj, tile[jj * stride + d], acc[c]);
    }
  }
}

// dst[d] = acc · mul for this lane's dims d = lane + 32c of a row of h floats.
// (plus: a row added first, as an Add of it and the product would: dv's sum so far)
__device__ __forceinline__ void storeLaneDims(float* dst, const float (&acc)[kDimsPerLane], float mul, int h, int lane,
                                              const float* plus = nullptr) {
#pragma unroll
  for (int c = 0; c < kDimsPerLane; c++) {
    const int d = lane + 32 * c;
    if (d < h) dst[d] = plus ? __fadd_rn(plus[d], __fmul_rn(acc[c], mul)) : acc[c] * mul;
  }
}

// rows [t0, t0 + n) of one head of x ([B,T,heads,h]) into smem rows of `stride` floats; zeros past T.
__device__ __forceinline__ void loadRows(float* dst, int stride, const float* x, int64_t row0, int heads,
                                         int t0, int n, int T, int h) {
  for (int idx = threadIdx.x; idx < n * h; idx += blockDim.x) {
    const int r = idx / h, c = idx - r * h;
    dst[r * stride + c] = t0 + r < T ? x[(row0 + (int64_t)r * heads) * h + c] : 0.f;
  }
}

// ---- forward (kWithOutput false: the backward's statistics pass, no P·V); stats may be null ----
template <int kScore, bool kWithOutput>
__global__ void __launch_bounds__(kBlockThreads)
attentionForwardKernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                       const int* __restrict__ docIds, float* __restrict__ o, float* __restrict__ stats, Dims dm) {
  extern __shared__ float smem[];
  const int h = dm.h, hp = h + 1;  // K rows padded: lane j reads row j across d without bank conflicts
  float* sQ = smem;                    // [kBlockQ][h]
  float* sK = sQ + kBlockQ * h;        // [kBlockK][h+1]
  float* sV = sK + kBlockK * hp;       // [kBlockK][h]
  const int b = blockIdx.z, head = blockIdx.y, q0 = blockIdx.x * kBlockQ;
  const int kvHead = head / (dm.H / dm.Hk), T = dm.T;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int* doc = docIds + (int64_t)b * T;
  const int q1 = min(q0 + kBlockQ, T);

  loadRows(sQ, h, q, qRow(dm, b, q0, head), dm.H, q0, kBlockQ, T, h);
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
  int argmax[kRowsPerWarp];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    m[rr] = initialMax<kScore>();
    l[rr] = 0.f;
    argmax[rr] = -1;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; c++) acc[rr][c] = 0.f;
  }

  const int firstDoc = doc[q0];
  for (int k0 = max(0, q0 - dm.window + 1) / kBlockK * kBlockK; k0 < q1; k0 += kBlockK) {
    const int k1 = min(k0 + kBlockK, T);
    if (doc[k1 - 1] < firstDoc) continue;  // the whole tile is in earlier documents
    __syncthreads();                       // the previous tile's readers are done
    loadRows(sK, hp, k, kRow(dm, b, k0, kvHead), dm.Hk, k0, kBlockK, T, h);
    if (kWithOutput) loadRows(sV, h, v, kRow(dm, b, k0, kvHead), dm.Hk, k0, kBlockK, T, h);
    __syncthreads();
    const int j = k0 + lane;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; rr++) {
      const int r = warp * kRowsPerWarp + rr, i = q0 + r;
      if (i >= T) continue;  // warp-uniform
      float dot = 0.f;
      for (int c = 0; c < h; c++) dot = fmaf(sQ[r * h + c], sK[lane * hp + c], dot);
      const bool vis = visible(i, j, k1, dm.window, doc);
      const float s = dot * dm.scale;
      const float tileMax = warpMax(vis ? s : -INFINITY);
      const float mNew = fmaxf(m[rr], tileMax);
      if (tileMax > m[rr]) argmax[rr] = k0 + __ffs(__ballot_sync(kFull, vis && s == tileMax)) - 1;
      const float alpha = mNew == m[rr] ? 1.f : expf(m[rr] - mNew);
      float p = 0.f, term = 0.f;
      if (vis) {
        if (kScore == kScoreSoftpick) {
          const float d = expf(s - mNew) - expf(-mNew);
          p = fmaxf(d, 0.f);
          term = fabsf(d);
        } else {
          p = term = expf(s - mNew);
        }
      }
      l[rr] = l[rr] * alpha + warpSum(term);
      m[rr] = mNew;
      if (kWithOutput) {
#pragma unroll
        for (int c = 0; c < kDimsPerLane; c++) acc[rr][c] *= alpha;
        accumulateKeys(acc[rr], p, sV, h, h, lane);
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int i = q0 + warp * kRowsPerWarp + rr;
    if (i >= T) continue;
    const float den = kScore == kScoreSoftmax1 ? l[rr] + expf(-m[rr])
                    : kScore == kScoreSoftpick ? l[rr] + kSoftpickEps : l[rr];
    const int64_t row = qRow(dm, b, i, head);
    if (stats != nullptr && lane == 0) {
      stats[row * kStats] = m[rr];
      stats[row * kStats + 1] = den;
      stats[row * kStats + 2] = float(argmax[rr]);
    }
    if (kWithOutput) {
      const float inv = den > 0.f ? 1.f / den : 0.f;  // den = 0 only for a row that sees no key
      storeLaneDims(o + row * h, acc[rr], inv, h, lane);
    }
  }
}

// ---- backward: dq, by query blocks over key tiles ----
template <int kScore>
__global__ void __launch_bounds__(kBlockThreads)
attentionGradQKernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                     const int* __restrict__ docIds, const float* __restrict__ o, const float* __restrict__ dO,
                     const float* __restrict__ stats, float* __restrict__ dq, Dims dm) {
  extern __shared__ float smem[];
  const int h = dm.h, hp = h + 1;
  float* sQ = smem;                  // [kBlockQ][h]
  float* sDO = sQ + kBlockQ * h;     // [kBlockQ][h]
  float* sK = sDO + kBlockQ * h;     // [kBlockK][h+1]
  float* sV = sK + kBlockK * hp;     // [kBlockK][h+1]
  const int b = blockIdx.z, head = blockIdx.y, q0 = blockIdx.x * kBlockQ;
  const int kvHead = head / (dm.H / dm.Hk), T = dm.T;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int* doc = docIds + (int64_t)b * T;
  const int q1 = min(q0 + kBlockQ, T);

  loadRows(sQ, h, q, qRow(dm, b, q0, head), dm.H, q0, kBlockQ, T, h);
  loadRows(sDO, h, dO, qRow(dm, b, q0, head), dm.H, q0, kBlockQ, T, h);
  __syncthreads();
  float m[kRowsPerWarp], den[kRowsPerWarp], D[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
  int argmax[kRowsPerWarp];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int r = warp * kRowsPerWarp + rr, i = min(q0 + r, T - 1);  // rows past T: computed, never stored
    const int64_t row = qRow(dm, b, i, head);
    m[rr] = stats[row * kStats];
    den[rr] = stats[row * kStats + 1];
    argmax[rr] = int(stats[row * kStats + 2]);
    float part = 0.f;
    for (int c = lane; c < h; c += 32) part = fmaf(sDO[r * h + c], o[row * h + c], part);
    D[rr] = warpSum(part);
#pragma unroll
    for (int c = 0; c < kDimsPerLane; c++) acc[rr][c] = 0.f;
  }

  const int firstDoc = doc[q0];
  for (int k0 = max(0, q0 - dm.window + 1) / kBlockK * kBlockK; k0 < q1; k0 += kBlockK) {
    const int k1 = min(k0 + kBlockK, T);
    if (doc[k1 - 1] < firstDoc) continue;
    __syncthreads();
    loadRows(sK, hp, k, kRow(dm, b, k0, kvHead), dm.Hk, k0, kBlockK, T, h);
    loadRows(sV, hp, v, kRow(dm, b, k0, kvHead), dm.Hk, k0, kBlockK, T, h);
    __syncthreads();
    const int j = k0 + lane;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; rr++) {
      const int r = warp * kRowsPerWarp + rr, i = q0 + r;
      if (i >= T) continue;
      float dot = 0.f, g = 0.f;
      for (int c = 0; c < h; c++) {
        dot = fmaf(sQ[r * h + c], sK[lane * hp + c], dot);
        g = fmaf(sDO[r * h + c], sV[lane * hp + c], g);
      }
      const float ds = visible(i, j, k1, dm.window, doc)
          ? scoreGrad<kScore, false>(dot * dm.scale, g, m[rr], 1.f / den[rr], D[rr], j == argmax[rr]) : 0.f;
      accumulateKeys(acc[rr], ds, sK, hp, h, lane);
    }
  }

#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int i = q0 + warp * kRowsPerWarp + rr;
    if (i >= T) continue;
    const int64_t row = qRow(dm, b, i, head);
    storeLaneDims(dq + row * h, acc[rr], dm.scale, h, lane);
  }
}

// ---- backward: dk, dv, by key tiles over the group's query heads and their query blocks ----
template <int kScore>
__global__ void __launch_bounds__(kBlockThreads)
attentionGradKVKernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                      const int* __restrict__ docIds, const float* __restrict__ o, const float* __restrict__ dO,
                      const float* __restrict__ stats, float* __restrict__ dk, float* __restrict__ dv,
                      const float* __restrict__ dvAccumulated, Dims dm) {
  extern __shared__ float smem[];
  const int h = dm.h, hp = h + 1;
  float* sK = smem;                  // [kBlockK][h+1]
  float* sV = sK + kBlockK * hp;     // [kBlockK][h+1]
  float* sQ = sV + kBlockK * hp;     // [kBlockQ][h]
  float* sDO = sQ + kBlockQ * h;     // [kBlockQ][h]
  float* sP = sDO + kBlockQ * h;     // [kBlockQ][kBlockK]
  float* sDS = sP + kBlockQ * kBlockK;
  const int b = blockIdx.z, kvHead = blockIdx.y, k0 = blockIdx.x * kBlockK, T = dm.T;
  const int group = dm.H / dm.Hk;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int* doc = docIds + (int64_t)b * T;
  const int k1 = min(k0 + kBlockK, T);
  const int qEnd = min(T, k1 - 1 + dm.window);  // no query at or past this sees a key of the tile

  loadRows(sK, hp, k, kRow(dm, b, k0, kvHead), dm.Hk, k0, kBlockK, T, h);
  loadRows(sV, hp, v, kRow(dm, b, k0, kvHead), dm.Hk, k0, kBlockK, T, h);
  float accK[kKeysPerWarp][kDimsPerLane], accV[kKeysPerWarp][kDimsPerLane];
#pragma unroll
  for (int jj = 0; jj < kKeysPerWarp; jj++)
#pragma unroll
    for (int c = 0; c < kDimsPerLane; c++) accK[jj][c] = accV[jj][c] = 0.f;

  const int lastDoc = doc[k1 - 1];
  for (int head = kvHead * group; head < (kvHead + 1) * group; head++) {
    for (int q0 = k0 / kBlockQ * kBlockQ; q0 < qEnd; q0 += kBlockQ) {
      if (doc[q0] > lastDoc) break;  // this and later query blocks are in later documents
      __syncthreads();               // the previous block's readers of sQ/sDO/sP/sDS are done
      loadRows(sQ, h, q, qRow(dm, b, q0, head), dm.H, q0, kBlockQ, T, h);
      loadRows(sDO, h, dO, qRow(dm, b, q0, head), dm.H, q0, kBlockQ, T, h);
      __syncthreads();
      const int j = k0 + lane;
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; rr++) {
        const int r = warp * kRowsPerWarp + rr, i = q0 + r;
        float p = 0.f, ds = 0.f;
        if (i < T) {  // warp-uniform
          const int64_t row = qRow(dm, b, i, head);
          const float m = stats[row * kStats], den = stats[row * kStats + 1];
          const int argmax = int(stats[row * kStats + 2]);
          float part = 0.f;
          for (int c = lane; c < h; c += 32) part = fmaf(sDO[r * h + c], o[row * h + c], part);
          const float D = warpSum(part);
          float dot = 0.f, g = 0.f;
          for (int c = 0; c < h; c++) {
            dot = fmaf(sQ[r * h + c], sK[lane * hp + c], dot);
            g = fmaf(sDO[r * h + c], sV[lane * hp + c], g);
          }
          if (visible(i, j, k1, dm.window, doc)) {
            const float s = dot * dm.scale;
            p = probability<kScore, false>(s, m, 1.f / den);
            ds = scoreGrad<kScore, false>(s, g, m, 1.f / den, D, j == argmax);
          }
        }
        sP[r * kBlockK + lane] = p;
        sDS[r * kBlockK + lane] = ds;
      }
      __syncthreads();
      for (int r = 0; r < kBlockQ; r++) {
        float qr[kDimsPerLane], dOr[kDimsPerLane];
#pragma unroll
        for (int c = 0; c < kDimsPerLane; c++) {
          const int d = lane + 32 * c;
          qr[c] = d < h ? sQ[r * h + d] : 0.f;
          dOr[c] = d < h ? sDO[r * h + d] : 0.f;
        }
#pragma unroll
        for (int jj = 0; jj < kKeysPerWarp; jj++) {
          const float pr = sP[r * kBlockK + warp * kKeysPerWarp + jj];
          const float dsr = sDS[r * kBlockK + warp * kKeysPerWarp + jj];
#pragma unroll
          for (int c = 0; c < kDimsPerLane; c++) {
            accV[jj][c] = fmaf(pr, dOr[c], accV[jj][c]);
            accK[jj][c] = fmaf(dsr, qr[c], accK[jj][c]);
          }
        }
      }
    }
  }

#pragma unroll
  for (int jj = 0; jj < kKeysPerWarp; jj++) {
    const int j = k0 + warp * kKeysPerWarp + jj;
    if (j >= T) continue;
    const int64_t row = kRow(dm, b, j, kvHead);
    storeLaneDims(dk + row * h, accK[jj], dm.scale, h, lane);
    storeLaneDims(dv + row * h, accV[jj], 1.f, h, lane, dvAccumulated ? dvAccumulated + row * h : nullptr);
  }
}

template <int kScore, bool kWithOutput>
cudaError_t forward(cudaStream_t s, const float* q, const float* k, const float* v, const int* docIds, float* o,
                    float* stats, const Dims& d) {
  const size_t smem = sizeof(float) * (kBlockQ * d.h + kBlockK * (d.h + 1) + kBlockK * d.h);
  const dim3 grid((d.T + kBlockQ - 1) / kBlockQ, d.H, d.B);
  const auto kernel = attentionForwardKernel<kScore, kWithOutput>;
  if (const cudaError_t e = allowSharedMemory(kernel, smem); e != cudaSuccess) return e;
  kernel<<<grid, kBlockThreads, smem, s>>>(q, k, v, docIds, o, stats, d);
  return cudaGetLastError();
}

template <int kScore>
cudaError_t backward(cudaStream_t s, const float* q, const float* k, const float* v, const int* docIds,
                     const float* o, const float* dO, const float* stats, float* dq, float* dk, float* dv,
                     const float* dvAccumulated, const Dims& d) {
  const size_t smemQ = sizeof(float) * (2 * kBlockQ * d.h + 2 * kBlockK * (d.h + 1));
  const dim3 gridQ((d.T + kBlockQ - 1) / kBlockQ, d.H, d.B);
  const auto kernelQ = attentionGradQKernel<kScore>;
  if (const cudaError_t e = allowSharedMemory(kernelQ, smemQ); e != cudaSuccess) return e;
  kernelQ<<<gridQ, kBlockThreads, smemQ, s>>>(q, k, v, docIds, o, dO, stats, dq, d);
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;

  const size_t smemKV = sizeof(float) * (2 * kBlockK * (d.h + 1) + 2 * kBlockQ * d.h + 2 * kBlockQ * kBlockK);
  const dim3 gridKV((d.T + kBlockK - 1) / kBlockK, d.Hk, d.B);
  const auto kernelKV = attentionGradKVKernel<kScore>;
  if (const cudaError_t e = allowSharedMemory(kernelKV, smemKV); e != cudaSuccess) return e;
  kernelKV<<<gridKV, kBlockThreads, smemKV, s>>>(q, k, v, docIds, o, dO, stats, dk, dv, dvAccumulated, d);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launchAttention(cudaStream_t s, const float* q, const float* k, const float* v, const int* docIds,
                            float* o, float* stats, int B, int T, int H, int Hk, int h, int window, float scale,
                            int score) {
  const Dims d{B, T, H, Hk, h, window < T ? window : T, scale};
  if (B == 0 || T == 0) return cudaSuccess;
  if (const cudaError_t e = checkDims(d); e != cudaSuccess) return e;
  return byScore(score, [&](auto c) { return forward<decltype(c)::value, true>(s, q, k, v, docIds, o, stats, d); });
}

cudaError_t launchAttentionGrad(cudaStream_t s, const float* q, const float* k, const float* v, const int* docIds,
                                const float* o, const float* dO, float* stats, bool statsReady, float* dq, float* dk,
                                float* dv, const float* dvAccumulated, int B, int T, int H, int Hk, int h, int window,
                                float scale, int score) {
  const Dims d{B, T, H, Hk, h, window < T ? window : T, scale};
  if (B == 0 || T == 0) return cudaSuccess;
  if (const cudaError_t e = checkDims(d); e != cudaSuccess) return e;
  if (!statsReady) {  // o came without its statistics: the statistics-only forward pass first
    const cudaError_t e = byScore(score, [&](auto c) {
      return forward<decltype(c)::value, false>(s, q, k, v, docIds, nullptr, stats, d);
    });
    if (e != cudaSuccess) return e;
  }
  return byScore(score, [&](auto c) {
    return backward<decltype(c)::value>(s, q, k, v, docIds, o, dO, stats, dq, dk, dv, dvAccumulated, d);
  });
}

TSGPT_LAUNCHER(attention, launchAttention, "q", "k", "v", "docIds", "o", "stats", "B", "T", "H", "Hk", "h", "window", "scale",
               "score");
TSGPT_LAUNCHER(attentionGrad, launchAttentionGrad, "q", "k", "v", "docIds", "o", "dO", "stats", "statsReady", "dq", "dk", "dv",
               "dvAccumulated", "B", "T", "H", "Hk", "h", "window", "scale", "score");

}  // namespace tsgpt
