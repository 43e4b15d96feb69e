// Fused scaled add y = a·x + b·z (train_gpt.ts's scaledAdd(): block lambdas, the value-embedding mix,
// the U-net skip and the backout), forward and backward side by side; a and b are scalars on the device
// (one float each: read there, never copied to the host, so nothing waits for the stream):
//   forward:  y = a·x + b·z
//   backward: dx = a·dy (+ xAcc),  dz = b·dy (+ zAcc),  da = Σ dy·x,  db = Σ dy·z
// xAcc, zAcc: x's and z's gradients so far, where the backward hands them over (tfjs_node.ts: z also feeds later layers,
// as x0 does every block; x too where it is a U-net skip's or the backout's source): added here instead of by an Add
// kernel over the result.
// The composite runs 3 kernels forward (two Multiplies, Add) and 6 backward (a Multiply and a
// Multiply + Sum per side), and its Add keeps x·a and z·b for the backward; here one pass each way.
// y, dx and dz are the composite's float32 operations, each correctly rounded (__fmul_rn, __fadd_rn: no
// FMA contraction), so they equal the composite's bit for bit (and dz + zAcc the Add's). The sums are deterministic
// (no atomics): each block's (Σ dy·x, Σ dy·z) goes to a partial, then one block adds the partials in a fixed order.
// Memory-bound: 4 elements per thread with float4 loads where n % 4 = 0 and pointers are aligned. x and z are read
// as stored (float, or bf16: the residual stream under bf16 precision, §5), y is bf16 where both are (rounded once).
#include <algorithm>
#include "scaled_add.h"

#include "../../native/kernels.h"
#include "../../native/launch.h"
#include "../../native/rows.cuh"
#include "../../native/vec.cuh"
#include "../../native/launchers.h"

namespace tsgpt {
namespace {

// The backward's grid, and so its partials: one wave of 256-thread blocks on an H100 (132 SMs × 8).
constexpr int kMaxGradBlocks = 1024;

template <int V, typename InX, typename InZ, typename Out>
__global__ void scaledAddKernel(const InX* __restrict__ x, const InZ* __restrict__ z, const float* __restrict__ a,
                                const float* __restrict__ b, Out* __restrict__ y, int64_t groups) {
  const float av = *a, bv = *b;
  TSGPT_GRID_STRIDE(i, groups) {
    float xv[V], zv[V];
    loadVec<V>(x + i * V, xv);
    loadVec<V>(z + i * V, zv);
#pragma unroll
    for (int k = 0; k < V; ++k) xv[k] = __fadd_rn(__fmul_rn(av, xv[k]), __fmul_rn(bv, zv[k]));
    storeVec<V>(y + i * V, xv);
  }
}

// dx, dz (+ xAcc, zAcc where given), and this block's sums into partials[2·block] (Σ dy·x) and partials[2·block + 1] (Σ dy·z).
template <int V, typename InX, typename InZ>
__global__ void scaledAddGradKernel(const float* __restrict__ dy, const InX* __restrict__ x,
                                    const InZ* __restrict__ z, const float* __restrict__ a,
                                    const float* __restrict__ b, const float* __restrict__ xAcc, const float* __restrict__ zAcc,
                                    float* __restrict__ dx, float* __restrict__ dz, __nv_bfloat16* __restrict__ dxBf16,
                                    __nv_bfloat16* __restrict__ dzBf16, float* __restrict__ partials, int64_t groups) {
  __shared__ float scratch[32];
  const float av = *a, bv = *b;
  float sa = 0.f, sb = 0.f;
  TSGPT_GRID_STRIDE(i, groups) {
    float g[V], xv[V], zv[V], xSum[V], sum[V];
    loadVec<V>(dy + i * V, g);
    loadVec<V>(x + i * V, xv);
    loadVec<V>(z + i * V, zv);
    if (xAcc) loadVec<V>(xAcc + i * V, xSum);  // the same branches for the whole grid
    if (zAcc) loadVec<V>(zAcc + i * V, sum);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      sa = fmaf(g[k], xv[k], sa);
      sb = fmaf(g[k], zv[k], sb);
      xv[k] = xAcc ? __fadd_rn(__fmul_rn(av, g[k]), xSum[k]) : __fmul_rn(av, g[k]);
      zv[k] = zAcc ? __fadd_rn(__fmul_rn(bv, g[k]), sum[k]) : __fmul_rn(bv, g[k]);
    }
    storeVec<V>(dx + i * V, xv);
    storeVec<V>(dz + i * V, zv);
    if (dxBf16) storeVec<V>(dxBf16 + i * V, xv);  // the copies a bf16 matmul reads (toBf16's rounding)
    if (dzBf16) storeVec<V>(dzBf16 + i * V, zv);
  }
  sa = blockReduce<false>(sa, scratch);
  sb = blockReduce<false>(sb, scratch);
  if (threadIdx.x == 0) {
    partials[2 * blockIdx.x] = sa;
    partials[2 * blockIdx.x + 1] = sb;
  }
}

}  // namespace

cudaError_t launchScaledAdd(cudaStream_t s, const void* x, bool xBf16, const void* z, bool zBf16, const float* a, const float* b,
                            void* y, bool yBf16, int64_t n) {
  if (n == 0) return cudaSuccess;
  return byWidthAndType(n % 4 == 0 && aligned16({x, z, y}), y, yBf16, [&](auto width, auto* out) {
    constexpr int V = decltype(width)::value;
    byInputType(x, xBf16, [&](auto* xs) {
      byInputType(z, zBf16, [&](auto* zs) { scaledAddKernel<V><<<gridFor(n / V), kThreads, 0, s>>>(xs, zs, a, b, out, n / V); });
    });
  });
}

cudaError_t launchScaledAddGrad(cudaStream_t s, const float* dy, const void* x, bool xBf16, const void* z, bool zBf16,
                                const float* a, const float* b, const float* xAcc, const float* zAcc, float* dx, float* dz,
                                float* da, float* db, int64_t n, void* dxBf16, void* dzBf16, const float* abAcc) {
  if (n == 0) return launchSumPartialPairs(s, nullptr, 0, da, db, abAcc);  // empty sums are 0
  const bool vec4 = n % 4 == 0 && aligned16({dy, x, z, xAcc, zAcc, dx, dz});
  const int64_t groups = vec4 ? n / 4 : n;
  // The grid depends only on n and the path, so the sums' order (and rounding) is the same every run.
  const int blocks = int(std::min<int64_t>((groups + kThreads - 1) / kThreads, kMaxGradBlocks));
  float* partials = nullptr;
  cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&partials), sizeof(float) * 2 * blocks, s);
  if (e != cudaSuccess) return e;
  byInputType(x, xBf16, [&](auto* xs) {
    byInputType(z, zBf16, [&](auto* zs) {
      auto* xTwin = static_cast<__nv_bfloat16*>(dxBf16);
      auto* zTwin = static_cast<__nv_bfloat16*>(dzBf16);
      if (vec4) scaledAddGradKernel<4><<<blocks, kThreads, 0, s>>>(dy, xs, zs, a, b, xAcc, zAcc, dx, dz, xTwin, zTwin, partials, groups);
      else scaledAddGradKernel<1><<<blocks, kThreads, 0, s>>>(dy, xs, zs, a, b, xAcc, zAcc, dx, dz, xTwin, zTwin, partials, groups);
    });
  });
  e = launchSumPartialPairs(s, partials, blocks, da, db, abAcc);
  const cudaError_t f = cudaFreeAsync(partials, s);  // stream-ordered: after the second pass
  return e != cudaSuccess ? e : f;
}

TSGPT_LAUNCHER(scaledAdd, launchScaledAdd, "x", "xBf16", "z", "zBf16", "a", "b", "y", "yBf16", "n");
TSGPT_LAUNCHER(scaledAddGrad, launchScaledAddGrad, "dy", "x", "xBf16", "z", "zBf16", "a", "b", "xAcc", "zAcc", "dx", "dz",
               "da", "db", "n", "dxBf16", "dzBf16", "abAcc");

}  // namespace tsgpt
