// Fused RMSNorm without a learned weight (the model's norm()), forward and backward side by side.
//   forward:  rstd = (mean_j x_j² + eps)^-½,  y = x·rstd
//   backward: dx = rstd·dy − x·rstd³·mean_j(dy_j·x_j)  (+ acc: x's gradient from its other consumers, where given)
// y may be a row's first outCols channels only (the mean still over all cols; dy then has outCols columns and is 0
// past them): the attention gate's 12 normed channels where nothing else needs the normed row (Canon A norms x inside
// CanonConv), instead of the whole normed row, its slice and, backward, the slice's zero-padded gradient.
// The backward recomputes rstd in the same pass as the dot product (one extra FMA per element) so
// the forward saves nothing but x. One kernel each way instead of the composite's many. x is read as stored
// (In: float, or bf16 for a bf16-only activation); y is written in bf16 under bf16 matmul precision (Out: the
// record's norm outputs bf16, §5; the projections read it so).
#include "rms_norm.h"

#include "../../native/launch.h"
#include "../../native/rows.cuh"
#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

template <typename In, typename Out>
__global__ void rmsNormKernel(const In* __restrict__ x, Out* __restrict__ y, int64_t cols, int64_t outCols, float eps) {
  __shared__ float scratch[32];
  const In* xr = x + blockIdx.x * cols;
  Out* yr = y + blockIdx.x * outCols;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float v = toFloat(xr[j]);
    ss += v * v;
  }
  ss = blockReduce<false>(ss, scratch);
  const float r = rsqrtf(ss / float(cols) + eps);
  for (int64_t j = threadIdx.x; j < outCols; j += blockDim.x) store(yr + j, toFloat(xr[j]) * r);
}

template <typename In>
__global__ void rmsNormGradKernel(const float* __restrict__ dy, const In* __restrict__ x, const float* __restrict__ acc,
                                  float* __restrict__ dx, int64_t cols, int64_t outCols, float eps) {
  __shared__ float scratch[32];
  const int64_t off = blockIdx.x * cols;
  const float* dyr = dy + blockIdx.x * outCols;
  const auto gradAt = [&](int64_t j) { return j < outCols ? dyr[j] : 0.f; };
  float dot = 0.f, ss = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float xv = toFloat(x[off + j]);
    dot += gradAt(j) * xv;
    ss += xv * xv;
  }
  dot = blockReduce<false>(dot, scratch);
  ss = blockReduce<false>(ss, scratch);
  const float r = rsqrtf(ss / float(cols) + eps);
  const float c = r * r * r * dot / float(cols);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float d = r * gradAt(j) - c * toFloat(x[off + j]);
    dx[off + j] = acc ? d + acc[off + j] : d;  // the Add it replaces, rounded the same
  }
}

}  // namespace

cudaError_t launchRmsNorm(cudaStream_t s, const void* x, bool xBf16, void* y, bool yBf16, int64_t rows, int64_t cols,
                          int64_t outCols, float eps) {
  if (rows == 0) return cudaSuccess;
  if (rows > 0x7fffffffLL || outCols < 0 || outCols > cols) return cudaErrorInvalidValue;
  byInputType(x, xBf16, [&](auto* in) {
    const unsigned threads = cols >= 512 ? 256 : 64;
    if (yBf16) rmsNormKernel<<<(unsigned)rows, threads, 0, s>>>(in, static_cast<__nv_bfloat16*>(y), cols, outCols, eps);
    else rmsNormKernel<<<(unsigned)rows, threads, 0, s>>>(in, static_cast<float*>(y), cols, outCols, eps);
  });
  return cudaGetLastError();
}

cudaError_t launchRmsNormGrad(cudaStream_t s, const float* dy, const void* x, bool xBf16, const float* acc, float* dx,
                              int64_t rows, int64_t cols, int64_t outCols, float eps) {
  if (rows == 0) return cudaSuccess;
  if (rows > 0x7fffffffLL || outCols < 0 || outCols > cols) return cudaErrorInvalidValue;
  byInputType(x, xBf16, [&](auto* in) {
    rmsNormGradKernel<<<(unsigned)rows, cols >= 512 ? 256 : 64, 0, s>>>(dy, in, acc, dx, cols, outCols, eps);
  });
  return cudaGetLastError();
}

TSGPT_LAUNCHER(rmsNorm, launchRmsNorm, "x", "xBf16", "y", "yBf16", "rows", "cols", "outCols", "eps");
TSGPT_LAUNCHER(rmsNormGrad, launchRmsNormGrad, "dy", "x", "xBf16", "acc", "dx", "rows", "cols", "outCols", "eps");

}  // namespace tsgpt
