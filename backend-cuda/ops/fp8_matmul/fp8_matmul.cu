// FP8 quantisation for the head's FP8 matmuls (train_gpt.ts's fp8Head(), record-2025-11.md §3.3): the codes of
// x/scale in e4m3 (activations, weights) or e5m2 (the logits' gradient), written row-major, transposed or both, as
// cuBLASLt's FP8 GEMMs (native/matmul.cc's matmulFp8) need each operand with its contraction dimension contiguous.
// Memory-bound: one read of x and one byte written per element and layout, in fp8_codes.cuh's 64×64 tiles.
#include "fp8_matmul.h"
#include "fp8_codes.cuh"

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <type_traits>

#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

// writeFp8Tiles' source: x / scale, x loaded 4 values at once where kAligned.
template <typename In, bool kAligned>
struct QuotientSource {
  using Raw = Packed4<In>;
  const In* x;
  int64_t cols;
  Fp8Scale scale;
  __device__ void row(int, int64_t) {}
  __device__ Raw load(int, int64_t r, int64_t c) const { return loadPacked4<kAligned>(x + r * cols + c); }
  __device__ void values(int, const Raw& raw, int64_t, float (&v)[4]) const {
    widen(raw, v);
#pragma unroll
    for (int k = 0; k < 4; ++k) v[k] = divided(v[k], scale);  // the IEEE quotient, as tfjs's
  }
};

template <typename In, bool E5M2, bool kAligned>
__global__ void __launch_bounds__(256) fp8QuantiseKernel(const In* __restrict__ x, int64_t rows, int64_t cols, Fp8Scale scale,
                                                         uint8_t* __restrict__ out, uint8_t* __restrict__ outT) {
  QuotientSource<In, kAligned> src{x, cols, scale};
  writeFp8Tiles<E5M2>(rows, cols, out, outT, src);
}

template <typename In, bool E5M2>
void launchTyped(cudaStream_t s, const void* x, int64_t rows, int64_t cols, float scale, uint8_t* out, uint8_t* outT) {
  const auto launch = [&](auto alignedC) {
    constexpr auto kernel = fp8QuantiseKernel<In, E5M2, decltype(alignedC)::value>;
    kernel<<<fp8TileGrid<kernel>(rows, cols), 256, 0, s>>>(static_cast<const In*>(x), rows, cols, fp8Scale(scale), out, outT);
  };
  // cols % 4 == 0, so every row's 4-value groups are aligned where x is
  if (reinterpret_cast<uintptr_t>(x) % (4 * sizeof(In)) == 0) launch(std::true_type{});
  else launch(std::false_type{});
}

}  // namespace

cudaError_t launchFp8Quantise(cudaStream_t s, const void* x, bool xBf16, int64_t rows, int64_t cols, float scale, bool e5m2,
                              uint8_t* out, uint8_t* outT) {
  if (rows == 0 || cols == 0 || (out == nullptr && outT == nullptr)) return cudaSuccess;
  const auto misaligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 != 0; };
  if (rows < 0 || cols < 0 || rows % 4 || cols % 4 || misaligned(out) || misaligned(outT)) return cudaErrorInvalidValue;
  if (xBf16) {
    if (e5m2) launchTyped<__nv_bfloat16, true>(s, x, rows, cols, scale, out, outT);
    else launchTyped<__nv_bfloat16, false>(s, x, rows, cols, scale, out, outT);
  } else {
    if (e5m2) launchTyped<float, true>(s, x, rows, cols, scale, out, outT);
    else launchTyped<float, false>(s, x, rows, cols, scale, out, outT);
  }
  return cudaGetLastError();
}

TSGPT_LAUNCHER(fp8Quantise, launchFp8Quantise, "x", "xBf16", "rows", "cols", "scale", "e5m2", "out", "outT");

}  // namespace tsgpt
