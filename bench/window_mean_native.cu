// The causal windowed mean (causal_window_mean.cu) without Node: the forward (x float32 and bf16) and the backward
// (without and with the accumulated gradient) against a float64 CPU reference on one random problem with random
// document boundaries (relative errors), a bit-identical rerun of the backward, and CUDA-event timings with bf16 x as
// training stores it. For kernel work on the GPU machine: runs under compute-sanitizer, needs only the CUDA runtime.
//   nvcc -std=c++17 -arch=sm_90a -O2 bench/window_mean_native.cu backend-cuda/ops/causal_window_mean/causal_window_mean.cu -o /tmp/window_mean_native
//   /tmp/window_mean_native B T C window [seed]      (seed: random by default, printed to rerun a failure)
//   e.g. /tmp/window_mean_native 1 32768 768 2048    (the speedrun's shaped attention: C = 6 heads × 128)
//        /tmp/window_mean_native 2 1000 12 300       (small, for compute-sanitizer)
//        /tmp/window_mean_native 1 4100 20 5000      (a window over T), and any shape with window 1
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../backend-cuda/ops/causal_window_mean/causal_window_mean.h"
#include "native_bench.h"

using namespace tsgpt;

// docIds [B,T], nondecreasing along each b's T tokens: a document starts at t = 0 and at 1 in 300 tokens. The last row
// b also gets boundaries where the kernel's pass 2 starts a walk (a one-token document at the last forward walk's first
// step; a document ending at t = T − 257, the backward's second walk's first step), and row 0 one document longer than
// the window (where T > w) followed by one of w / 2 tokens (shorter; at T ≤ w: two halves of T).
static std::vector<int32_t> documents(std::mt19937& rng, int64_t B, int64_t T, int64_t w) {
  std::vector<char> starts(B * T);
  for (int64_t r = 0; r < B * T; r++) starts[r] = r % T == 0 || rng() % 300 == 0;
  const int64_t lastWalk = (T - 1) / kWindowMeanWalk * kWindowMeanWalk;
  for (int64_t t : {lastWalk, lastWalk + 1, T - kWindowMeanWalk}) if (t > 0 && t < T) starts[(B - 1) * T + t] = 1;
  int64_t shortStart = T / 2;
  if (T > w) {
    const int64_t longStart = std::min(T / 8, T - w - 1), longEnd = std::min(T, longStart + 2 * w);  // > w tokens
    std::fill(starts.begin() + longStart, starts.begin() + longEnd, 0);
    starts[longStart] = 1;
    shortStart = longEnd;
  }
  for (int64_t t : {shortStart, shortStart + std::max<int64_t>(1, w / 2)}) if (t < T) starts[t] = 1;
  std::vector<int32_t> doc(B * T);
  for (int64_t r = 0, d = 0; r < B * T; r++) doc[r] = int32_t(d += starts[r]);
  return doc;
}

// The float64 reference from the header's definition in O(B·T·C), per row b: lo(t) from the last document start,
// y from prefix sums over t (|x| ≤ 2 over at most T terms: a difference of two keeps ~1e-12 relative), and dx by
// scattering each dy[t] / n(t) onto s ∈ [lo(t), t] through a difference array (+ at lo(t), − at t + 1) summed along s.
static void reference(const std::vector<float>& x, const std::vector<float>& dy, const std::vector<int32_t>& doc, int64_t B,
                      int64_t T, int64_t C, int64_t w, std::vector<double>& y, std::vector<double>& dx) {
  y.assign(B * T * C, 0.0);
  dx.assign(B * T * C, 0.0);
  std::vector<double> sums((T + 1) * C);  // row t: Σ_{s<t} x[s], then the difference array at t
  std::vector<int64_t> lo(T);
  for (int64_t b = 0; b < B; b++) {
    const int64_t row = b * T, base = row * C;
    for (int64_t t = 0, first = 0; t < T; t++) {
      if (t > 0 && doc[row + t] != doc[row + t - 1]) first = t;
      lo[t] = std::max(t - w + 1, first);
    }
    std::fill(sums.begin(), sums.end(), 0.0);
    for (int64_t t = 0; t < T; t++)
      for (int64_t c = 0; c < C; c++) sums[(t + 1) * C + c] = sums[t * C + c] + x[base + t * C + c];
    for (int64_t t = 0; t < T; t++)
      for (int64_t c = 0; c < C; c++) y[base + t * C + c] = (sums[(t + 1) * C + c] - sums[lo[t] * C + c]) / double(t - lo[t] + 1);
    std::fill(sums.begin(), sums.end(), 0.0);
    for (int64_t t = 0; t < T; t++) {
      for (int64_t c = 0; c < C; c++) {
        const double g = dy[base + t * C + c] / double(t - lo[t] + 1);
        sums[lo[t] * C + c] += g;
        sums[(t + 1) * C + c] -= g;
      }
    }
    for (int64_t s = 0; s < T; s++)
      for (int64_t c = 0; c < C; c++) dx[base + s * C + c] = (s > 0 ? dx[base + (s - 1) * C + c] : 0.0) + sums[s * C + c];
  }
}

int main(int argc, char** argv) {
  auto arg = [&](int i) { return i < argc ? std::atoll(argv[i]) : 0; };
  const int64_t B = arg(1), T = arg(2), C = arg(3), window = arg(4);
  if (argc > 6 || B < 1 || T < 1 || C < 1 || window < 1) {
    std::fprintf(stderr, "usage: %s B T C window [seed]\n", argv[0]);
    return 2;
  }
  const unsigned seed = argc == 6 ? unsigned(std::strtoul(argv[5], nullptr, 10)) : std::random_device{}();
  const int64_t w = std::min(window, T), rows = B * T, n = rows * C, chunks = (T + kWindowMeanChunk - 1) / kWindowMeanChunk;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  auto random = [&](int64_t count) { std::vector<float> v(count); for (float& e : v) e = u(rng); return v; };
  std::vector<float> x = random(n);
  for (float& e : x) e = __bfloat162float(__float2bfloat16(e));  // as bf16 holds them: the float and bf16 runs agree
  const std::vector<float> dy = random(n), accumulated = random(n);
  const std::vector<int32_t> doc = documents(rng, B, T, w);
  int64_t docs = 0, shortest = T, longest = 0;
  for (int64_t r = 0, len = 1; r < rows; r++, len++) {
    if (r + 1 < rows && (r + 1) % T != 0 && doc[r + 1] == doc[r]) continue;  // r is not its document's last token
    docs++, shortest = std::min(shortest, len), longest = std::max(longest, len), len = 0;
  }
  std::printf("B %lld T %lld C %lld window %lld, seed %u: %lld documents of %lld to %lld tokens\n", (long long)B,
              (long long)T, (long long)C, (long long)window, seed, (long long)docs, (long long)shortest, (long long)longest);
  std::vector<double> y, dx;
  reference(x, dy, doc, B, T, C, w, y, dx);
  // the kernel adds the gradient so far as the Add it replaces would: in float32, to dx rounded to float (where the two
  // nearly cancel, against the exact sum that is up to an ulp of each term: 9e-6 of the result and more, a false FAIL)
  std::vector<double> dxAccumulated(n);
  for (int64_t i = 0; i < n; i++) dxAccumulated[i] = accumulated[i] + float(dx[i]);

  std::vector<__nv_bfloat16> xb(n);
  for (int64_t i = 0; i < n; i++) xb[i] = __float2bfloat16(x[i]);
  Buffer dX(n), xB(n / 2 + 1), dDy(n), dAcc(n), out(n);  // xB: n bf16
  dX.upload(x); dDy.upload(dy); dAcc.upload(accumulated);
  check(cudaMemcpy(xB.d, xb.data(), n * 2, cudaMemcpyHostToDevice), "upload");
  int32_t* dDoc;
  double *chunkSums, *invCounts;
  check(cudaMalloc(&dDoc, rows * 4), "cudaMalloc");
  check(cudaMalloc(&chunkSums, B * chunks * C * sizeof(double)), "cudaMalloc");
  check(cudaMalloc(&invCounts, rows * sizeof(double)), "cudaMalloc");
  check(cudaMemcpy(dDoc, doc.data(), rows * 4, cudaMemcpyHostToDevice), "upload");
  // scratch and output start as NaNs (all-ones bytes): a read of an unwritten partial sum or an unwritten output shows
  check(cudaMemset(chunkSums, 0xff, B * chunks * C * sizeof(double)), "memset");
  check(cudaMemset(invCounts, 0xff, rows * sizeof(double)), "memset");
  auto forward = [&](const void* in, bool inBf16) {
    check(launchCausalWindowMean(0, in, inBf16, dDoc, out.d, chunkSums, B, T, C, window), "forward");
  };
  auto backward = [&](const float* acc) {
    check(launchCausalWindowMeanGrad(0, dDy.d, dDoc, acc, out.d, chunkSums, invCounts, B, T, C, window), "backward");
  };
  auto result = [&](auto&& run) {
    check(cudaMemset(out.d, 0xff, n * 4), "memset");
    run();
    check(cudaDeviceSynchronize(), "run");
    return out.download();
  };
  std::printf("float32 outputs against float64:\n");
  double worst = report("y", result([&] { forward(dX.d, false); }), y);
  worst = std::fmax(worst, report("y bf16 x", result([&] { forward(xB.d, true); }), y));
  worst = std::fmax(worst, report("dx", result([&] { backward(nullptr); }), dx));
  const std::vector<float> first = result([&] { backward(dAcc.d); });
  worst = std::fmax(worst, report("dx + acc", first, dxAccumulated));
  const bool bitSame = std::memcmp(first.data(), result([&] { backward(dAcc.d); }).data(), n * 4) == 0;
  std::printf("  dx rerun bit-identical: %s\n", bitSame ? "yes" : "NO");

  timeBandwidth("forward", [&] { forward(xB.d, true); }, 2.0 * n + 4.0 * n);          // x bf16 in, y float out
  timeBandwidth("backward", [&] { backward(dAcc.d); }, 4.0 * n + 4.0 * n + 4.0 * n);  // dy, accumulated in, dx out
  check(cudaDeviceSynchronize(), "timings");
  cudaFree(dDoc);
  cudaFree(chunkSums);
  cudaFree(invCounts);
  // every sum is fp64 in the kernels, rounded to float once: errors are float rounding, ~1e-7
  const bool pass = worst < 1e-5 && bitSame;
  std::printf("worst error %.2e: %s\n", worst, pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
