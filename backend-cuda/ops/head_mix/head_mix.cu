// Fused head mix y = α·x + β·m − γ·c with per-head α, β, γ (train_gpt.ts's shapedAttention(): He & Hofmann's shaped
// attention, x the heads' input, m the attention's output, c the causal window mean of x), forward and backward side
// by side; coef [3, H] (rows α, β, γ) stays on the device (read there: nothing waits for the stream):
//   forward:  y = α·x + β·m − γ·c
//   backward: dx = α·dy,  dm = β·dy,  dc = −γ·dy,  dcoef = (Σ dy·x, Σ dy·m, −Σ dy·c) per head
// x, m and c are [rows, H, h] (rows = B·T), read as stored (float, or bf16: the normed heads' input under bf16
// precision). y, dx, dm and dc are the composite's float32 operations, each correctly rounded (__fmul_rn, __fadd_rn,
// __fsub_rn: no FMA contraction), so they equal the composite's bit for bit. The sums are deterministic (no atomics):
// the backward's grid is (blocks, H), a block summing its share of one head's values into a partial in a fixed order,
// then one small kernel adds each head's partials in order.
// Memory-bound: 4 values per thread with float4 loads where h % 4 = 0 and pointers are aligned (then a group of 4 lies
// in one head).
#include <algorithm>
#include "head_mix.h"

#include "../../native/kernels.h"
#include "../../native/launch.h"
#include "../../native/rows.cuh"
#include "../../native/vec.cuh"
#include "../../native/launchers.h"

namespace tsgpt {
namespace {

// The backward's partial sums: at most this many blocks a head (a wave of 256-thread blocks on an H100 in all).
constexpr int kMaxGradBlocks = 1024;

template <int V, typename InX, typename InM, typename InC>
__global__ void headMixKernel(const InX* __restrict__ x, const InM* __restrict__ m, const InC* __restrict__ c,
                              const float* __restrict__ coef, float* __restrict__ y, int64_t groups, int H, int hGroups) {
  TSGPT_GRID_STRIDE(i, groups) {
    const int head = int(i / hGroups % H);
    const float a = coef[head], b = coef[H + head], g = coef[2 * H + head];
    float xv[V], mv[V], cv[V];
    loadVec<V>(x + i * V, xv);
    loadVec<V>(m + i * V, mv);
    loadVec<V>(c + i * V, cv);
#pragma unroll
    for (int k = 0; k < V; ++k) xv[k] = __fsub_rn(__fadd_rn(__fmul_rn(a, xv[k]), __fmul_rn(b, mv[k])), __fmul_rn(g, cv[k]));
    storeVec<V>(y + i * V, xv);
  }
}

// Block (blockIdx.x, head): dx, dm, dc of its share of the head's values, and its sums into
// partials[(head·gridDim.x + blockIdx.x)·3 + (0, 1, 2)] (Σ dy·x, Σ dy·m, Σ dy·c).
template <int V, typename InX, typename InM, typename InC>
__global__ void headMixGradKernel(const float* __restrict__ dy, const InX* __restrict__ x, const InM* __restrict__ m,
                                  const InC* __restrict__ c, const float* __restrict__ coef, float* __restrict__ dx,
                                  float* __restrict__ dm, float* __restrict__ dc, float* __restrict__ partials, int64_t rows,
                                  int H, int hGroups) {
  __shared__ float scratch[32];
  const int head = blockIdx.y;
  const float a = coef[head], b = coef[H + head], g = coef[2 * H + head];
  float sx = 0.f, sm = 0.f, sc = 0.f;
  const int64_t items = rows * hGroups;  // the head's groups of V values
  TSGPT_GRID_STRIDE(k, items) {
    const int64_t r = k / hGroups, i = (r * H + head) * hGroups + (k - r * hGroups);  // the group's index over all heads
    float gv[V], xv[V], mv[V], cv[V];
    loadVec<V>(dy + i * V, gv);
    loadVec<V>(x + i * V, xv);
    loadVec<V>(m + i * V, mv);
    loadVec<V>(c + i * V, cv);
#pragma unroll
    for (int e = 0; e < V; ++e) {
      sx = fmaf(gv[e], xv[e], sx);
      sm = fmaf(gv[e], mv[e], sm);
      sc = fmaf(gv[e], cv[e], sc);
      xv[e] = __fmul_rn(a, gv[e]);
      mv[e] = __fmul_rn(b, gv[e]);
      cv[e] = -__fmul_rn(g, gv[e]);
    }
    storeVec<V>(dx + i * V, xv);
    storeVec<V>(dm + i * V, mv);
    storeVec<V>(dc + i * V, cv);
  }
  sx = blockReduce<false>(sx, scratch);
  sm = blockReduce<false>(sm, scratch);
  sc = blockReduce<false>(sc, scratch);
  if (threadIdx.x == 0) {
    float* p = partials + (int64_t(head) * gridDim.x + blockIdx.x) * 3;
    p[0] = sx;
    p[1] = sm;
    p[2] = sc;
  }
}

// dcoef[j·H + head] = ± the head's partials of sum j added in block order (γ's with the minus of −γ·c).
__global__ void headSumsKernel(const float* __restrict__ partials, int blocks, int H, float* __restrict__ dcoef) {
  for (int col = threadIdx.x; col < 3 * H; col += blockDim.x) {
    const int head = col % H, j = col / H;
    float s = 0.f;
    for (int bx = 0; bx < blocks; ++bx) s += partials[(int64_t(head) * blocks + bx) * 3 + j];
    dcoef[col] = j == 2 ? -s : s;
  }
}

// f(xs, ms, cs) with each pointer typed as its tensor is stored.
template <typename F>
void byInputTypes(const void* x, bool xBf16, const void* m, bool mBf16, const void* c, bool cBf16, F f) {
  byInputType(x, xBf16, [&](auto* xs) {
    byInputType(m, mBf16, [&](auto* ms) { byInputType(c, cBf16, [&](auto* cs) { f(xs, ms, cs); }); });
  });
}

}  // namespace

cudaError_t launchHeadMix(cudaStream_t s, const void* x, bool xBf16, const void* m, bool mBf16, const void* c, bool cBf16,
                          const float* coef, float* y, int64_t rows, int H, int h) {
  const int64_t n = rows * H * h;
  if (n == 0) return cudaSuccess;
  const bool vec4 = h % 4 == 0 && aligned16({x, m, c, y});
  byInputTypes(x, xBf16, m, mBf16, c, cBf16, [&](auto* xs, auto* ms, auto* cs) {
    if (vec4) headMixKernel<4><<<gridFor(n / 4), kThreads, 0, s>>>(xs, ms, cs, coef, y, n / 4, H, h / 4);
    else headMixKernel<1><<<gridFor(n), kThreads, 0, s>>>(xs, ms, cs, coef, y, n, H, h);
  });
  return cudaGetLastError();
}

cudaError_t launchHeadMixGrad(cudaStream_t s, const float* dy, const void* x, bool xBf16, const void* m, bool mBf16,
                              const void* c, bool cBf16, const float* coef, float* dx, float* dm, float* dc, float* dcoef,
                              int64_t rows, int H, int h) {
  if (H == 0) return cudaSuccess;
  if (rows * h == 0) return cudaMemsetAsync(dcoef, 0, sizeof(float) * 3 * H, s);  // empty sums are 0
  const bool vec4 = h % 4 == 0 && aligned16({dy, x, m, c, dx, dm, dc});
  const int hGroups = vec4 ? h / 4 : h;
  // The grid depends only on the sizes and the path, so the sums' order (and rounding) is the same every run.
  const int blocks = int(std::min<int64_t>((rows * hGroups + kThreads - 1) / kThreads, std::max(1, kMaxGradBlocks / H)));
  float* partials = nullptr;
  cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&partials), sizeof(float) * 3 * blocks * H, s);
  if (e != cudaSuccess) return e;
  const dim3 grid(blocks, H);
  byInputTypes(x, xBf16, m, mBf16, c, cBf16, [&](auto* xs, auto* ms, auto* cs) {
    if (vec4) headMixGradKernel<4><<<grid, kThreads, 0, s>>>(dy, xs, ms, cs, coef, dx, dm, dc, partials, rows, H, hGroups);
    else headMixGradKernel<1><<<grid, kThreads, 0, s>>>(dy, xs, ms, cs, coef, dx, dm, dc, partials, rows, H, hGroups);
  });
  e = cudaGetLastError();
  if (e == cudaSuccess) {
    headSumsKernel<<<1, kThreads, 0, s>>>(partials, blocks, H, dcoef);
    e = cudaGetLastError();
  }
  const cudaError_t f = cudaFreeAsync(partials, s);  // stream-ordered: after the sums
  return e != cudaSuccess ? e : f;
}

TSGPT_LAUNCHER(headMix, launchHeadMix, "x", "xBf16", "m", "mBf16", "c", "cBf16", "coef", "y", "rows", "H", "h");
TSGPT_LAUNCHER(headMixGrad, launchHeadMixGrad, "dy", "x", "xBf16", "m", "mBf16", "c", "cBf16", "coef", "dx", "dm", "dc",
               "dcoef", "rows", "H", "h");

}  // namespace tsgpt
