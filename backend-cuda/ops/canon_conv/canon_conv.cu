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
// dw is deterministic: a first pass sums kCanonRowsPerPartial rows per (chunk, channel) in row order, the
// second sums the chunks in order (no atomics). x is read as stored (In: float, or bf16 for a bf16-only activation:
// the normed input at A and C, the up projection's output at D), and so is dy (the gradients that ReLU²'s and
// AttentionInputs' backward write in bf16 for the projections, at D and B); y is bf16 under bf16 matmul precision (Out: every
// position feeds a projection or an op that reads bf16).
#include "canon_conv.h"

#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

// The taps' sum in the composite's order, each product and sum rounded on its own (no FMA contraction):
// ((x·(1 + w3) + x₁·w2) + x₂·w1) + x₃·w0, x_s the token s back (0 where it does not count), so the fused
// forward equals the composite bit for bit.
template <typename In, typename Out>
__global__ void canonConvKernel(const In* __restrict__ x, const float* __restrict__ w, const int32_t* __restrict__ doc,
                                Out* __restrict__ y, int64_t T, int64_t C, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) {
    const int64_t r = i / C, c = i % C, t = r % T;
    const float4 wc = reinterpret_cast<const float4*>(w)[c];
    const float taps[3] = {wc.z, wc.y, wc.x};  // taps[s − 1] multiplies the token s back
    float acc = __fmul_rn(toFloat(x[i]), __fadd_rn(wc.w, 1.f));
    const int32_t d = doc[r];
#pragma unroll
    for (int s = 1; s <= 3; ++s) {
      const float prev = (t >= s && doc[r - s] == d) ? toFloat(x[i - s * C]) : 0.f;
      acc = __fadd_rn(acc, __fmul_rn(prev, taps[s - 1]));
    }
    store(y + i, acc);
  }
}

template <typename InDy>
__global__ void canonConvGradXKernel(const InDy* __restrict__ dy, const float* __restrict__ w, const int32_t* __restrict__ doc,
                                     float* __restrict__ dx, int64_t T, int64_t C, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) {
    const int64_t r = i / C, c = i % C, t = r % T;
    const float4 wc = reinterpret_cast<const float4*>(w)[c];
    const float taps[3] = {wc.z, wc.y, wc.x};
    float acc = toFloat(dy[i]) * (1.f + wc.w);
    const int32_t d = doc[r];
#pragma unroll
    for (int s = 1; s <= 3; ++s) {
      if (t + s < T && doc[r + s] == d) acc += toFloat(dy[i + s * C]) * taps[s - 1];
    }
    dx[i] = acc;
  }
}

// One thread per (chunk, channel): walks its chunk's rows in order with the three previous rows of x in registers
// (consecutive threads read consecutive channels: coalesced), and writes the chunk's four sums.
template <typename InDy, typename In>
__global__ void canonConvGradWPartialKernel(const InDy* __restrict__ dy, const In* __restrict__ x,
                                            const int32_t* __restrict__ doc, float* __restrict__ partials, int64_t rows,
                                            int64_t T, int64_t C) {
  const int64_t c = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int64_t chunk = blockIdx.x, r0 = chunk * kCanonRowsPerPartial, r1 = r0 + kCanonRowsPerPartial < rows ? r0 + kCanonRowsPerPartial : rows;
  float sum[4] = {0.f, 0.f, 0.f, 0.f};  // sum[k]: tap k, the token 3 − k back
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t t = r % T;
    const float g = toFloat(dy[r * C + c]);
    const int32_t d = doc[r];
    sum[3] += g * toFloat(x[r * C + c]);
#pragma unroll
    for (int s = 1; s <= 3; ++s) {
      if (t >= s && doc[r - s] == d) sum[3 - s] += g * toFloat(x[(r - s) * C + c]);
    }
  }
  reinterpret_cast<float4*>(partials)[chunk * C + c] = make_float4(sum[0], sum[1], sum[2], sum[3]);
}

__global__ void canonConvGradWSumKernel(const float* __restrict__ partials, float* __restrict__ dw, int64_t chunks, int64_t C) {
  TSGPT_GRID_STRIDE(i, C * 4) {
    float acc = 0.f;
    for (int64_t k = 0; k < chunks; ++k) acc += partials[k * C * 4 + i];
    dw[i] = acc;
  }
}

}  // namespace

cudaError_t launchCanonConv(cudaStream_t s, const void* x, bool xBf16, const float* w, const int32_t* docIds, void* y,
                            bool yBf16, int64_t B, int64_t T, int64_t C) {
  const int64_t n = B * T * C;
  if (n == 0) return cudaSuccess;
  byInputType(x, xBf16, [&](auto* in) {
    if (yBf16) canonConvKernel<<<gridFor(n), kThreads, 0, s>>>(in, w, docIds, static_cast<__nv_bfloat16*>(y), T, C, n);
    else canonConvKernel<<<gridFor(n), kThreads, 0, s>>>(in, w, docIds, static_cast<float*>(y), T, C, n);
  });
  return cudaGetLastError();
}

cudaError_t launchCanonConvGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* x, bool xBf16, const float* w,
                                const int32_t* docIds, float* dx, float* dw, float* partials, int64_t B, int64_t T, int64_t C) {
  const int64_t rows = B * T, n = rows * C;
  if (C == 0) return cudaSuccess;
  if (n == 0) return cudaMemsetAsync(dw, 0, C * 4 * sizeof(float), s);  // no rows: dw = 0
  const int64_t chunks = (rows + kCanonRowsPerPartial - 1) / kCanonRowsPerPartial;
  const dim3 grid(unsigned(chunks), unsigned((C + kThreads - 1) / kThreads));
  byInputType(dy, dyBf16, [&](auto* g) {
    canonConvGradXKernel<<<gridFor(n), kThreads, 0, s>>>(g, w, docIds, dx, T, C, n);
    byInputType(x, xBf16, [&](auto* in) { canonConvGradWPartialKernel<<<grid, kThreads, 0, s>>>(g, in, docIds, partials, rows, T, C); });
  });
  canonConvGradWSumKernel<<<gridFor(C * 4), kThreads, 0, s>>>(partials, dw, chunks, C);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(canonConv, launchCanonConv, "x", "xBf16", "w", "docIds", "y", "yBf16", "B", "T", "C");
TSGPT_LAUNCHER(canonConvGrad, launchCanonConvGrad, "dy", "dyBf16", "x", "xBf16", "w", "docIds", "dx", "dw", "partials", "B", "T", "C");

}  // namespace tsgpt
