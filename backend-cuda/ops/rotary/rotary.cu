// Fused rotary position embedding, forward and backward in one kernel (train_gpt.ts's rotary()).
// x [B,T,H,h], h = 2·half: the pair (x1, x2) = (x[.., j], x[.., j + half]) of token t turns by the
// angle whose cosine and sine are the tables' [t, j] (train_gpt.ts's rotaryTables, [1,T,1,half]):
//   forward:  y1 = x1·cos + x2·sin,  y2 = x2·cos − x1·sin
//   backward: the transpose rotation  dx1 = dy1·cos − dy2·sin,  dx2 = dy1·sin + dy2·cos
// i.e. the forward with sin negated, so one kernel serves both (sign = +1 forward, −1 backward).
// Stationary dims (frequency 0: cos = 1, sin = 0, half-truncated RoPE) simply come out unchanged.
// Memory-bound: one read of x, one write of y; the tables (T·h floats) are shared by all B·H rows
// and stay in L2. A thread does 4 pairs with float4 loads where half % 4 = 0 and pointers are aligned.
// x is read as stored (a bf16-only activation: float32 or bf16) and y written in float32 or bf16 (rounded once, from
// the float32 rotation: the values the attention's bf16 operands would get).
// NormedRotary (the shaped blocks' q and k under QK-norm): each row (a head) RMS-normed before it turns, n = x·rstd,
// rstd = (mean x² + eps)^-½, in the same pass, where the composite ran an RMSNorm and a Rotary each way. Its backward
// turns dy back (g) and goes through the norm: dx = rstd·(g − n·mean(g·n)), rstd recomputed from x (attention_inputs.cu's
// q and k rows, without the qkv layout). A row's L = half / 4 lanes (L a power of two ≤ 32: half 4 … 128) hold 4 pairs
// each in registers between the row's sums and the output.
#include "rotary.h"

#include "../../native/launch.h"
#include "../../native/vec.cuh"
#include "../../native/launchers.h"

namespace tsgpt {
namespace {

template <int V, typename In, typename Out>
__global__ void rotaryKernel(const In* __restrict__ x, const float* __restrict__ cosT,
                             const float* __restrict__ sinT, Out* __restrict__ y, int64_t groups, int T,
                             int H, int half, float sign) {
  const int groupsPerRow = half / V;
  TSGPT_GRID_STRIDE(i, groups) {
    const int64_t row = i / groupsPerRow;  // (b·T + t)·H + head
    const int j = int(i - row * groupsPerRow) * V;
    const int64_t t = (row / H) % T;
    const In* xr = x + row * 2 * half;
    Out* yr = y + row * 2 * half;
    float x1[V], x2[V], c[V], s[V], y1[V], y2[V];
    loadVec<V>(xr + j, x1);
    loadVec<V>(xr + half + j, x2);
    loadVec<V>(cosT + t * half + j, c);
    loadVec<V>(sinT + t * half + j, s);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float sn = sign * s[k];
      y1[k] = x1[k] * c[k] + x2[k] * sn;
      y2[k] = x2[k] * c[k] - x1[k] * sn;
    }
    storeVec<V>(yr + j, y1);
    storeVec<V>(yr + half + j, y2);
  }
}

// The rows a warp holds at once (32 / L lanes each) and this lane's: row, its first pair j, whether it is a real row.
// Every lane of a warp takes the same number of loop turns (the sums are shuffles over the row's lanes).
template <typename F>
__device__ __forceinline__ void forEachNormedRow(int64_t rows, int lanesPerRow, F f) {
  const int lane = int(threadIdx.x) % 32, rowsPerWarp = 32 / lanesPerRow;
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32, warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t base = warp * rowsPerWarp; base < rows; base += warps * rowsPerWarp) {
    const int64_t row = base + lane / lanesPerRow;
    f(row < rows ? row : rows - 1, (lane % lanesPerRow) * 4, row < rows);
  }
}

// Σ over the row's L lanes (aligned groups of L lanes; every lane of the warp takes part).
__device__ __forceinline__ float rowLanesSum(float v, int lanesPerRow) {
  for (int offset = lanesPerRow / 2; offset >= 1; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// A lane's 4 pairs of the head `row` (x1 from pair j, x2 from j + half), their angles' cosines and sines, and the head
// normed in place (n = x·rstd); returns rstd. Every lane of the warp calls it (the head's sum is a shuffle).
template <typename In>
__device__ __forceinline__ float loadNormedPairs(const In* __restrict__ x, const float* __restrict__ cosT,
                                                 const float* __restrict__ sinT, int64_t row, int j, int T, int H, int half,
                                                 float eps, float (&x1)[4], float (&x2)[4], float (&c)[4], float (&s)[4]) {
  const int64_t t = (row / H) % T;
  loadVec<4>(x + row * 2 * half + j, x1);
  loadVec<4>(x + row * 2 * half + half + j, x2);
  loadVec<4>(cosT + t * half + j, c);
  loadVec<4>(sinT + t * half + j, s);
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < 4; ++k) ss += x1[k] * x1[k] + x2[k] * x2[k];
  const float rstd = rsqrtf(rowLanesSum(ss, half / 4) / float(2 * half) + eps);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    x1[k] *= rstd;
    x2[k] *= rstd;
  }
  return rstd;
}

template <typename In, typename Out>
__global__ void normedRotaryKernel(const In* __restrict__ x, const float* __restrict__ cosT, const float* __restrict__ sinT,
                                   Out* __restrict__ y, int64_t rows, int T, int H, int half, float eps) {
  forEachNormedRow(rows, half / 4, [&](int64_t row, int j, bool real) {
    float n1[4], n2[4], c[4], s[4], y1[4], y2[4];
    loadNormedPairs(x, cosT, sinT, row, j, T, H, half, eps, n1, n2, c, s);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      y1[k] = n1[k] * c[k] + n2[k] * s[k];
      y2[k] = n2[k] * c[k] - n1[k] * s[k];
    }
    if (real) {
      storeVec<4>(y + row * 2 * half + j, y1);
      storeVec<4>(y + row * 2 * half + half + j, y2);
    }
  });
}

template <typename In>
__global__ void normedRotaryGradKernel(const float* __restrict__ dy, const In* __restrict__ x, const float* __restrict__ cosT,
                                       const float* __restrict__ sinT, float* __restrict__ dx, int64_t rows, int T, int H,
                                       int half, float eps) {
  forEachNormedRow(rows, half / 4, [&](int64_t row, int j, bool real) {
    float g1[4], g2[4], n1[4], n2[4], c[4], s[4];
    loadVec<4>(dy + row * 2 * half + j, g1);
    loadVec<4>(dy + row * 2 * half + half + j, g2);
    const float rstd = loadNormedPairs(x, cosT, sinT, row, j, T, H, half, eps, n1, n2, c, s);
    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float d1 = g1[k], d2 = g2[k];  // g: the transpose rotation of dy
      g1[k] = d1 * c[k] - d2 * s[k];
      g2[k] = d1 * s[k] + d2 * c[k];
      dot += g1[k] * n1[k] + g2[k] * n2[k];
    }
    const float mean = rowLanesSum(dot, half / 4) / float(2 * half);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      g1[k] = rstd * (g1[k] - n1[k] * mean);
      g2[k] = rstd * (g2[k] - n2[k] * mean);
    }
    if (real) {
      storeVec<4>(dx + row * 2 * half + j, g1);
      storeVec<4>(dx + row * 2 * half + half + j, g2);
    }
  });
}

// NormedRotary takes half a multiple of 4 with half / 4 lanes a power of two within a warp, and 16-byte aligned tensors.
bool normedRotaryFits(int64_t half, std::initializer_list<const void*> ptrs) {
  const int64_t lanes = half / 4;
  return half % 4 == 0 && lanes >= 1 && lanes <= 32 && (lanes & (lanes - 1)) == 0 && aligned16(ptrs);
}

unsigned normedRotaryGrid(int64_t rows, int64_t half) {
  const int64_t threads = rows * (half / 4);
  return gridFor(threads);
}

}  // namespace

cudaError_t launchNormedRotary(cudaStream_t s, const void* x, bool xBf16, const float* cosT, const float* sinT, void* y, bool yBf16,
                               int64_t B, int64_t T, int64_t H, int64_t half, float eps) {
  const int64_t rows = B * T * H;
  if (rows * half == 0) return cudaSuccess;
  if (T > 0x7fffffffLL || H > 0x7fffffffLL || !normedRotaryFits(half, {x, cosT, sinT, y})) return cudaErrorInvalidValue;
  byInputType(x, xBf16, [&](auto* in) {
    if (yBf16) normedRotaryKernel<<<normedRotaryGrid(rows, half), kThreads, 0, s>>>(in, cosT, sinT, static_cast<__nv_bfloat16*>(y), rows, int(T), int(H), int(half), eps);
    else normedRotaryKernel<<<normedRotaryGrid(rows, half), kThreads, 0, s>>>(in, cosT, sinT, static_cast<float*>(y), rows, int(T), int(H), int(half), eps);
  });
  return cudaGetLastError();
}

cudaError_t launchNormedRotaryGrad(cudaStream_t s, const float* dy, const void* x, bool xBf16, const float* cosT, const float* sinT,
                                   float* dx, int64_t B, int64_t T, int64_t H, int64_t half, float eps) {
  const int64_t rows = B * T * H;
  if (rows * half == 0) return cudaSuccess;
  if (T > 0x7fffffffLL || H > 0x7fffffffLL || !normedRotaryFits(half, {dy, x, cosT, sinT, dx})) return cudaErrorInvalidValue;
  byInputType(x, xBf16, [&](auto* in) {
    normedRotaryGradKernel<<<normedRotaryGrid(rows, half), kThreads, 0, s>>>(dy, in, cosT, sinT, dx, rows, int(T), int(H), int(half), eps);
  });
  return cudaGetLastError();
}

cudaError_t launchRotary(cudaStream_t s, const void* x, bool xBf16, const float* cosT, const float* sinT, void* y, bool yBf16,
                         int64_t B, int64_t T, int64_t H, int64_t half, bool inverse) {
  const int64_t pairs = B * T * H * half;
  if (pairs == 0) return cudaSuccess;
  if (T > 0x7fffffffLL || H > 0x7fffffffLL || half > 0x7fffffffLL) return cudaErrorInvalidValue;
  const float sign = inverse ? -1.f : 1.f;
  return byWidthAndType(half % 4 == 0 && aligned16({x, cosT, sinT, y}), y, yBf16, [&](auto width, auto* out) {
    constexpr int V = decltype(width)::value;
    byInputType(x, xBf16, [&](auto* in) {
      rotaryKernel<V><<<gridFor(pairs / V), kThreads, 0, s>>>(in, cosT, sinT, out, pairs / V, int(T), int(H), int(half), sign);
    });
  });
}

TSGPT_LAUNCHER(rotary, launchRotary, "x", "xBf16", "cos", "sin", "y", "yBf16", "B", "T", "H", "half", "inverse");
TSGPT_LAUNCHER(normedRotary, launchNormedRotary, "x", "xBf16", "cos", "sin", "y", "yBf16", "B", "T", "H", "half", "eps");
TSGPT_LAUNCHER(normedRotaryGrad, launchNormedRotaryGrad, "dy", "x", "xBf16", "cos", "sin", "dx", "B", "T", "H", "half", "eps");

}  // namespace tsgpt
