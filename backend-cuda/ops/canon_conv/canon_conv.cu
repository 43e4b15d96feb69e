// Fused Canon layer (Allen-Zhu, Physics of LMs 4.1; train_gpt.ts's canon()): a causal depthwise convolution of
// kernel 4 with its residual, per document, forward and backward. Rows r = b·T + t of C channels; tap k of
// channel c multiplies the token 3 − k steps back, and a tap that would read before the sequence or into
// another document reads zero:
//   forward:  y[r,c]  = x[r,c]·(1 + w[c,3]) + Σ_{s=1..3} w[c,3−s]·x[r−s,c]·same(r, r−s)
//   backward: dx[r,c] = dy[r,c]·(1 + w[c,3]) + Σ_{s=1..3} w[c,3−s]·dy[r+s,c]·same(r+s, r)
//             dw[c,3−s] = Σ_r dy[r,c]·x[r−s,c]·same(r, r−s)   (s = 0: the residual's tap, always counted)
// same(r, q): q is in the same sequence (t ≥ s, resp. t + s < T) and docIds[q] = docIds[r].
// Canon B convolves the QK-normed q and k heads (and v as it is): with normChannels > 0 the taps read z = x·rstd in
// each head of normGroup channels among the first normChannels (rstd = (mean x² + eps)^-½, from the row in registers
// through the head's lanes), and the backward turns dz, the taps' gradient, into dx = rstd·(dz − z·mean(dz·z)): the
// split, the two norms and the concatenation of the composite (5 kernels and 2 copies of the row each way) are gone.
// Canon A and C convolve the sublayer's normed input: with rowNorm the taps read x·rstd over the whole row (x the
// residual stream, which the block keeps anyway; rstd from a first pass over x, a warp a row), so nothing is kept or
// made again for the backward. Its backward (canonRowNormGradKernel) takes whole rows a block, so that the row sums the
// norm's backward needs (Σx² and Σdz·x) are the block's: it finishes dx through the norm and adds the residual's
// gradient so far in its stores, where a dz tensor, an rstd pass and RMSNormGrad's pass over them were.
// Canon D with the relu2 MLP (relu2): y = relu(h)², h the conv, in the forward's store; the backward makes h again from
// x in registers (canonRelu2GradKernel), so neither h nor relu(h)² is kept or made again by a separate kernel (the
// composite checkpointed the conv and the activation and ran both again, then ReLU²'s gradient, then the conv's).
// The composite pads x three times and keeps the padded copies for its backward ([16,2051,3072] at Canon D
// on the speedrun batch); here each way is one pass over the tensors, with nothing saved but x.
// Each thread walks kRowsPerThread consecutive rows of V channels (V = 4: one vector load a row) with the three rows
// before (forward: x) or after (backward: dy) in registers, so every element is read about once: the first kernels
// took a thread per element, with three 64-bit divisions and four reads of x each, and ran at a fifth of the
// memory's bandwidth. dw is deterministic: each thread sums its rows in order, the block its 8 row groups in order
// (one partial per kCanonRowsPerPartial rows and channel), and a last pass sums the partials in order (no atomics).
// x is read as stored (In: float, or bf16 for a bf16-only activation: the normed input at A and C, the projections'
// outputs at B and D), and so is dy (the gradients that ReLU²'s and AttentionInputs' backward write in bf16 for the
// projections, at D and B); y is bf16 under bf16 matmul precision (Out: every position feeds a projection or an op
// that reads bf16), and so is dx where the kernel is told that x is a projection's output (Canon B and D: the
// projection's two gradient matmuls are its only readers, and they round it to bf16 anyway).
#include "canon_conv.h"

#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/rows.cuh"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

constexpr int kRowsPerThread = 32;                                    // consecutive rows one thread walks
constexpr int kRowGroups = kCanonRowsPerPartial / kRowsPerThread;      // a block's threads along rows (8)
constexpr int kChannelThreads = 32;                                   // a block's threads along channel vectors
static_assert(kRowGroups * kRowsPerThread == kCanonRowsPerPartial, "a block covers one partial's rows");
constexpr int kRowNormMaxThreads = kCanonRowNormMaxVectors;  // canonRowNormGradKernel: a thread a channel vector

// Channel c's weights as the kernels use them: 1 + w[c,3] (the residual and the current token's tap) and
// taps[s − 1] = w[c,3−s], multiplying the token s back.
struct CanonTaps {
  float self;
  float taps[3];
};

__device__ __forceinline__ CanonTaps canonTaps(const float* __restrict__ w, int64_t c) {
  const float4 wc = reinterpret_cast<const float4*>(w)[c];
  return {__fadd_rn(wc.w, 1.f), {wc.z, wc.y, wc.x}};
}

// The first row of a thread's rows and one past its last, in the grid both kernels share: blockIdx.x·32 + x the
// channel vector, (blockIdx.y·8 + y)·32 the first row.
__device__ __forceinline__ int firstRow() { return (int(blockIdx.y) * kRowGroups + int(threadIdx.y)) * kRowsPerThread; }

// The norm before the taps: none; Canon B's q and k heads (kHeadNorm: normGroup channels each among the first
// normChannels of a row, the lanes of one head normGroup / 4 consecutive lanes of a warp); or the whole row (kRowNorm:
// Canon A and C, rstd per row from rowRstdKernel). z = x·rstd, rstd = (mean x² + eps)^-½.
enum CanonNorm : int { kNoNorm = 0, kHeadNorm = 1, kRowNorm = 2 };

struct NormArgs {
  int channels, group;    // kHeadNorm: normChannels, normGroup
  float eps;
  const float* rowRstd;   // kRowNorm: [rows]
};

// rstd of each row of x [rows, C] for kRowNorm: a warp a row, coalesced over channels.
template <typename In>
__global__ void rowRstdKernel(const In* __restrict__ x, float* __restrict__ rstd, int rows, int C, float eps) {
  const int row = int(blockIdx.x) * (kThreads / 32) + int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (row >= rows) return;
  float ss = 0.f;
  for (int c = lane; c < C; c += 32) {
    const float v = toFloat(x[int64_t(row) * C + c]);
    ss += v * v;
  }
  for (int offset = 16; offset >= 1; offset >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, offset);
  if (lane == 0) rstd[row] = rsqrtf(ss / float(C) + eps);
}

// The sum of v over the lanes of the lane's head (group / 4 consecutive lanes). Always five shuffles, the unneeded ones
// not added: a loop bounded by the group (a runtime value) stays a loop, and its branches kept the unrolled rows' chains
// of dependent shuffles from overlapping (the normed kernels ran at half the plain ones' bandwidth). Every lane of the
// warp calls it.
__device__ __forceinline__ float headSum(float v, int group) {
  const int lanes = group / 4;
#pragma unroll
  for (int offset = 16; offset >= 1; offset >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, offset);
    v += offset < lanes ? other : 0.f;
  }
  return v;
}

// The sums of a and of b over the lanes of the lane's head, as headSum, the two chains interleaved. Every lane of the
// warp calls it.
__device__ __forceinline__ void headSums(float& a, float& b, int group) {
  const int lanes = group / 4;
#pragma unroll
  for (int offset = 16; offset >= 1; offset >>= 1) {
    const float otherA = __shfl_xor_sync(0xffffffffu, a, offset), otherB = __shfl_xor_sync(0xffffffffu, b, offset);
    a += offset < lanes ? otherA : 0.f;
    b += offset < lanes ? otherB : 0.f;
  }
}

// kHeadNorm's rstd of the lane's head, and 1 outside the normed channels. Every lane of the warp calls it (the
// shuffles), active or not.
__device__ __forceinline__ float headRstd(const float (&v)[4], bool normed, const NormArgs& norm) {
  const float ss = headSum(v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + v[3] * v[3], norm.group);
  return normed ? rsqrtf(ss / float(norm.group) + norm.eps) : 1.f;
}

// The block's dw: each thread's sums (sum[j][k]: tap k of its channel j) summed over the block's row groups in order in
// shared memory, one partial [4] per channel: partials[blockIdx.y][c]. Every thread of the block calls it.
template <int V>
__device__ __forceinline__ void writeBlockPartials(const float (&sum)[V][4], float* __restrict__ partials, int C) {
  __shared__ float4 blockSums[kRowGroups][kChannelThreads * V];  // [row group][channel of the block]
#pragma unroll
  for (int j = 0; j < V; ++j)
    blockSums[threadIdx.y][threadIdx.x * V + j] = make_float4(sum[j][0], sum[j][1], sum[j][2], sum[j][3]);
  __syncthreads();
  const int local = int(threadIdx.y) * kChannelThreads + int(threadIdx.x), c = int(blockIdx.x) * kChannelThreads * V + local;
  if (local < kChannelThreads * V && c < C) {
    float4 acc = blockSums[0][local];
    for (int g = 1; g < kRowGroups; ++g) {
      const float4 v = blockSums[g][local];
      acc = make_float4(acc.x + v.x, acc.y + v.y, acc.z + v.z, acc.w + v.w);
    }
    reinterpret_cast<float4*>(partials)[int64_t(blockIdx.y) * C + c] = acc;
  }
}

// The taps' sum in the composite's order, each product and sum rounded on its own (no FMA contraction):
// ((z·(1 + w3) + z₁·w2) + z₂·w1) + z₃·w0, z_s the token s back (0 where it does not count), so the fused
// forward equals the composite bit for bit (without the norm: z = x).
template <int V, int Norm, bool Relu2, typename In, typename Out>
__global__ void __launch_bounds__(kChannelThreads * kRowGroups)
    canonConvKernel(const In* __restrict__ x, const float* __restrict__ w, const int32_t* __restrict__ doc,
                    Out* __restrict__ y, int rows, int T, int C, NormArgs norm) {
  const int c0 = (int(blockIdx.x) * kChannelThreads + int(threadIdx.x)) * V, r0 = firstRow();
  constexpr bool Shuffles = Norm == kHeadNorm;  // every lane of the warp must take part
  const bool active = c0 < C, normed = Shuffles && c0 < norm.channels;  // the same across a head's lanes
  if (r0 >= rows || (!Shuffles && !active)) return;  // r0: the same across the warp
  const int r1 = min(r0 + kRowsPerThread, rows), cl = active ? c0 : C - V;  // cl: an inactive lane reads the last channels
  CanonTaps k[V];
#pragma unroll
  for (int j = 0; j < V; ++j) k[j] = canonTaps(w, cl + j);
  // Row r's input to the taps from its x: x, or x·rstd (a normed head, or the row: rowRstd, rowRstdAt(r)); 0 in an
  // inactive lane
  auto toInput = [&](float (&v)[V], float rowRstd) {
    if constexpr (Norm == kHeadNorm) {
#pragma unroll
      for (int j = 0; j < V; ++j) v[j] = active ? v[j] : 0.f;
      const float rstd = headRstd(v, normed, norm);
#pragma unroll
      for (int j = 0; j < V; ++j) v[j] *= rstd;
    } else if constexpr (Norm == kRowNorm) {
#pragma unroll
      for (int j = 0; j < V; ++j) v[j] *= rowRstd;
    }
  };
  auto rowRstdAt = [&](int r) { return Norm == kRowNorm ? norm.rowRstd[r] : 1.f; };
  auto input = [&](int r, float (&v)[V]) {
    loadVec<V>(x + int64_t(r) * C + cl, v);
    toInput(v, rowRstdAt(r));
  };
  // prev[s − 1]: the input of the row s back, prevDoc its document; counted where t ≥ s (the same sequence) and the
  // documents agree
  float prev[3][V];
  int prevDoc[3];
  int t = r0 % T;
#pragma unroll
  for (int s = 1; s <= 3; ++s) {
    prevDoc[s - 1] = 0;
#pragma unroll
    for (int j = 0; j < V; ++j) prev[s - 1][j] = 0.f;
    if (t >= s) {
      input(r0 - s, prev[s - 1]);
      prevDoc[s - 1] = doc[r0 - s];
    }
  }
  // x and its row's rstd are loaded a row ahead of their use, unconditionally (the last row again at the end), so that
  // no load waits behind the row before's norm or store (the document too took the plain kernels past 64 registers, to
  // 3 blocks an SM, and 9 % slower)
  float ahead[V], rstdAhead = rowRstdAt(r0);
  loadVec<V>(x + int64_t(r0) * C + cl, ahead);
#pragma unroll 4
  for (int r = r0; r < r1; ++r) {
    float cur[V], out[V];
#pragma unroll
    for (int j = 0; j < V; ++j) cur[j] = ahead[j];
    const float rstd = rstdAhead;
    const int d = doc[r], next = min(r + 1, rows - 1);
    loadVec<V>(x + int64_t(next) * C + cl, ahead);
    rstdAhead = rowRstdAt(next);
    toInput(cur, rstd);
    bool counts[3];
#pragma unroll
    for (int s = 1; s <= 3; ++s) counts[s - 1] = t >= s && prevDoc[s - 1] == d;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      float acc = __fmul_rn(cur[j], k[j].self);
#pragma unroll
      for (int s = 1; s <= 3; ++s) acc = __fadd_rn(acc, __fmul_rn(counts[s - 1] ? prev[s - 1][j] : 0.f, k[j].taps[s - 1]));
      out[j] = Relu2 ? (acc > 0.f ? __fmul_rn(acc, acc) : 0.f) : acc;  // Relu2: the MLP's relu(h)² after Canon D
    }
    if (active) storeVec<V>(y + int64_t(r) * C + c0, out);
#pragma unroll
    for (int j = 0; j < V; ++j) { prev[2][j] = prev[1][j]; prev[1][j] = prev[0][j]; prev[0][j] = cur[j]; }
    prevDoc[2] = prevDoc[1]; prevDoc[1] = prevDoc[0]; prevDoc[0] = d;
    if (++t == T) t = 0;
  }
}

// The rows around row r that both gradient kernels (canonConvGradKernel, canonRowNormGradKernel) read, a thread's V
// channels of each: z of the three rows before (prev[s − 1]: s back) and dy of the three after (next[s − 1]), their
// documents, dy of row r (g), r's document d and its position t in its sequence. The kernels load the first rows (each
// its own way: z needs the norm) and the rows ahead; this does the bookkeeping that is the same in both.
template <int V>
struct CanonGradRows {
  float prev[3][V] = {}, next[3][V] = {}, g[V];
  int prevDoc[3] = {}, nextDoc[3] = {}, d, t;
  bool before[3], after[3];  // whether row r − s and row r + s are in r's sequence and document

  __device__ __forceinline__ void see(int T) {
#pragma unroll
    for (int s = 1; s <= 3; ++s) {
      before[s - 1] = t >= s && prevDoc[s - 1] == d;
      after[s - 1] = t + s < T && nextDoc[s - 1] == d;
    }
  }
  // dz of channel j, the taps' gradient: dy of the row and of the three after
  __device__ __forceinline__ float dz(int j, const CanonTaps& k) const {
    float acc = g[j] * k.self;
#pragma unroll
    for (int s = 1; s <= 3; ++s)
      if (after[s - 1]) acc += next[s - 1][j] * k.taps[s - 1];
    return acc;
  }
  // dw's sums (sum[j][k]: tap k, the token 3 − k back): dy of the row times z of it (cur) and of the three before
  __device__ __forceinline__ void addDw(float (&sum)[V][4], const float (&cur)[V]) const {
#pragma unroll
    for (int j = 0; j < V; ++j) {
      sum[j][3] += g[j] * cur[j];
#pragma unroll
      for (int s = 1; s <= 3; ++s)
        if (before[s - 1]) sum[j][3 - s] += g[j] * prev[s - 1][j];
    }
  }
  // On to row r + 1: z of r (cur) becomes the row before, and dy of row r + 4 (ahead) and its document the last after.
  __device__ __forceinline__ void advance(const float (&cur)[V], const float (&ahead)[V], int aheadDoc, int T) {
#pragma unroll
    for (int j = 0; j < V; ++j) {
      prev[2][j] = prev[1][j]; prev[1][j] = prev[0][j]; prev[0][j] = cur[j];
      g[j] = next[0][j]; next[0][j] = next[1][j]; next[1][j] = next[2][j]; next[2][j] = ahead[j];
    }
    prevDoc[2] = prevDoc[1]; prevDoc[1] = prevDoc[0]; prevDoc[0] = d;
    d = nextDoc[0]; nextDoc[0] = nextDoc[1]; nextDoc[1] = nextDoc[2]; nextDoc[2] = aheadDoc;
    if (++t == T) t = 0;
  }
};

// dz of each row (the gradient of the taps' input) from dy of it and the three rows after (next[s − 1]: dy of the row s
// ahead, counted where t + s < T and the documents agree, but loaded wherever it exists: it becomes the row's own dy
// s rows later), and the row's products with the input of it and the three rows before for dw. dx = dz, or in a normed
// head rstd·(dz − z·mean(dz·z)) (rms_norm.cu's backward), rstd made again from the row (kRowNorm has its own kernel,
// canonRowNormGradKernel). The block sums its row groups' dw in order in shared memory and writes one partial [4] per
// channel: partials[blockIdx.y][c].
template <int V, int Norm, typename InDy, typename In, typename OutDx>
__global__ void __launch_bounds__(kChannelThreads * kRowGroups)
    canonConvGradKernel(const InDy* __restrict__ dy, const In* __restrict__ x, const float* __restrict__ w,
                        const int32_t* __restrict__ doc, OutDx* __restrict__ dx, float* __restrict__ partials, int rows,
                        int T, int C, NormArgs norm) {
  const int c0 = (int(blockIdx.x) * kChannelThreads + int(threadIdx.x)) * V, r0 = firstRow();
  static_assert(Norm != kRowNorm, "the row norm's gradient is canonRowNormGradKernel's");
  constexpr bool Shuffles = Norm == kHeadNorm;  // every lane of the warp must take part
  const bool active = c0 < C, normed = Shuffles && c0 < norm.channels;
  float sum[V][4] = {};  // sum[j][k]: tap k (the token 3 − k back) of channel c0 + j
  if (r0 < rows && (Shuffles || active)) {  // r0: the same across the warp
    const int r1 = min(r0 + kRowsPerThread, rows), cl = active ? c0 : C - V;  // cl: an inactive lane reads the last channels
    CanonTaps k[V];
#pragma unroll
    for (int j = 0; j < V; ++j) k[j] = canonTaps(w, cl + j);
    // Row r's input to the taps z (x, or x·rstd in a normed head) and rstd; 0 in an inactive lane (its dy too). The loads
    // are unconditional (no branch around them): the loads of the unrolled rows issue together.
    auto toInput = [&](float (&v)[V]) {
      float rstd = 1.f;
      if constexpr (Norm == kHeadNorm) {
#pragma unroll
        for (int j = 0; j < V; ++j) v[j] = active ? v[j] : 0.f;
        rstd = headRstd(v, normed, norm);
#pragma unroll
        for (int j = 0; j < V; ++j) v[j] *= rstd;
      }
      return rstd;
    };
    auto input = [&](int r, float (&v)[V]) {
      loadVec<V>(x + int64_t(r) * C + cl, v);
      toInput(v);
    };
    auto gradient = [&](int r, float (&v)[V]) {
      loadVec<V>(dy + int64_t(r) * C + cl, v);
      if constexpr (Shuffles) {
#pragma unroll
        for (int j = 0; j < V; ++j) v[j] = active ? v[j] : 0.f;
      }
    };
    CanonGradRows<V> around;
    around.t = r0 % T;
#pragma unroll
    for (int s = 1; s <= 3; ++s) {
      if (around.t >= s) {
        input(r0 - s, around.prev[s - 1]);
        around.prevDoc[s - 1] = doc[r0 - s];
      }
      if (r0 + s < rows) {
        gradient(r0 + s, around.next[s - 1]);
        around.nextDoc[s - 1] = doc[r0 + s];
      }
    }
    // x is loaded a row ahead of its use (as in the forward), dy and the documents four rows ahead (clamped to the last
    // row: a row past the last is in no later position of the sequence, so never counted)
    float xAhead[V];
    around.d = doc[r0];
    gradient(r0, around.g);
    loadVec<V>(x + int64_t(r0) * C + cl, xAhead);
#pragma unroll 4
    for (int r = r0; r < r1; ++r) {
      float cur[V], ahead[V], out[V];
#pragma unroll
      for (int j = 0; j < V; ++j) cur[j] = xAhead[j];
      const int next1 = min(r + 1, rows - 1), next4 = min(r + 4, rows - 1);
      loadVec<V>(x + int64_t(next1) * C + cl, xAhead);
      gradient(next4, ahead);  // dy of the row 4 ahead: the next row's next[2]
      const int aheadDoc = doc[next4];
      around.see(T);
#pragma unroll
      for (int j = 0; j < V; ++j) out[j] = around.dz(j, k[j]);  // no norm in dz
      // A normed head: z = x·rstd, and dx = rstd·(dz − z·mean(dz·z)) with mean(dz·z) = rstd·Σdz·x / group, so the head's
      // Σx² and Σdz·x are two independent shuffle chains, run side by side (z first and Σdz·z after it made them one
      // chain twice as long: the normed kernel ran at half the plain one's bandwidth)
      float rstd = 1.f, dzx = 0.f;
      if constexpr (Norm == kHeadNorm) {
        float ss = 0.f;
#pragma unroll
        for (int j = 0; j < V; ++j) {
          cur[j] = active ? cur[j] : 0.f;
          ss += cur[j] * cur[j];
          dzx += out[j] * cur[j];
        }
        headSums(ss, dzx, norm.group);
        if (normed) rstd = rsqrtf(ss / float(norm.group) + norm.eps);
#pragma unroll
        for (int j = 0; j < V; ++j) cur[j] *= rstd;
      }
      around.addDw(sum, cur);
      if constexpr (Norm == kHeadNorm) {  // through the head's norm
        if (normed) {
          const float mean = rstd * dzx / float(norm.group);
#pragma unroll
          for (int j = 0; j < V; ++j) out[j] = rstd * (out[j] - cur[j] * mean);
        }
      }
      if (active) storeVec<V>(dx + int64_t(r) * C + c0, out);
      around.advance(cur, ahead, aheadDoc, T);
    }
  }
  writeBlockPartials<V>(sum, partials, C);
}

// Canon A and C's gradient (kRowNorm): whole rows a block, kCanonRowNormRows of them, a thread V channels of each. dz, the
// taps' gradient, as canonConvGradKernel makes it; then the row's Σx² and Σdz·x over the block (warp sums, then the
// warps' in order in shared memory: one barrier a row) give rstd = (Σx²/C + eps)^-½ and dx = rstd·dz − x·rstd³·Σdz·x/C
// (rms_norm.cu's backward), plus acc (x's gradient so far: the residual's) where given, and dx's bf16 copy where twin is
// given. dw from z = x·rstd of the row and the three before (their rstd from the same sums, before the first row). The
// block's dw goes to partials[blockIdx.x][c], summed in two ordered passes after (canonPartialSumsKernel).
// What this replaces: an rstd pass over x, dz written and read back, and RMSNormGrad's pass over dz, x and acc.
template <int V, typename InDy, typename In>
__global__ void __launch_bounds__(kRowNormMaxThreads)
    canonRowNormGradKernel(const InDy* __restrict__ dy, const In* __restrict__ x, const float* __restrict__ w,
                           const int32_t* __restrict__ doc, const float* __restrict__ acc, float* __restrict__ dx,
                           __nv_bfloat16* __restrict__ twin, float* __restrict__ partials, int rows, int T, int C, float eps) {
  __shared__ float2 rowSumsOf[2][kRowNormMaxThreads / 32];  // per warp (Σx², Σdz·x); two rows' worth: one barrier a row
  const int c0 = int(threadIdx.x) * V, warp = int(threadIdx.x) / 32, warps = int(blockDim.x) / 32;
  const int r0 = int(blockIdx.x) * kCanonRowNormRows, r1 = min(r0 + kCanonRowNormRows, rows);
  const bool active = c0 < C;
  const int cl = active ? c0 : C - V;  // an inactive lane reads the last channels and zeroes them
  CanonTaps k[V];
#pragma unroll
  for (int j = 0; j < V; ++j) k[j] = canonTaps(w, cl + j);
  int parity = 0;
  // (Σ a, Σ b) over the row's channels, in every thread: all of the block's threads call it, for the same row
  auto rowSums = [&](float a, float b) {
    a = warpSum(a);
    b = warpSum(b);
    if ((threadIdx.x & 31) == 0) rowSumsOf[parity][warp] = make_float2(a, b);
    __syncthreads();
    float2 total = rowSumsOf[parity][0];
    for (int i = 1; i < warps; ++i) total = make_float2(total.x + rowSumsOf[parity][i].x, total.y + rowSumsOf[parity][i].y);
    parity ^= 1;
    return total;
  };
  auto load = [&](const auto* p, int r, float (&v)[V]) {
    loadVec<V>(p + int64_t(r) * C + cl, v);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = active ? v[j] : 0.f;
  };
  auto squares = [&](const float (&v)[V]) {
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < V; ++j) ss += v[j] * v[j];
    return ss;
  };
  const float invC = 1.f / float(C);
  // z of the three rows before r0 (prev[s − 1]: s back) where they are in the sequence: rstd from their sums too (the
  // condition is the block's: the same rows for every thread)
  CanonGradRows<V> around;
  around.t = r0 % T;
#pragma unroll
  for (int s = 1; s <= 3; ++s) {
    if (around.t >= s) {
      load(x, r0 - s, around.prev[s - 1]);
      const float rstd = rsqrtf(rowSums(squares(around.prev[s - 1]), 0.f).x * invC + eps);
#pragma unroll
      for (int j = 0; j < V; ++j) around.prev[s - 1][j] *= rstd;
      around.prevDoc[s - 1] = doc[r0 - s];
    }
    if (r0 + s < rows) {
      load(dy, r0 + s, around.next[s - 1]);
      around.nextDoc[s - 1] = doc[r0 + s];
    }
  }
  float sum[V][4] = {};  // sum[j][k]: tap k (the token 3 − k back) of channel c0 + j
  // x and acc are loaded a row ahead of their use, dy four rows ahead (as canonConvGradKernel): the row's barrier would
  // otherwise wait for a load issued in the same row
  float xAhead[V], accAhead[V] = {};
  around.d = doc[r0];
  load(dy, r0, around.g);
  load(x, r0, xAhead);
  if (acc) load(acc, r0, accAhead);
  for (int r = r0; r < r1; ++r) {
    float cur[V], ahead[V], a[V], dz[V];
#pragma unroll
    for (int j = 0; j < V; ++j) { cur[j] = xAhead[j]; a[j] = accAhead[j]; }
    const int next1 = min(r + 1, rows - 1), next4 = min(r + 4, rows - 1);
    load(x, next1, xAhead);
    if (acc) load(acc, next1, accAhead);
    load(dy, next4, ahead);  // dy of the row 4 ahead: the next row's next[2]
    const int aheadDoc = doc[next4];
    around.see(T);
    float dot = 0.f;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      dz[j] = around.dz(j, k[j]);
      dot += dz[j] * cur[j];
    }
    const float2 total = rowSums(squares(cur), dot);
    const float rstd = rsqrtf(total.x * invC + eps), c = rstd * rstd * rstd * total.y * invC;
    float out[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      out[j] = rstd * dz[j] - c * cur[j] + a[j];
      cur[j] *= rstd;  // z, for dw and the rows after
    }
    around.addDw(sum, cur);
    if (active) {
      storeVec<V>(dx + int64_t(r) * C + c0, out);
      if (twin) storeVec<V>(twin + int64_t(r) * C + c0, out);  // the copy a bf16 matmul reads (toBf16's rounding)
    }
    around.advance(cur, ahead, aheadDoc, T);
  }
  if (active) {
#pragma unroll
    for (int j = 0; j < V; ++j)
      reinterpret_cast<float4*>(partials)[int64_t(blockIdx.x) * C + c0 + j] = make_float4(sum[j][0], sum[j][1], sum[j][2], sum[j][3]);
  }
}

// The first of dw's two ordered passes over many partials (canonRowNormGradKernel's, one a block of kCanonRowNormRows rows):
// out[group][i] = Σ of partials[chunk][i] over the group's kCanonPartialsPerGroup chunks, in order (i over C·4 values).
__global__ void canonPartialSumsKernel(const float* __restrict__ partials, float* __restrict__ out, int64_t chunks, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, first = int64_t(blockIdx.y) * kCanonPartialsPerGroup;
  if (i >= n) return;
  const int64_t last = min(first + kCanonPartialsPerGroup, chunks);
  float total = 0.f;
  for (int64_t chunk = first; chunk < last; ++chunk) total += partials[chunk * n + i];
  out[int64_t(blockIdx.y) * n + i] = total;
}

// Canon D with the MLP's relu² (Relu2): the gradient from dy, the gradient of relu(h)² with h = the conv of x, which is
// made again here from x (as the forward did, bit for bit, so ReLU's signs agree). g = dy·2·relu(h) is the conv's
// gradient; a row's dx needs g of it and the three rows after, so the thread keeps x of rows r − 3 … r + 4 (xs[q]: row
// r − 3 + q) and g of rows r … r + 3 in registers: each row's x and dy are read once, h and g made once. x and dy are
// loaded a row ahead of their use (dy of row r + 5 waits in dyAhead). Two blocks an SM (at most 128 registers): at the
// 160 it took on its own, one block of 8 warps left too few loads in flight.
template <int V, typename InDy, typename In, typename OutDx>
__global__ void __launch_bounds__(kChannelThreads * kRowGroups, 2)
    canonRelu2GradKernel(const InDy* __restrict__ dy, const In* __restrict__ x, const float* __restrict__ w,
                         const int32_t* __restrict__ doc, OutDx* __restrict__ dx, float* __restrict__ partials, int rows,
                         int T, int C) {
  const int c0 = (int(blockIdx.x) * kChannelThreads + int(threadIdx.x)) * V, r0 = firstRow();
  float sum[V][4] = {};  // sum[j][k]: tap k (the token 3 − k back) of channel c0 + j
  if (r0 < rows && c0 < C) {
    const int r1 = min(r0 + kRowsPerThread, rows);
    CanonTaps k[V];
#pragma unroll
    for (int j = 0; j < V; ++j) k[j] = canonTaps(w, c0 + j);
    // Rows r − 3 … r + 4: x, document, position in its sequence (−1: outside the tensor, never counted)
    float xs[8][V];
    int docs[8], ts[8];
    auto loadRow = [&](int q, int row) {
      const bool inside = row >= 0 && row < rows;
      const int at = inside ? row : 0;
      loadVec<V>(x + int64_t(at) * C + c0, xs[q]);
      docs[q] = doc[at];
      ts[q] = inside ? row % T : -1;
    };
    auto loadDy = [&](int row, float (&d)[V]) { loadVec<V>(dy + int64_t(min(row, rows - 1)) * C + c0, d); };
    // h = the conv at slot q (its taps: slots q − 3 … q), as canonConvKernel rounds it, and g = dy·2·relu(h) of that row
    // (d: its dy; 0 past the last row, whose g is never read)
    auto reluGrad = [&](int q, const float (&d)[V], float (&g)[V]) {
#pragma unroll
      for (int j = 0; j < V; ++j) {
        float h = __fmul_rn(xs[q][j], k[j].self);
#pragma unroll
        for (int s = 1; s <= 3; ++s) {
          const bool counts = ts[q] >= s && docs[q - s] == docs[q];
          h = __fadd_rn(h, __fmul_rn(counts ? xs[q - s][j] : 0.f, k[j].taps[s - 1]));
        }
        g[j] = h > 0.f && ts[q] >= 0 ? d[j] * 2.f * h : 0.f;
      }
    };
#pragma unroll
    for (int q = 0; q < 8; ++q) loadRow(q, r0 - 3 + q);
    float gs[4][V], dyAhead[V];  // g of rows r … r + 3; dy of row r + 4
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      loadDy(r0 + q, dyAhead);
      reluGrad(3 + q, dyAhead, gs[q]);
    }
    loadDy(r0 + 4, dyAhead);
#pragma unroll 1
    for (int r = r0; r < r1; ++r) {
      // slot 3 is row r; dx from g of rows r … r + 3, dw from g of row r and x of rows r − 3 … r
      float out[V];
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const float g = gs[0][j];
        float acc = g * k[j].self;
        sum[j][3] += g * xs[3][j];
#pragma unroll
        for (int s = 1; s <= 3; ++s) {
          if (ts[3 + s] == ts[3] + s && docs[3 + s] == docs[3]) acc += gs[s][j] * k[j].taps[s - 1];
          if (ts[3] >= s && docs[3 - s] == docs[3]) sum[j][3 - s] += g * xs[3 - s][j];
        }
        out[j] = acc;
      }
      storeVec<V>(dx + int64_t(r) * C + c0, out);
      // shift: slots hold rows r − 2 … r + 5; then g of row r + 4 (slot 6: its taps, slots 3 … 5, are there)
#pragma unroll
      for (int q = 0; q < 7; ++q) {
#pragma unroll
        for (int j = 0; j < V; ++j) xs[q][j] = xs[q + 1][j];
        docs[q] = docs[q + 1];
        ts[q] = ts[q + 1];
      }
      float d[V];
#pragma unroll
      for (int j = 0; j < V; ++j) d[j] = dyAhead[j];
      loadRow(7, r + 5);
      loadDy(r + 5, dyAhead);
#pragma unroll
      for (int q = 0; q < 3; ++q) {
#pragma unroll
        for (int j = 0; j < V; ++j) gs[q][j] = gs[q + 1][j];
      }
      reluGrad(6, d, gs[3]);
    }
  }
  writeBlockPartials<V>(sum, partials, C);
}

__global__ void canonConvGradWSumKernel(const float* __restrict__ partials, float* __restrict__ dw, int64_t chunks, int64_t C) {
  TSGPT_GRID_STRIDE(i, C * 4) {
    float acc = 0.f;
    for (int64_t k = 0; k < chunks; ++k) acc += partials[k * C * 4 + i];
    dw[i] = acc;
  }
}

// The grid of both kernels: blocks of 32 channel vectors × 8 row groups of kRowsPerThread rows.
dim3 canonGrid(int64_t rows, int64_t C, int V) {
  const int64_t vectors = (C + V - 1) / V;
  return dim3(unsigned((vectors + kChannelThreads - 1) / kChannelThreads), unsigned((rows + kCanonRowsPerPartial - 1) / kCanonRowsPerPartial));
}

// Calls f(width, norm) with V = 4 where every row of C channels starts 16-byte aligned in each tensor (C a multiple of
// 4, the pointers aligned), else V = 1, and the norm as a type: kHeadNorm (normChannels > 0) needs V = 4 and a head of
// 4 to 128 channels, a power of two (its lanes within a warp); kRowNorm (rowNorm) any C, not with a head norm. An
// unsupported norm is an invalid value.
template <typename F>
cudaError_t byCanonVariant(int64_t C, const NormArgs& norm, bool rowNorm, std::initializer_list<const void*> ptrs, F f) {
  using Four = std::integral_constant<int, 4>;
  using One = std::integral_constant<int, 1>;
  const bool vec4 = C % 4 == 0 && aligned16(ptrs);
  if (norm.channels > 0) {
    const bool headFits = norm.group >= 4 && norm.group <= 4 * kChannelThreads && (norm.group & (norm.group - 1)) == 0;
    if (!vec4 || !headFits || rowNorm || norm.channels % norm.group != 0 || norm.channels > C) return cudaErrorInvalidValue;
    f(Four{}, std::integral_constant<int, kHeadNorm>{});
  } else if (rowNorm) {
    if (vec4) f(Four{}, std::integral_constant<int, kRowNorm>{});
    else f(One{}, std::integral_constant<int, kRowNorm>{});
  } else if (vec4) {
    f(Four{}, std::integral_constant<int, kNoNorm>{});
  } else {
    f(One{}, std::integral_constant<int, kNoNorm>{});
  }
  return cudaGetLastError();
}

// kRowNorm's rstd of every row into the scratch `rstd` (the caller's: [rows] floats).
void launchRowRstd(cudaStream_t s, const void* x, bool xBf16, float* rstd, int64_t rows, int64_t C, float eps) {
  const unsigned blocks = unsigned((rows + kThreads / 32 - 1) / (kThreads / 32));
  byInputType(x, xBf16, [&](auto* in) { rowRstdKernel<<<blocks, kThreads, 0, s>>>(in, rstd, int(rows), int(C), eps); });
}

}  // namespace

cudaError_t launchCanonConv(cudaStream_t s, const void* x, bool xBf16, const float* w, const int32_t* docIds, void* y,
                            bool yBf16, int64_t B, int64_t T, int64_t C, int64_t normChannels, int64_t normGroup, float eps,
                            bool rowNorm, float* rowRstd, bool relu2) {
  const int64_t rows = B * T;
  if (rows * C == 0) return cudaSuccess;
  if ((rowNorm && rowRstd == nullptr) || (relu2 && (rowNorm || normChannels > 0))) return cudaErrorInvalidValue;
  const dim3 block(kChannelThreads, kRowGroups);
  const NormArgs norm{int(normChannels), int(normGroup), eps, rowRstd};
  if (rowNorm) launchRowRstd(s, x, xBf16, rowRstd, rows, C, eps);
  return byCanonVariant(C, norm, rowNorm, {x, y}, [&](auto width, auto normKind) {
    constexpr int V = decltype(width)::value;
    constexpr int N = decltype(normKind)::value;
    auto launch = [&](auto* in, auto* out) {
      if constexpr (N == kNoNorm) {
        if (relu2) {
          canonConvKernel<V, N, true><<<canonGrid(rows, C, V), block, 0, s>>>(in, w, docIds, out, int(rows), int(T), int(C), norm);
          return;
        }
      }
      canonConvKernel<V, N, false><<<canonGrid(rows, C, V), block, 0, s>>>(in, w, docIds, out, int(rows), int(T), int(C), norm);
    };
    byInputType(x, xBf16, [&](auto* in) {
      if (yBf16) launch(in, static_cast<__nv_bfloat16*>(y));
      else launch(in, static_cast<float*>(y));
    });
  });
}

cudaError_t launchCanonConvGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* x, bool xBf16, const float* w,
                                const int32_t* docIds, void* dx, bool dxBf16, float* dw, float* partials, int64_t B, int64_t T, int64_t C,
                                int64_t normChannels, int64_t normGroup, float eps, bool rowNorm, const float* accumulated,
                                __nv_bfloat16* dxTwin, bool relu2) {
  const int64_t rows = B * T, n = rows * C;
  if (C == 0) return cudaSuccess;
  if (n == 0) return cudaMemsetAsync(dw, 0, C * 4 * sizeof(float), s);  // no rows: dw = 0
  if ((relu2 && (rowNorm || normChannels > 0)) || ((accumulated || dxTwin) && !rowNorm)) return cudaErrorInvalidValue;
  if (rowNorm) {
    // whole rows a block: C / 4 threads (C / 1 where rows are not 16-byte aligned), up to kCanonRowNormMaxVectors
    const bool vec4 = C % 4 == 0 && aligned16({dy, x, dx, accumulated, dxTwin});
    const int64_t vectors = vec4 ? C / 4 : C;
    if (normChannels > 0 || dxBf16 || vectors > kCanonRowNormMaxVectors || rows > INT32_MAX) return cudaErrorInvalidValue;
    const int64_t chunks = (rows + kCanonRowNormRows - 1) / kCanonRowNormRows, groups = (chunks + kCanonPartialsPerGroup - 1) / kCanonPartialsPerGroup;
    const unsigned threads = unsigned((vectors + 31) / 32 * 32);
    byInputType(dy, dyBf16, [&](auto* g) {
      byInputType(x, xBf16, [&](auto* in) {
        if (vec4) canonRowNormGradKernel<4><<<unsigned(chunks), threads, 0, s>>>(g, in, w, docIds, accumulated, static_cast<float*>(dx), dxTwin,
                                                                                  partials, int(rows), int(T), int(C), eps);
        else canonRowNormGradKernel<1><<<unsigned(chunks), threads, 0, s>>>(g, in, w, docIds, accumulated, static_cast<float*>(dx), dxTwin,
                                                                             partials, int(rows), int(T), int(C), eps);
      });
    });
    // dw: the chunks' partials summed in groups, then the groups, each in order
    float* grouped = partials + chunks * C * 4;
    canonPartialSumsKernel<<<dim3(unsigned((C * 4 + kThreads - 1) / kThreads), unsigned(groups)), kThreads, 0, s>>>(partials, grouped, chunks, C * 4);
    canonConvGradWSumKernel<<<gridFor(C * 4), kThreads, 0, s>>>(grouped, dw, groups, C);
    return cudaGetLastError();
  }
  const int64_t chunks = (rows + kCanonRowsPerPartial - 1) / kCanonRowsPerPartial;
  const dim3 block(kChannelThreads, kRowGroups);
  const NormArgs norm{int(normChannels), int(normGroup), eps, nullptr};
  const cudaError_t launched = byCanonVariant(C, norm, false, {dy, x, dx}, [&](auto width, auto normKind) {
    constexpr int V = decltype(width)::value;
    constexpr int N = decltype(normKind)::value;
    auto launch = [&](auto* g, auto* in, auto* out) {
      if constexpr (N == kNoNorm) {
        if (relu2) {
          canonRelu2GradKernel<V><<<canonGrid(rows, C, V), block, 0, s>>>(g, in, w, docIds, out, partials, int(rows), int(T), int(C));
          return;
        }
      }
      if constexpr (N != kRowNorm) canonConvGradKernel<V, N><<<canonGrid(rows, C, V), block, 0, s>>>(g, in, w, docIds, out, partials, int(rows), int(T), int(C), norm);
    };
    byInputType(dy, dyBf16, [&](auto* g) {
      byInputType(x, xBf16, [&](auto* in) {
        if (dxBf16) launch(g, in, static_cast<__nv_bfloat16*>(dx));
        else launch(g, in, static_cast<float*>(dx));
      });
    });
  });
  if (launched != cudaSuccess) return launched;
  canonConvGradWSumKernel<<<gridFor(C * 4), kThreads, 0, s>>>(partials, dw, chunks, C);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(canonConv, launchCanonConv, "x", "xBf16", "w", "docIds", "y", "yBf16", "B", "T", "C", "normChannels", "normGroup", "eps",
               "rowNorm", "rowRstd", "relu2");
TSGPT_LAUNCHER(canonConvGrad, launchCanonConvGrad, "dy", "dyBf16", "x", "xBf16", "w", "docIds", "dx", "dxBf16", "dw", "partials", "B", "T", "C",
               "normChannels", "normGroup", "eps", "rowNorm", "accumulated", "dxTwin", "relu2");

}  // namespace tsgpt
