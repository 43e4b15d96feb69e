// Soft-capped cross-entropy over rows of raw logits [rows, cols], forward and backward side by side.
//   z = cap(x):  sigmoid: scale·σ(x/temp)   tanh: scale·tanh(x/scale)   none: x
//   forward:  lse_i = log Σ_j exp(z_ij),  loss_i = lse_i − z_i,t_i,  out = Σ_i loss_i (÷ rows for mean)
//   backward: dx_ij = dy·w·(exp(z_ij − lse_i) − [j = t_i])·z'(x_ij),  w = 1 (sum) or 1/rows (mean),
//             z' = scale/temp·σ(1−σ) | 1 − tanh² | 1
// The capped logits, the softmax and the one-hot never exist in memory: the forward reads the
// logits once (online softmax: a running max and a running sum of exp, one exp per element) and
// keeps 2·rows floats (lse, then each row's loss); the backward reads the logits once more and
// writes dlogits once, recomputing z from x and the saved lse. A target outside [0, cols) makes its
// row's loss and gradient NaN (checking on the host would need the targets there: a sync per step).
// Under bf16 matmul precision dlogits is written in bf16 only (only the head's two gradient matmuls read
// it): half the bytes, and no conversion pass before each of them. The logits may be bf16 (the FP8 head's, as the
// record's): read as such, computed in fp32.
#include <type_traits>
#include "softcap_cross_entropy.h"
#include "softcap.cuh"

#include "../../native/launch.h"
#include "../../native/rows.cuh"
#include "../../native/vec.cuh"
#include "../../native/launchers.h"

namespace tsgpt {
namespace {

// Online softmax state (m, s): s = Σ exp(z − m) over the values seen, m their running max.
__device__ __forceinline__ void onlineAdd(float z, float& m, float& s) {
  if (z > m) {
    s = s * expf(m - z) + 1.f;
    m = z;
  } else {
    s += expf(z - m);  // a NaN z makes s NaN: the row's loss is NaN, not silently finite
  }
}

__device__ __forceinline__ void onlineMerge(float& m, float& s, float m2, float s2) {
  const float mm = fmaxf(m, m2);
  if (mm == -INFINITY) return;  // both empty
  s = s * expf(m - mm) + s2 * expf(m2 - mm);
  m = mm;
}

// The block's (m, s) in every thread: a warp tree, then one warp over the warps' states.
__device__ __forceinline__ void blockOnlineMerge(float& m, float& s, float* scratchM, float* scratchS) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    onlineMerge(m, s, m2, s2);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, nWarps = blockDim.x / 32;
  if (lane == 0) {
    scratchM[warp] = m;
    scratchS[warp] = s;
  }
  __syncthreads();
  m = lane < nWarps ? scratchM[lane] : -INFINITY;
  s = lane < nWarps ? scratchS[lane] : 0.f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    onlineMerge(m, s, m2, s2);
  }
}

// One block per row. kVec4: cols % 4 == 0 and the logits 16-byte aligned (float4 loads).
template <int kCap, bool kVec4, typename In>
__global__ void softcapCrossEntropyKernel(const In* __restrict__ logits, const int32_t* __restrict__ targets,
                                          float* __restrict__ rowStats, int64_t rows, int64_t cols, CapParams p) {
  __shared__ float scratchM[32], scratchS[32];
  const int64_t row = blockIdx.x;
  const In* xr = logits + row * cols;
  float m = -INFINITY, s = 0.f;
  if (kVec4 && fixedReference(kCap, p.scale)) {
#pragma unroll 4  // four loads in flight a thread: one at a time, the row's read waited on latency (~2 TB/s)
    for (int64_t j = threadIdx.x; j < cols / 4; j += blockDim.x) {
      float v[4];
      loadVec<4>(xr + 4 * j, v);
#pragma unroll
      for (int k = 0; k < 4; ++k) s += fastExp2(fmaf(capUnit<kCap>(v[k], p), p.scaleLog2e, -p.scaleLog2e));  // exp(z − s); a NaN z: s NaN, the loss NaN
    }
    if (s != 0.f) m = p.scale;  // else this thread saw no column: the empty state (−∞, 0); a NaN s keeps m = scale
  } else if (kVec4) {
    for (int64_t j = threadIdx.x; j < cols / 4; j += blockDim.x) {
      float v[4];
      loadVec<4>(xr + 4 * j, v);
#pragma unroll
      for (int k = 0; k < 4; ++k) onlineAdd(capped<kCap>(v[k], p), m, s);
    }
  } else {
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) onlineAdd(capped<kCap>(toFloat(xr[j]), p), m, s);
  }
  blockOnlineMerge(m, s, scratchM, scratchS);
  if (threadIdx.x == 0) {
    const float lse = m + logf(s);
    const int64_t t = targets[row];
    rowStats[row] = lse;
    rowStats[rows + row] = t >= 0 && t < cols ? lse - capped<kCap>(toFloat(xr[t]), p) : NAN;
  }
}

// The scalar: the rows' losses summed by one block in a fixed order (deterministic run to run).
__global__ void sumRowLossesKernel(const float* __restrict__ rowLoss, float* __restrict__ out, int64_t rows,
                                   bool mean) {
  __shared__ float scratch[32];
  float acc = 0.f;
  for (int64_t j = threadIdx.x; j < rows; j += blockDim.x) acc += rowLoss[j];
  acc = blockReduce<false>(acc, scratch);
  if (threadIdx.x == 0) *out = mean && rows > 0 ? acc / float(rows) : acc;  // an empty mean is 0, as tfjs's
}

template <int kCap, bool kVec4, typename In, typename Out>
__global__ void softcapCrossEntropyGradKernel(const float* __restrict__ dy, const In* __restrict__ logits,
                                              const int32_t* __restrict__ targets, const float* __restrict__ lse,
                                              Out* __restrict__ dlogits, int64_t cols, float w, CapParams p) {
  const int64_t row = blockIdx.x;
  const In* xr = logits + row * cols;
  Out* dr = dlogits + row * cols;
  const float l = lse[row];
  const int64_t t = targets[row];
  const SoftcapRow rowConsts = softcapRow(l, t, cols, dy[0] * w, p);
  auto grad = [&](float x, int64_t j) {
    return j == t ? softcapGrad<kCap, true>(x, rowConsts, p) : softcapGrad<kCap, false>(x, rowConsts, p);
  };
  if (kVec4) {
    for (int64_t j = threadIdx.x; j < cols / 4; j += blockDim.x) {
      float v[4];
      loadVec<4>(xr + 4 * j, v);
      const float d[4] = {grad(v[0], 4 * j), grad(v[1], 4 * j + 1), grad(v[2], 4 * j + 2), grad(v[3], 4 * j + 3)};
      storeVec<4>(dr + 4 * j, d);
    }
  } else {
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float d[1] = {grad(toFloat(xr[j]), j)};
      storeVec<1>(dr + j, d);
    }
  }
}

// Calls f(std::integral_constant<int, cap>, std::bool_constant<vec4>) for the runtime choice.
template <typename F>
cudaError_t dispatch(int cap, bool vec4, F f) {
  auto withVec = [&](auto capC) {
    if (vec4) f(capC, std::true_type{});
    else f(capC, std::false_type{});
    return cudaGetLastError();
  };
  switch (cap) {
    case kLogitCapNone: return withVec(std::integral_constant<int, kLogitCapNone>{});
    case kLogitCapSigmoid: return withVec(std::integral_constant<int, kLogitCapSigmoid>{});
    case kLogitCapTanh: return withVec(std::integral_constant<int, kLogitCapTanh>{});
    default: return cudaErrorInvalidValue;
  }
}

// A block per row: 512 threads for vocabulary-sized rows (≈25 float4 per thread at 50304), else 128.
unsigned rowThreads(int64_t cols) { return cols >= 8192 ? 512 : 128; }

bool canVec4(const void* a, const void* b, int64_t cols) {
  return cols % 4 == 0 && reinterpret_cast<uintptr_t>(a) % 16 == 0 && (b == nullptr || reinterpret_cast<uintptr_t>(b) % 16 == 0);
}

}  // namespace

cudaError_t launchSoftcapCrossEntropy(cudaStream_t s, const void* logits, bool logitsBf16, const int32_t* targets,
                                      float* rowStats, float* loss, int64_t rows, int64_t cols, int cap, float scale,
                                      float temp, bool mean) {
  if (rows > 0x7fffffffLL || cols <= 0) return cudaErrorInvalidValue;
  if (rows > 0) {
    const CapParams p = capParams(cap, scale, temp);
    const cudaError_t e = dispatch(cap, canVec4(logits, nullptr, cols), [&](auto capC, auto vecC) {
      constexpr int kCap = decltype(capC)::value;
      constexpr bool kVec4 = decltype(vecC)::value;
      if (logitsBf16) {
        softcapCrossEntropyKernel<kCap, kVec4><<<(unsigned)rows, rowThreads(cols), 0, s>>>(
            static_cast<const __nv_bfloat16*>(logits), targets, rowStats, rows, cols, p);
      } else {
        softcapCrossEntropyKernel<kCap, kVec4><<<(unsigned)rows, rowThreads(cols), 0, s>>>(
            static_cast<const float*>(logits), targets, rowStats, rows, cols, p);
      }
    });
    if (e != cudaSuccess) return e;
  }
  return launchSumRowLosses(s, rowStats + rows, loss, rows, mean);
}

cudaError_t launchSumRowLosses(cudaStream_t s, const float* rowLoss, float* loss, int64_t rows, bool mean) {
  sumRowLossesKernel<<<1, 1024, 0, s>>>(rowLoss, loss, rows, mean);
  return cudaGetLastError();
}

// The gradient kernel for the runtime choice of the logits' and dlogits' types.
template <int kCap, bool kVec4, typename In>
void launchGrad(cudaStream_t s, const float* dy, const In* logits, const int32_t* targets, const float* rowStats,
                void* dlogits, bool dlogitsBf16, int64_t rows, int64_t cols, float w, const CapParams& p) {
  if (dlogitsBf16) {
    softcapCrossEntropyGradKernel<kCap, kVec4><<<(unsigned)rows, rowThreads(cols), 0, s>>>(
        dy, logits, targets, rowStats, static_cast<__nv_bfloat16*>(dlogits), cols, w, p);
  } else {
    softcapCrossEntropyGradKernel<kCap, kVec4><<<(unsigned)rows, rowThreads(cols), 0, s>>>(
        dy, logits, targets, rowStats, static_cast<float*>(dlogits), cols, w, p);
  }
}

cudaError_t launchSoftcapCrossEntropyGrad(cudaStream_t s, const float* dy, const void* logits, bool logitsBf16,
                                          const int32_t* targets, const float* rowStats, void* dlogits,
                                          bool dlogitsBf16, int64_t rows, int64_t cols, int cap, float scale,
                                          float temp, bool mean) {
  if (rows == 0) return cudaSuccess;
  if (rows > 0x7fffffffLL || cols <= 0) return cudaErrorInvalidValue;
  const CapParams p = capParams(cap, scale, temp);
  const float w = mean ? 1.f / float(rows) : 1.f;
  return dispatch(cap, canVec4(logits, dlogits, cols), [&](auto capC, auto vecC) {
    constexpr int kCap = decltype(capC)::value;
    constexpr bool kVec4 = decltype(vecC)::value;
    if (logitsBf16) {
      launchGrad<kCap, kVec4>(s, dy, static_cast<const __nv_bfloat16*>(logits), targets, rowStats, dlogits, dlogitsBf16,
                              rows, cols, w, p);
    } else {
      launchGrad<kCap, kVec4>(s, dy, static_cast<const float*>(logits), targets, rowStats, dlogits, dlogitsBf16, rows,
                              cols, w, p);
    }
  });
}

TSGPT_LAUNCHER(softcapCrossEntropy, launchSoftcapCrossEntropy, "logits", "logitsBf16", "targets", "rowStats", "loss", "rows",
               "cols", "cap", "scale", "temp", "mean");
TSGPT_LAUNCHER(softcapCrossEntropyGrad, launchSoftcapCrossEntropyGrad, "dy", "logits", "logitsBf16", "targets", "rowStats",
               "dlogits", "dlogitsBf16", "rows", "cols", "cap", "scale", "temp", "mean");

}  // namespace tsgpt
