// The fused RMSNorm (rms_norm.cu) without Node: the forward (x float32 and bf16, y float32 and bf16, all channels and
// the gate's first outCols) and the backward (dy float32 and bf16, without and with the accumulated gradient) against a
// float64 CPU reference on one random problem (relative errors), then CUDA-event timings at the layout training uses
// (x, y and dy bf16; dx and acc float32). For kernel work on the GPU machine: runs under compute-sanitizer, needs only the CUDA runtime.
//   nvcc -std=c++17 -arch=sm_90a -O2 bench/rms_norm_native.cu backend-cuda/ops/rms_norm/rms_norm.cu -o /tmp/rms_norm_native
//   /tmp/rms_norm_native rows cols outCols [seed]   (seed: random by default, printed to rerun a failure)
//   e.g. /tmp/rms_norm_native 32768 768 768   (the speedrun's norms: a packed stream of 32,768 tokens, d = 768)
//        /tmp/rms_norm_native 32768 768 12    (the attention gate's 12 normed channels)
//        /tmp/rms_norm_native 1000 770 770    (rows not a multiple of 4 values: the one-value path)
#include <cuda_bf16.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../backend-cuda/ops/rms_norm/rms_norm.h"
#include "native_bench.h"

using namespace tsgpt;

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s rows cols outCols [seed]\n", argv[0]);
    return 2;
  }
  const int64_t rows = std::atoll(argv[1]), cols = std::atoll(argv[2]), outCols = std::atoll(argv[3]);
  if (rows < 1 || cols < 1 || outCols < 1 || outCols > cols) {
    std::fprintf(stderr, "rows, cols ≥ 1 and 1 ≤ outCols ≤ cols\n");
    return 2;
  }
  const unsigned seed = argc == 5 ? unsigned(std::strtoul(argv[4], nullptr, 10)) : std::random_device{}();
  const float eps = 1e-6f;
  std::printf("rows %lld cols %lld outCols %lld, seed %u\n", (long long)rows, (long long)cols, (long long)outCols, seed);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  const size_t n = size_t(rows) * cols, nOut = size_t(rows) * outCols;
  std::vector<float> x(n), dy(nOut), acc(n);
  for (float& e : x) e = __bfloat162float(__float2bfloat16(normal(rng) * 3.f));  // bf16 values: the float and bf16 runs agree
  for (float& e : dy) e = __bfloat162float(__float2bfloat16(normal(rng)));  // bf16 values too, for the bf16 dy's run
  for (float& e : acc) e = normal(rng);

  // float64 reference
  std::vector<double> y(nOut), dx(n), dxAcc(n);
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = &x[size_t(r) * cols];
    const float* g = &dy[size_t(r) * outCols];
    double ss = 0, dot = 0;
    for (int64_t j = 0; j < cols; j++) ss += double(xr[j]) * xr[j];
    for (int64_t j = 0; j < outCols; j++) dot += double(g[j]) * xr[j];
    const double rs = 1 / std::sqrt(ss / cols + eps), c = rs * rs * rs * dot / cols;
    for (int64_t j = 0; j < outCols; j++) y[size_t(r) * outCols + j] = xr[j] * rs;
    for (int64_t j = 0; j < cols; j++) {
      const size_t i = size_t(r) * cols + j;
      dx[i] = rs * (j < outCols ? g[j] : 0.0) - c * xr[j];
      dxAcc[i] = dx[i] + acc[i];
    }
  }

  Buffer dX(n), xB(n / 2 + 1), dY(nOut), yB(nOut / 2 + 1), dDy(nOut), dyB(nOut / 2 + 1), dAcc(n), dDx(n);  // xB, yB, dyB: bf16
  dX.upload(x);
  uploadBf16(xB.d, x);
  uploadBf16(dyB.d, dy);
  dDy.upload(dy);
  dAcc.upload(acc);
  double worst = 0, worstBf16 = 0;
  for (const bool xBf16 : {false, true}) {
    const void* in = xBf16 ? static_cast<const void*>(xB.d) : dX.d;
    check(launchRmsNorm(0, in, xBf16, dY.d, false, rows, cols, outCols, eps), "forward");
    worst = std::fmax(worst, report(xBf16 ? "y, bf16 x" : "y", dY.download(), y));
    check(launchRmsNorm(0, in, xBf16, yB.d, true, rows, cols, outCols, eps), "forward, bf16 y");
    worstBf16 = std::fmax(worstBf16, report("bf16 y", downloadBf16(yB.d, nOut), y));
    for (const bool dyBf16 : {false, true}) {
      const void* g = dyBf16 ? static_cast<const void*>(dyB.d) : dDy.d;
      check(launchRmsNormGrad(0, g, dyBf16, in, xBf16, nullptr, dDx.d, rows, cols, outCols, eps), "backward");
      worst = std::fmax(worst, report(dyBf16 ? "dx, bf16 dy" : "dx", dDx.download(), dx));
      check(launchRmsNormGrad(0, g, dyBf16, in, xBf16, dAcc.d, dDx.d, rows, cols, outCols, eps), "backward, acc");
      worst = std::fmax(worst, report(dyBf16 ? "dx + acc, bf16 dy" : "dx + acc", dDx.download(), dxAcc));
    }
  }
  // a row's leading channels must be the whole norm's, bit for bit (the gate's channels and the full normed row
  // are the same values in the model)
  bool leadingExact = true;
  if (outCols < cols) {
    Buffer full(n);
    check(launchRmsNorm(0, dX.d, false, dY.d, false, rows, cols, outCols, eps), "forward, leading");
    check(launchRmsNorm(0, dX.d, false, full.d, false, rows, cols, cols, eps), "forward, whole");
    const std::vector<float> lead = dY.download(), whole = full.download();
    for (int64_t r = 0; r < rows && leadingExact; r++)
      for (int64_t j = 0; j < outCols; j++)
        if (std::memcmp(&lead[size_t(r) * outCols + j], &whole[size_t(r) * cols + j], 4) != 0) {
          std::printf("leading channels differ from the whole norm's at row %lld, channel %lld\n", (long long)r, (long long)j);
          leadingExact = false;
          break;
        }
  }
  check(cudaDeviceSynchronize(), "kernels");
  const bool ok = worst < 1e-4 && worstBf16 < 1e-2 && leadingExact;  // float32 sums of ≤ cols terms; bf16 y: half a bf16 step
  std::printf("%s: worst float32 error %.2e (bound 1e-4), bf16 y %.2e (bound 1e-2)\n", ok ? "ok" : "FAILED", worst, worstBf16);

  timeBandwidth("forward", [&] { check(launchRmsNorm(0, xB.d, true, yB.d, true, rows, cols, outCols, eps), "forward"); },
                2.0 * n + 2.0 * nOut);  // x bf16 in, y bf16 out
  timeBandwidth("backward", [&] {
    check(launchRmsNormGrad(0, dyB.d, true, xB.d, true, dAcc.d, dDx.d, rows, cols, outCols, eps), "backward");
  }, 2.0 * nOut + 2.0 * n + 8.0 * n);  // dy bf16 in, x bf16 in, acc in, dx out
  return ok ? 0 : 1;
}
