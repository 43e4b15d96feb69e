// Fused Canon layer (Allen-Zhu, Physics of LMs 4.1; train_gpt.ts's canon()): a causal depthwise convolution of
// kernel 4 with its residual, per document, forward and backward. Rows r = b·T + t of C channels; tap k of
// channel c multiplies the token 3 − k steps back, and a tap that would read before the sequence or into
// another document reads zero:
//   forward:  y[r,c]  = x[r,c]·(1 + w[c,3]) + Σ_{s=1..3} w[c,3−s]·x[r−s,c]·same(r, r−s)
//   backward: dx[r,c] = dy[r,c]·(1 + w[c,3]) + Σ_{s=1..3} w[c,3−s]·dy[r+s,c]·same(r+s, r)
//             dw[c,3−s] = Σ_r dy[r,c]·x[r−s,c]·same(r, r−s)   (s = 0: the residual's tap, always counted)
// same(r, q): q is in the same sequence (t ≥ s, resp. t + s < T) and docIds[q] = docIds[r].
// The composite pads x three times and keeps the padded copies for its backward ([16,2051,3072] at Canon D
// on the speedrun batch); here each way is one pass over the tensors, with nothing saved but x.
// Each thread walks kRowsPerThread consecutive rows of V channels (V = 4: one vector load a row) with the three rows
// before (forward: x) or after (backward: dy) in registers, so every element is read about once: the first kernels
// took a thread per element, with three 64-bit divisions and four reads of x each, and ran at a fifth of the
// memory's bandwidth. dw is deterministic: each thread sums its rows in order, the block its 8 row groups in order
// (one partial per kCanonRowsPerPartial rows and channel), and a last pass sums the partials in order (no atomics). x is read as stored (In: float, or bf16 for a bf16-only activation:
// the normed input at A and C, the up projection's output at D), and so is dy (the gradients that ReLU²'s and
// AttentionInputs' backward write in bf16 for the projections, at D and B); y is bf16 under bf16 matmul precision (Out: every
// position feeds a projection or an op that reads bf16).
#include "canon_conv.h"

#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

constexpr int kRowsPerThread = 32;                                    // consecutive rows one thread walks
constexpr int kRowGroups = kCanonRowsPerPartial / kRowsPerThread;      // a block's threads along rows (8)
constexpr int kChannelThreads = 32;                                   // a block's threads along channel vectors
static_assert(kRowGroups * kRowsPerThread == kCanonRowsPerPartial, "a block covers one partial's rows");

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

// The taps' sum in the composite's order, each product and sum rounded on its own (no FMA contraction):
// ((x·(1 + w3) + x₁·w2) + x₂·w1) + x₃·w0, x_s the token s back (0 where it does not count), so the fused
// forward equals the composite bit for bit.
template <int V, typename In, typename Out>
__global__ void __launch_bounds__(kChannelThreads * kRowGroups)
    canonConvKernel(const In* __restrict__ x, const float* __restrict__ w, const int32_t* __restrict__ doc,
                    Out* __restrict__ y, int rows, int T, int C) {
  const int c0 = (int(blockIdx.x) * kChannelThreads + int(threadIdx.x)) * V, r0 = firstRow();
  if (c0 >= C || r0 >= rows) return;
  const int r1 = min(r0 + kRowsPerThread, rows);
  CanonTaps k[V];
#pragma unroll
  for (int j = 0; j < V; ++j) k[j] = canonTaps(w, c0 + j);
  // prev[s − 1]: x of the row s back, prevDoc its document; counted where t ≥ s (the same sequence) and the documents agree
  float prev[3][V];
  int prevDoc[3];
  int t = r0 % T;
#pragma unroll
  for (int s = 1; s <= 3; ++s) {
    prevDoc[s - 1] = 0;
#pragma unroll
    for (int j = 0; j < V; ++j) prev[s - 1][j] = 0.f;
    if (t >= s) {
      loadVec<V>(x + int64_t(r0 - s) * C + c0, prev[s - 1]);
      prevDoc[s - 1] = doc[r0 - s];
    }
  }
#pragma unroll 4
  for (int r = r0; r < r1; ++r) {
    float cur[V], out[V];
    loadVec<V>(x + int64_t(r) * C + c0, cur);
    const int d = doc[r];
    bool counts[3];
#pragma unroll
    for (int s = 1; s <= 3; ++s) counts[s - 1] = t >= s && prevDoc[s - 1] == d;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      float acc = __fmul_rn(cur[j], k[j].self);
#pragma unroll
      for (int s = 1; s <= 3; ++s) acc = __fadd_rn(acc, __fmul_rn(counts[s - 1] ? prev[s - 1][j] : 0.f, k[j].taps[s - 1]));
      out[j] = acc;
    }
    storeVec<V>(y + int64_t(r) * C + c0, out);
#pragma unroll
    for (int j = 0; j < V; ++j) { prev[2][j] = prev[1][j]; prev[1][j] = prev[0][j]; prev[0][j] = cur[j]; }
    prevDoc[2] = prevDoc[1]; prevDoc[1] = prevDoc[0]; prevDoc[0] = d;
    if (++t == T) t = 0;
  }
}

// dx of each row from dy of it and the three rows after (next[s − 1]: dy of the row s ahead, counted where t + s < T
// and the documents agree), and the row's products with x of it and the three rows before for dw. The block sums
// its row groups' dw in order in shared memory and writes one partial [4] per channel: partials[blockIdx.y][c].
template <int V, typename InDy, typename In>
__global__ void __launch_bounds__(kChannelThreads * kRowGroups)
    canonConvGradKernel(const InDy* __restrict__ dy, const In* __restrict__ x, const float* __restrict__ w,
                        const int32_t* __restrict__ doc, float* __restrict__ dx, float* __restrict__ partials, int rows,
                        int T, int C) {
  __shared__ float4 blockSums[kRowGroups][kChannelThreads * V];  // [row group][channel of the block]: dw's 4 taps
  const int c0 = (int(blockIdx.x) * kChannelThreads + int(threadIdx.x)) * V, r0 = firstRow();
  float sum[V][4] = {};  // sum[j][k]: tap k (the token 3 − k back) of channel c0 + j
  if (c0 < C && r0 < rows) {
    const int r1 = min(r0 + kRowsPerThread, rows);
    CanonTaps k[V];
#pragma unroll
    for (int j = 0; j < V; ++j) k[j] = canonTaps(w, c0 + j);
    float prev[3][V] = {}, next[3][V] = {};
    int prevDoc[3] = {}, nextDoc[3] = {};
    int t = r0 % T;
#pragma unroll
    for (int s = 1; s <= 3; ++s) {
      if (t >= s) {
        loadVec<V>(x + int64_t(r0 - s) * C + c0, prev[s - 1]);
        prevDoc[s - 1] = doc[r0 - s];
      }
      if (t + s < T) {
        loadVec<V>(dy + int64_t(r0 + s) * C + c0, next[s - 1]);
        nextDoc[s - 1] = doc[r0 + s];
      }
    }
    float g[V];
    loadVec<V>(dy + int64_t(r0) * C + c0, g);
#pragma unroll 4
    for (int r = r0; r < r1; ++r) {
      float cur[V], ahead[V] = {}, out[V];
      loadVec<V>(x + int64_t(r) * C + c0, cur);
      int aheadDoc = 0;
      if (t + 4 < T) {  // dy of the row 4 ahead: the next row's next[2]
        loadVec<V>(dy + int64_t(r + 4) * C + c0, ahead);
        aheadDoc = doc[r + 4];
      }
      const int d = doc[r];
      bool before[3], after[3];
#pragma unroll
      for (int s = 1; s <= 3; ++s) {
        before[s - 1] = t >= s && prevDoc[s - 1] == d;
        after[s - 1] = t + s < T && nextDoc[s - 1] == d;
      }
#pragma unroll
      for (int j = 0; j < V; ++j) {
        float acc = g[j] * k[j].self;
        sum[j][3] += g[j] * cur[j];
#pragma unroll
        for (int s = 1; s <= 3; ++s) {
          if (after[s - 1]) acc += next[s - 1][j] * k[j].taps[s - 1];
          if (before[s - 1]) sum[j][3 - s] += g[j] * prev[s - 1][j];
        }
        out[j] = acc;
      }
      storeVec<V>(dx + int64_t(r) * C + c0, out);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        prev[2][j] = prev[1][j]; prev[1][j] = prev[0][j]; prev[0][j] = cur[j];
        g[j] = next[0][j]; next[0][j] = next[1][j]; next[1][j] = next[2][j]; next[2][j] = ahead[j];
      }
      prevDoc[2] = prevDoc[1]; prevDoc[1] = prevDoc[0]; prevDoc[0] = d;
      nextDoc[0] = nextDoc[1]; nextDoc[1] = nextDoc[2]; nextDoc[2] = aheadDoc;
      if (++t == T) t = 0;
    }
  }
#pragma unroll
  for (int j = 0; j < V; ++j)
    blockSums[threadIdx.y][threadIdx.x * V + j] = make_float4(sum[j][0], sum[j][1], sum[j][2], sum[j][3]);
  __syncthreads();
  // The block's channels, one a thread: its row groups' sums in order
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

// Calls f(width) with V = 4 where every row of C channels starts 16-byte aligned in each tensor (C a multiple of 4,
// the pointers aligned), else V = 1.
template <typename F>
void byCanonWidth(int64_t C, std::initializer_list<const void*> ptrs, F f) {
  if (C % 4 == 0 && aligned16(ptrs)) f(std::integral_constant<int, 4>{});
  else f(std::integral_constant<int, 1>{});
}

}  // namespace

cudaError_t launchCanonConv(cudaStream_t s, const void* x, bool xBf16, const float* w, const int32_t* docIds, void* y,
                            bool yBf16, int64_t B, int64_t T, int64_t C) {
  const int64_t rows = B * T;
  if (rows * C == 0) return cudaSuccess;
  const dim3 block(kChannelThreads, kRowGroups);
  byCanonWidth(C, {x, y}, [&](auto width) {
    constexpr int V = decltype(width)::value;
    byInputType(x, xBf16, [&](auto* in) {
      if (yBf16) canonConvKernel<V><<<canonGrid(rows, C, V), block, 0, s>>>(in, w, docIds, static_cast<__nv_bfloat16*>(y), int(rows), int(T), int(C));
      else canonConvKernel<V><<<canonGrid(rows, C, V), block, 0, s>>>(in, w, docIds, static_cast<float*>(y), int(rows), int(T), int(C));
    });
  });
  return cudaGetLastError();
}

cudaError_t launchCanonConvGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* x, bool xBf16, const float* w,
                                const int32_t* docIds, float* dx, float* dw, float* partials, int64_t B, int64_t T, int64_t C) {
  const int64_t rows = B * T, n = rows * C;
  if (C == 0) return cudaSuccess;
  if (n == 0) return cudaMemsetAsync(dw, 0, C * 4 * sizeof(float), s);  // no rows: dw = 0
  const int64_t chunks = (rows + kCanonRowsPerPartial - 1) / kCanonRowsPerPartial;
  const dim3 block(kChannelThreads, kRowGroups);
  byCanonWidth(C, {dy, x, dx}, [&](auto width) {
    constexpr int V = decltype(width)::value;
    byInputType(dy, dyBf16, [&](auto* g) {
      byInputType(x, xBf16, [&](auto* in) {
        canonConvGradKernel<V><<<canonGrid(rows, C, V), block, 0, s>>>(g, in, w, docIds, dx, partials, int(rows), int(T), int(C));
      });
    });
  });
  canonConvGradWSumKernel<<<gridFor(C * 4), kThreads, 0, s>>>(partials, dw, chunks, C);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(canonConv, launchCanonConv, "x", "xBf16", "w", "docIds", "y", "yBf16", "B", "T", "C");
TSGPT_LAUNCHER(canonConvGrad, launchCanonConvGrad, "dy", "dyBf16", "x", "xBf16", "w", "docIds", "dx", "dw", "partials", "B", "T", "C");

}  // namespace tsgpt
