// The fused Canon layer (canon_conv.cu) without Node: forward and backward of each variant against a float64 CPU
// reference on one random problem with random document boundaries (relative errors), a bit-identical rerun of the
// backward (dw's fixed-order sums), and CUDA-event timings with the tensors stored as training stores them. The row
// norm's backward also adds a gradient so far (acc) and writes dx's bf16 twin, as Canon A and C do in training, and both
// ways take z's first 12 channels as a second output (lead, and its gradient dLead: Canon A's z as the attention gate's
// input); the rerun of the backward takes dLead in bf16 (the same values), and must give the same bits.
// For kernel work on the GPU machine: runs under compute-sanitizer, needs only the CUDA runtime.
//   nvcc -std=c++17 -arch=sm_90a -O2 bench/canon_native.cu backend-cuda/ops/canon_conv/canon_conv.cu -o /tmp/canon_native
//   /tmp/canon_native B T C variant [seed] variant: plain | heads (Canon B: q and k heads of 128 normed, C = 2304 at the
//                                          speedrun) | rows (Canon A and C: the row normed) | relu2 (Canon D and ReLU²);
//                                          seed: random by default, printed to rerun a failure
//   e.g. /tmp/canon_native 1 32768 3072 relu2     (the speedrun's Canon D)
#include <cuda_bf16.h>

#include <algorithm>
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

  // float64 reference: z (the taps' input: the row normed, or the q and k heads), h the conv, y; g = the conv's gradient,
  // dz, dx through the norm, dw
  const SpanNorm norm{rows, C, rowNorm ? C : normChannels, rowNorm ? C : group, eps};
  std::vector<double> z, rstd, y(n), g(n), dz, dx, dw;
  norm.forward(x, z, rstd);
  const CanonReference canon{rows, T, C, w, doc};
  const std::vector<double> h = canon.taps(z);
  for (int64_t i = 0; i < n; i++) {
    y[i] = relu2 ? (h[i] > 0 ? h[i] * h[i] : 0) : h[i];
    g[i] = relu2 ? (h[i] > 0 ? 2 * h[i] * dy[i] : 0) : dy[i];
  }
  canon.tapsGradient(g, z, dz, dw);
  // the row norm's leading channels as a second output: lead = z's first leadCols, whose gradient dLead adds to dz's
  const int64_t leadCols = rowNorm ? std::min<int64_t>(12, C) : 0;
  const std::vector<float> dLead = bf16Values(random(rows * leadCols, 1.f));
  std::vector<double> lead(rows * leadCols);
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < leadCols; c++) {
      lead[r * leadCols + c] = z[r * C + c];
      dz[r * C + c] += dLead[r * leadCols + c];
    }
  }
  norm.backward(dz, z, rstd, dx);
  // the row norm's gradient adds x's gradient so far (acc: the residual's) in its stores, and writes dx's bf16 twin
  const std::vector<float> acc = rowNorm ? random(n, 1.f) : std::vector<float>{};
  for (size_t i = 0; i < acc.size(); i++) dx[i] += acc[i];

  // dw's partials: one per kCanonRowsPerPartial rows, or with the row norm one per kCanonRowNormRows and their groups
  const int64_t rowNormChunks = (rows + kCanonRowNormRows - 1) / kCanonRowNormRows;
  const int64_t partialCount = rowNorm ? rowNormChunks + (rowNormChunks + kCanonPartialsPerGroup - 1) / kCanonPartialsPerGroup
                                       : (rows + kCanonRowsPerPartial - 1) / kCanonRowsPerPartial;
  Buffer dX(n), dDy(n), dW(C * 4), oY(n), oDx(n), oDw(C * 4), partials(partialCount * C * 4), dAcc(rowNorm ? n : 0),
      twin(rowNorm ? n / 2 + 1 : 0), oLead(rows * leadCols), dDLead(rows * leadCols), dLeadB(rows * leadCols / 2 + 1);  // twin, dLeadB: bf16
  int32_t* dDoc;
  check(cudaMalloc(&dDoc, rows * 4), "cudaMalloc");
  check(cudaMemcpy(dDoc, doc.data(), rows * 4, cudaMemcpyHostToDevice), "upload");
  dX.upload(x); dDy.upload(dy); dW.upload(w);
  if (rowNorm) {
    dAcc.upload(acc);
    dDLead.upload(dLead);
    uploadBf16(dLeadB.d, dLead);
  }
  // lead: z's first leadCols channels in y's type (the row norm only)
  auto forward = [&](const void* in, bool inBf16, void* out, bool outBf16, void* lead) {
    check(launchCanonConv(0, in, inBf16, dW.d, dDoc, out, outBf16, B, T, C, normChannels, group ? group : 1, eps, rowNorm, relu2,
                          lead, leadCols), "forward");
  };
  // dLeadG: dLead (float, or bf16 where dLeadBf16; the row norm only)
  auto backward = [&](const void* g_, bool gBf16, const void* in, bool inBf16, void* out, bool outBf16, const void* dLeadG, bool dLeadBf16) {
    check(launchCanonConvGrad(0, g_, gBf16, in, inBf16, dW.d, dDoc, out, outBf16, oDw.d, nullptr, partials.d, B, T, C, normChannels,
                              group ? group : 1, eps, rowNorm, rowNorm ? dAcc.d : nullptr,
                              rowNorm ? reinterpret_cast<__nv_bfloat16*>(twin.d) : nullptr, relu2, dLeadG, dLeadBf16, leadCols), "backward");
  };
  forward(dX.d, false, oY.d, false, leadCols ? oLead.d : nullptr);
  backward(dDy.d, false, dX.d, false, oDx.d, false, leadCols ? dDLead.d : nullptr, false);
  check(cudaDeviceSynchronize(), "run");
  std::printf("%s, B %lld T %lld C %lld (float32 tensors against float64):\n", variant.c_str(), (long long)B, (long long)T, (long long)C);
  double worst = report("y", oY.download(), y);
  if (leadCols) worst = std::fmax(worst, report("lead", oLead.download(), lead));
  worst = std::fmax(worst, report("dx", oDx.download(), dx));
  worst = std::fmax(worst, report("dw", oDw.download(), dw));
  // a bf16 result (bits on the device) against the float32 one rounded to nearest even, bit for bit
  auto roundedSame = [&](const std::vector<float>& want, const void* bits) {
    std::vector<__nv_bfloat16> got(want.size());
    check(cudaMemcpy(got.data(), bits, want.size() * 2, cudaMemcpyDeviceToHost), "download");
    for (size_t i = 0; i < want.size(); i++) {
      const __nv_bfloat16 rounded = __float2bfloat16(want[i]);
      if (std::memcmp(&rounded, &got[i], 2) != 0) return false;
    }
    return true;
  };
  bool twinSame = true;  // the twin is dx rounded to bf16
  if (rowNorm) {
    twinSame = roundedSame(oDx.download(), twin.d);
    std::printf("  dx's bf16 twin: %s\n", twinSame ? "dx rounded, bit for bit" : "NOT dx rounded");
  }
  // the forward's outputs stored in bf16 (as training stores them): the float32 run's rounded
  Buffer yBits(n / 2 + 1), leadBits(rows * leadCols / 2 + 1);
  forward(dX.d, false, yBits.d, true, leadCols ? leadBits.d : nullptr);
  const bool bf16Same = roundedSame(oY.download(), yBits.d) && (!leadCols || roundedSame(oLead.download(), leadBits.d));
  std::printf("  y%s in bf16: %s\n", leadCols ? " and lead" : "", bf16Same ? "the float32 run's rounded, bit for bit" : "NOT the float32 run's rounded");
  const std::vector<float> first = oDw.download(), firstDx = oDx.download();
  backward(dDy.d, false, dX.d, false, oDx.d, false, leadCols ? dLeadB.d : nullptr, true);  // dLead in bf16 this time
  const bool bitSame = std::memcmp(first.data(), oDw.download().data(), first.size() * 4) == 0 &&
                       std::memcmp(firstDx.data(), oDx.download().data(), firstDx.size() * 4) == 0;
  std::printf("  dw and dx rerun bit-identical%s: %s\n", rowNorm ? " (dLead in bf16)" : "", bitSame ? "yes" : "NO");

  // timings with x, dy, y and dx as training stores them: y and dy in bf16; x in bf16 where it is a projection's output
  // (Canon B and D, whose dx is bf16 too), the float32 residual stream at A and C (rows)
  Buffer xB(n / 2 + 1), dyB(n / 2 + 1), yB(n / 2 + 1), dxB(n / 2 + 1);  // n bf16 each
  uploadBf16(xB.d, x);
  uploadBf16(dyB.d, dy);
  const bool dxBf16 = variant == "heads" || relu2, xBf16 = !rowNorm;
  const void* xTimed = xBf16 ? static_cast<const void*>(xB.d) : dX.d;
  const double xBytes = (xBf16 ? 2.0 : 4.0) * n;
  // the row norm's lead (bf16, as y) and dLead (bf16, as the gate's projection writes it), as Canon A's in training
  Buffer leadB(rows * leadCols / 2 + 1);
  timeBandwidth("forward", [&] { forward(xTimed, xBf16, yB.d, true, leadCols ? leadB.d : nullptr); }, xBytes + 2.0 * n + 2.0 * rows * leadCols);
  // the row norm's backward reads acc (float32) and writes the twin (bf16) too, as in training
  timeBandwidth("backward", [&] { backward(dyB.d, true, xTimed, xBf16, dxBf16 ? dxB.d : oDx.d, dxBf16, leadCols ? dLeadB.d : nullptr, true); },
                xBytes + 2.0 * n + (dxBf16 ? 2.0 : 4.0) * n + (rowNorm ? 6.0 * n + 2.0 * rows * leadCols : 0.0));
  check(cudaDeviceSynchronize(), "timings");
  cudaFree(dDoc);
  // float32 taps against float64; the head norm's backward subtracts nearly equal terms (bound 1e-3 as attention_inputs')
  const bool pass = worst < 1e-3 && bitSame && twinSame && bf16Same;
  std::printf("worst error %.2e: %s\n", worst, pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
