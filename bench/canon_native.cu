// The fused Canon layer (canon_conv.cu) without Node: forward and backward of each variant against a float64 CPU
// reference on one random problem with random document boundaries (relative errors), a bit-identical rerun of the
// backward (dw's fixed-order sums), and CUDA-event timings with bf16 x and dy as training stores them.
// For kernel work on the GPU machine: runs under compute-sanitizer, needs only the CUDA runtime.
//   nvcc -std=c++17 -arch=sm_90a -O2 bench/canon_native.cu backend-cuda/ops/canon_conv/canon_conv.cu -o /tmp/canon_native
//   /tmp/canon_native B T C variant [seed] variant: plain | heads (Canon B: q and k heads of 128 normed, C = 2304 at the
//                                          speedrun) | rows (Canon A and C: the row normed) | relu2 (Canon D and ReLU²);
//                                          seed: random by default, printed to rerun a failure
//   e.g. /tmp/canon_native 1 32768 3072 relu2     (the speedrun's Canon D)
#include <cuda_bf16.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../backend-cuda/ops/canon_conv/canon_conv.h"
#include "native_bench.h"

using namespace tsgpt;

int main(int argc, char** argv) {
  const std::string variant = argc == 5 || argc == 6 ? argv[4] : "";
  if (variant != "plain" && variant != "heads" && variant != "rows" && variant != "relu2") {
    std::fprintf(stderr, "usage: %s B T C plain|heads|rows|relu2 [seed]\n", argv[0]);
    return 2;
  }
  const int64_t B = std::atoll(argv[1]), T = std::atoll(argv[2]), C = std::atoll(argv[3]), rows = B * T, n = rows * C;
  const bool rowNorm = variant == "rows", relu2 = variant == "relu2";
  const int64_t group = variant == "heads" ? 128 : 0, normChannels = variant == "heads" ? C / 3 * 2 : 0;  // q|k of q|k|v
  const float eps = 1e-6f;
  std::mt19937 rng = seededRng(argc, argv, 5);
  auto random = [&](int64_t count, float scale) { return uniformValues(rng, count, scale); };
  // the values as bf16 holds them, so that the float and bf16 runs see the same inputs
  const std::vector<float> x = bf16Values(random(n, 1.f)), dy = bf16Values(random(n, 1.f)), w = random(C * 4, 0.25f);
  const std::vector<int32_t> doc = randomDocuments(rng, rows, T);

  // float64 reference: z (the taps' input), h the conv, y; g = the conv's gradient, dz, dx, dw
  std::vector<double> z(x.begin(), x.end()), rstd(n, 1.0);
  for (int64_t r = 0; r < rows; r++) {
    const int64_t span = rowNorm ? C : group;
    for (int64_t c0 = 0; c0 < (rowNorm ? C : normChannels); c0 += span) {
      double ss = 0;
      for (int64_t c = c0; c < c0 + span; c++) ss += double(x[r * C + c]) * x[r * C + c];
      const double s = 1 / std::sqrt(ss / span + eps);
      for (int64_t c = c0; c < c0 + span; c++) { z[r * C + c] *= s; rstd[r * C + c] = s; }
    }
  }
  auto same = [&](int64_t later, int64_t s) { return later % T >= s && doc[later - s] == doc[later]; };
  std::vector<double> h(n), y(n), g(n), dz(n), dx(n), dw(C * 4, 0.0);
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < C; c++) {
      double acc = z[r * C + c] * (1 + w[c * 4 + 3]);
      for (int64_t s = 1; s <= 3; s++) if (same(r, s)) acc += w[c * 4 + 3 - s] * z[(r - s) * C + c];
      h[r * C + c] = acc;
      y[r * C + c] = relu2 ? (acc > 0 ? acc * acc : 0) : acc;
      g[r * C + c] = relu2 ? (acc > 0 ? 2 * acc * dy[r * C + c] : 0) : dy[r * C + c];
    }
  }
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < C; c++) {
      double acc = g[r * C + c] * (1 + w[c * 4 + 3]);
      dw[c * 4 + 3] += g[r * C + c] * z[r * C + c];
      for (int64_t s = 1; s <= 3; s++) {
        if (r + s < rows && same(r + s, s)) acc += w[c * 4 + 3 - s] * g[(r + s) * C + c];
        if (same(r, s)) dw[c * 4 + 3 - s] += g[r * C + c] * z[(r - s) * C + c];
      }
      dz[r * C + c] = acc;
    }
    for (int64_t c = 0; c < C; c++) dx[r * C + c] = dz[r * C + c];
    if (rowNorm) {  // through the row's norm: dx = rstd·dz − x·rstd³·Σdz·x / C (rms_norm.cu's backward)
      double dot = 0;
      for (int64_t c = 0; c < C; c++) dot += dz[r * C + c] * x[r * C + c];
      const double s = rstd[r * C];
      for (int64_t c = 0; c < C; c++) dx[r * C + c] = s * dz[r * C + c] - x[r * C + c] * s * s * s * dot / C;
    }
    for (int64_t c0 = 0; c0 < normChannels; c0 += group) {
      double dot = 0;
      for (int64_t c = c0; c < c0 + group; c++) dot += dz[r * C + c] * z[r * C + c];
      for (int64_t c = c0; c < c0 + group; c++) dx[r * C + c] = rstd[r * C + c] * (dz[r * C + c] - z[r * C + c] * dot / group);
    }
  }

  // dw's partials: one per kCanonRowsPerPartial rows, or with the row norm one per kCanonRowNormRows and their groups
  const int64_t rowNormChunks = (rows + kCanonRowNormRows - 1) / kCanonRowNormRows;
  const int64_t partialCount = rowNorm ? rowNormChunks + (rowNormChunks + kCanonPartialsPerGroup - 1) / kCanonPartialsPerGroup
                                       : (rows + kCanonRowsPerPartial - 1) / kCanonRowsPerPartial;
  Buffer dX(n), dDy(n), dW(C * 4), oY(n), oDx(n), oDw(C * 4), partials(partialCount * C * 4), scratch(rows);
  int32_t* dDoc;
  check(cudaMalloc(&dDoc, rows * 4), "cudaMalloc");
  check(cudaMemcpy(dDoc, doc.data(), rows * 4, cudaMemcpyHostToDevice), "upload");
  dX.upload(x); dDy.upload(dy); dW.upload(w);
  auto forward = [&](const void* in, bool inBf16, void* out, bool outBf16) {
    check(launchCanonConv(0, in, inBf16, dW.d, dDoc, out, outBf16, B, T, C, normChannels, group ? group : 1, eps, rowNorm,
                          rowNorm ? scratch.d : nullptr, relu2), "forward");
  };
  auto backward = [&](const void* g_, bool gBf16, const void* in, bool inBf16, void* out, bool outBf16) {
    check(launchCanonConvGrad(0, g_, gBf16, in, inBf16, dW.d, dDoc, out, outBf16, oDw.d, nullptr, partials.d, B, T, C, normChannels,
                              group ? group : 1, eps, rowNorm, nullptr, nullptr, relu2), "backward");
  };
  forward(dX.d, false, oY.d, false);
  backward(dDy.d, false, dX.d, false, oDx.d, false);
  check(cudaDeviceSynchronize(), "run");
  std::printf("%s, B %lld T %lld C %lld (float32 tensors against float64):\n", variant.c_str(), (long long)B, (long long)T, (long long)C);
  double worst = report("y", oY.download(), y);
  worst = std::fmax(worst, report("dx", oDx.download(), dx));
  worst = std::fmax(worst, report("dw", oDw.download(), dw));
  const std::vector<float> first = oDw.download();
  backward(dDy.d, false, dX.d, false, oDx.d, false);
  const bool bitSame = std::memcmp(first.data(), oDw.download().data(), first.size() * 4) == 0;
  std::printf("  dw rerun bit-identical: %s\n", bitSame ? "yes" : "NO");

  // timings with bf16 x, dy and y (and dx where training stores it in bf16: Canon B and D, a projection's output)
  std::vector<__nv_bfloat16> xb(n), dyb(n);
  for (int64_t i = 0; i < n; i++) { xb[i] = __float2bfloat16(x[i]); dyb[i] = __float2bfloat16(dy[i]); }
  Buffer xB(n / 2 + 1), dyB(n / 2 + 1), yB(n / 2 + 1), dxB(n / 2 + 1);  // n bf16 each
  check(cudaMemcpy(xB.d, xb.data(), n * 2, cudaMemcpyHostToDevice), "upload");
  check(cudaMemcpy(dyB.d, dyb.data(), n * 2, cudaMemcpyHostToDevice), "upload");
  const bool dxBf16 = variant == "heads" || relu2;
  timeBandwidth("forward", [&] { forward(xB.d, true, yB.d, true); }, 2.0 * 2 * n);
  timeBandwidth("backward", [&] { backward(dyB.d, true, xB.d, true, dxBf16 ? dxB.d : oDx.d, dxBf16); }, 2.0 * 2 * n + (dxBf16 ? 2.0 : 4.0) * n);
  check(cudaDeviceSynchronize(), "timings");
  cudaFree(dDoc);
  // float32 taps against float64; the head norm's backward subtracts nearly equal terms (bound 1e-3 as attention_inputs')
  std::printf("worst error %.2e: %s\n", worst, worst < 1e-3 && bitSame ? "PASS" : "FAIL");
  return worst < 1e-3 && bitSame ? 0 : 1;
}
