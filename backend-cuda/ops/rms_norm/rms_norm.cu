// Fused RMSNorm without a learned weight (the model's norm()), forward and backward side by side.
//   forward:  rstd = (mean_j x_j² + eps)^-½,  y = x·rstd
//   backward: dx = rstd·dy − x·rstd³·mean_j(dy_j·x_j)  (+ acc: x's gradient from its other consumers, where given)
// y may be a row's first outCols channels only (the mean still over all cols; dy then has outCols columns and is 0
// past them): the attention gate's 12 normed channels where nothing else needs the normed row (Canon A norms x inside
// CanonConv), instead of the whole normed row, its slice and, backward, the slice's zero-padded gradient. Where the
// block needs both, lead is a second output of the row's first leadCols channels, and the backward adds its gradient
// dLead to dy's first channels as it reads them: no Slice, no PadV2 writing a [rows, cols] float32 gradient that is
// almost all zeros, no extra read of it where the projection's gradient sums it.
// The backward recomputes rstd in the same pass as the dot product (one extra FMA per element) so
// the forward saves nothing but x. One kernel each way instead of the composite's many, one warp a row. x is read as stored
// (In: float, or bf16 for a bf16-only activation); y is written in bf16 under bf16 matmul precision (Out: the
// record's norm outputs bf16, §5; the projections read it so), and dy, the projections' gradient of y, arrives in
// bf16 then too (Dy).
#include "rms_norm.h"

#include "../../native/launch.h"
#include "../../native/rows.cuh"  // warpSum
#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

// One warp a row, kRowsPerBlock rows a block: the row's reductions are warp shuffles, no block barrier (a block of 256
// threads a row, two barriers and three values a thread, ran at ~1.3 TB/s on the speedrun's [32768, 768] rows). V values
// a lane a step: 4 (16-byte float, 8-byte bf16 accesses) where the rows allow it (rowsOf4), else 1. x is read
// twice, the second time from L1. The width of the sum of squares depends on x alone, never on outCols, so a row's
// leading channels are bit for bit the whole norm's (outOf4: the output's rows are 16-byte steps too).
constexpr int kRowsPerBlock = 8;

template <int V, typename In, typename Out>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
rmsNormKernel(const In* __restrict__ x, Out* __restrict__ y, int64_t rows, int64_t cols, int64_t outCols, float eps,
              bool outOf4, Out* __restrict__ lead, int64_t leadCols) {
  const int64_t row = (int64_t)blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;  // warp-uniform
  const int lane = threadIdx.x & 31;
  const In* xr = x + row * cols;
  Out* yr = y + row * outCols;
  float ss = 0.f;
#pragma unroll 4
  for (int64_t j = lane * V; j < cols; j += 32 * V) {
    float v[V];
    loadVec<V>(xr + j, v);
#pragma unroll
    for (int k = 0; k < V; k++) ss = fmaf(v[k], v[k], ss);
  }
  const float r = rsqrtf(warpSum(ss) / float(cols) + eps);
  // the row's first n normed channels into dst, a value a lane a step
  const auto storeScalars = [&](Out* dst, int64_t n) {
    for (int64_t j = lane; j < n; j += 32) {
      float v[1];
      loadVec<1>(xr + j, v);
      v[0] *= r;
      storeVec<1>(dst + j, v);
    }
  };
  if (lead) storeScalars(lead + row * leadCols, leadCols);  // the leading channels' copy (a few lanes, one store each)
  if (V == 4 && outOf4) {
#pragma unroll 4
    for (int64_t j = lane * V; j < outCols; j += 32 * V) {
      float v[V];
      loadVec<V>(xr + j, v);
#pragma unroll
      for (int k = 0; k < V; k++) v[k] *= r;
      storeVec<V>(yr + j, v);
    }
  } else {  // leading channels that are not whole 16-byte steps (the gate's, where not a multiple of 4)
    storeScalars(yr, outCols);
  }
}

template <int V, typename Dy, typename In>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
rmsNormGradKernel(const Dy* __restrict__ dy, const In* __restrict__ x, const float* __restrict__ acc,
                  float* __restrict__ dx, int64_t rows, int64_t cols, int64_t outCols, float eps,
                  const void* __restrict__ dLead, bool dLeadBf16, int64_t leadCols, __nv_bfloat16* __restrict__ dxBf16) {
  const int64_t row = (int64_t)blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;  // warp-uniform
  const int lane = threadIdx.x & 31;
  const int64_t off = row * cols;
  const Dy* dyr = dy + row * outCols;
  // dy's V values at j (V divides outCols, so a step is wholly inside or past it), 0 past outCols, plus dLead's in the
  // leading channels (dy + the padded dLead: the Add the two gradients' sum was, rounded the same). dLead is as stored
  // (bf16 where dLeadBf16: the gate projection's gradient of its input); a uniform branch, on a few lanes of the row.
  const int64_t leadRow = row * leadCols;
  const auto leadAt = [&](int64_t i) {
    return dLeadBf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(dLead)[leadRow + i])
                     : static_cast<const float*>(dLead)[leadRow + i];
  };
  const auto gradAt = [&](int64_t j, float (&g)[V]) {
    if (j < outCols) loadVec<V>(dyr + j, g);
    else
#pragma unroll
      for (int k = 0; k < V; k++) g[k] = 0.f;
    if (dLead && j < leadCols)
#pragma unroll
      for (int k = 0; k < V; k++)
        if (j + k < leadCols) g[k] += leadAt(j + k);
  };
  float dot = 0.f, ss = 0.f;
#pragma unroll 4
  for (int64_t j = lane * V; j < cols; j += 32 * V) {
    float xv[V], g[V];
    loadVec<V>(x + off + j, xv);
    gradAt(j, g);
#pragma unroll
    for (int k = 0; k < V; k++) {
      dot = fmaf(g[k], xv[k], dot);
      ss = fmaf(xv[k], xv[k], ss);
    }
  }
  dot = warpSum(dot);
  const float r = rsqrtf(warpSum(ss) / float(cols) + eps);
  const float c = r * r * r * dot / float(cols);
#pragma unroll 4
  for (int64_t j = lane * V; j < cols; j += 32 * V) {
    float xv[V], g[V], d[V];
    loadVec<V>(x + off + j, xv);
    gradAt(j, g);
#pragma unroll
    for (int k = 0; k < V; k++) d[k] = r * g[k] - c * xv[k];
    if (acc) {  // the Add it replaces, rounded the same
      float a[V];
      loadVec<V>(acc + off + j, a);
#pragma unroll
      for (int k = 0; k < V; k++) d[k] = d[k] + a[k];
    }
    storeVec<V>(dx + off + j, d);
    if (dxBf16) storeVec<V>(dxBf16 + off + j, d);  // the copy a bf16 matmul reads (toBf16's rounding)
  }
}

// 4 values a lane a step where every row starts 16-byte aligned and cols and outCols are multiples of 4.
inline bool rowsOf4(int64_t cols, int64_t outCols, std::initializer_list<const void*> ptrs) {
  return cols % 4 == 0 && outCols % 4 == 0 && aligned16(ptrs);
}

}  // namespace

cudaError_t launchRmsNorm(cudaStream_t s, const void* x, bool xBf16, void* y, bool yBf16, int64_t rows, int64_t cols,
                          int64_t outCols, float eps, void* lead, int64_t leadCols) {
  if (rows == 0) return cudaSuccess;
  if (rows > 0x7fffffffLL * kRowsPerBlock || outCols < 0 || outCols > cols) return cudaErrorInvalidValue;
  if (lead && (outCols != cols || leadCols <= 0 || leadCols > cols)) return cudaErrorInvalidValue;
  const unsigned blocks = unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  cudaError_t e = cudaSuccess;
  byInputType(x, xBf16, [&](auto* in) {
    e = byWidthAndType(rowsOf4(cols, cols, {x}), y, yBf16, [&](auto width, auto* out) {
      rmsNormKernel<decltype(width)::value><<<blocks, kRowsPerBlock * 32, 0, s>>>(
          in, out, rows, cols, outCols, eps, rowsOf4(cols, outCols, {x, y}), static_cast<decltype(out)>(lead), leadCols);
    });
  });
  return e;
}

cudaError_t launchRmsNormGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* x, bool xBf16, const float* acc,
                              float* dx, int64_t rows, int64_t cols, int64_t outCols, float eps, const void* dLead,
                              bool dLeadBf16, int64_t leadCols, void* dxBf16) {
  if (rows == 0) return cudaSuccess;
  if (rows > 0x7fffffffLL * kRowsPerBlock || outCols < 0 || outCols > cols) return cudaErrorInvalidValue;
  if (dLead && (outCols != cols || leadCols <= 0 || leadCols > cols)) return cudaErrorInvalidValue;
  const unsigned blocks = unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  const bool vec4 = rowsOf4(cols, outCols, {dy, x, acc, dx});
  auto* twin = static_cast<__nv_bfloat16*>(dxBf16);
  byInputType(dy, dyBf16, [&](auto* g) {
    byInputType(x, xBf16, [&](auto* in) {
      if (vec4) {
        rmsNormGradKernel<4><<<blocks, kRowsPerBlock * 32, 0, s>>>(g, in, acc, dx, rows, cols, outCols, eps, dLead,
                                                                   dLeadBf16, leadCols, twin);
      } else {
        rmsNormGradKernel<1><<<blocks, kRowsPerBlock * 32, 0, s>>>(g, in, acc, dx, rows, cols, outCols, eps, dLead,
                                                                   dLeadBf16, leadCols, twin);
      }
    });
  });
  return cudaGetLastError();
}

TSGPT_LAUNCHER(rmsNorm, launchRmsNorm, "x", "xBf16", "y", "yBf16", "rows", "cols", "outCols", "eps", "lead", "leadCols");
TSGPT_LAUNCHER(rmsNormGrad, launchRmsNormGrad, "dy", "dyBf16", "x", "xBf16", "acc", "dx", "rows", "cols", "outCols", "eps",
               "dLead", "dLeadBf16", "leadCols", "dxBf16");

}  // namespace tsgpt
