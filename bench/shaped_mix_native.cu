// Shaped attention's mix with its causal window mean (shaped_mix.cu) without Node: the forward (x and m in float32 and in
// bf16) and the backward (without and with the gradient so far, dm in float32 and bf16) against a float64 CPU reference
// on one random problem with random document boundaries (relative errors), a bit-identical rerun of the backward, and
// CUDA-event timings with the tensors stored as training stores them (x, m and dm bf16). For kernel work on the GPU
// machine: runs under compute-sanitizer, needs only the CUDA runtime.
//   nvcc -std=c++17 -arch=sm_90a -O2 bench/shaped_mix_native.cu backend-cuda/ops/shaped_mix/shaped_mix.cu -o /tmp/shaped_mix_native
//   /tmp/shaped_mix_native B T H h window [seed]      (seed: random by default, printed to rerun a failure)
//   e.g. /tmp/shaped_mix_native 1 32768 6 128 2049    (the speedrun's shaped attention)
//        /tmp/shaped_mix_native 2 1000 3 4 300        (small, for compute-sanitizer)
//        /tmp/shaped_mix_native 1 4100 2 10 5000      (a window over T, the scalar path), and any shape with window 1
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../backend-cuda/ops/shaped_mix/shaped_mix.h"
#include "native_bench.h"

using namespace tsgpt;

// docIds [B,T], nondecreasing along each b's T tokens: a document starts at t = 0 and at 1 in 300 tokens. The last row
// b also gets boundaries where the kernel's pass 2 starts a walk (a one-token document at the last forward walk's first
// step; a document ending at the backward's second walk's first step), and row 0 one document longer than the window
// (where T > w) followed by one of w / 2 tokens (shorter; at T ≤ w: two halves of T).
static std::vector<int32_t> documents(std::mt19937& rng, int64_t B, int64_t T, int64_t w) {
  std::vector<char> starts(B * T);
  for (int64_t r = 0; r < B * T; r++) starts[r] = r % T == 0 || rng() % 300 == 0;
  const int64_t lastWalk = (T - 1) / kShapedMixWalk * kShapedMixWalk;
  for (int64_t t : {lastWalk, lastWalk + 1, T - kShapedMixWalk}) if (t > 0 && t < T) starts[(B - 1) * T + t] = 1;
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

struct Reference {
  std::vector<double> y, dx, dm, dcoef;
};

// The float64 reference from the header's definition in O(B·T·C), per row b: lo(t) from the last document start, the
// mean from prefix sums over t (|x| ≤ 2 over at most T terms: a difference of two keeps ~1e-12 relative), S = Cᵀ·dy by
// scattering each dy[t] / n(t) onto s ∈ [lo(t), t] through a difference array (+ at lo(t), − at t + 1) summed along s.
static Reference reference(const std::vector<float>& x, const std::vector<float>& m, const std::vector<float>& coef,
                           const std::vector<float>& dy, const std::vector<int32_t>& doc, int64_t B, int64_t T, int64_t H,
                           int64_t h, int64_t w) {
  const int64_t C = H * h;
  Reference r{std::vector<double>(B * T * C), std::vector<double>(B * T * C), std::vector<double>(B * T * C),
              std::vector<double>(3 * H)};
  std::vector<double> sums((T + 1) * C), spread((T + 1) * C);
  std::vector<int64_t> lo(T);
  for (int64_t b = 0; b < B; b++) {
    const int64_t row = b * T, base = row * C;
    for (int64_t t = 0, first = 0; t < T; t++) {
      if (t > 0 && doc[row + t] != doc[row + t - 1]) first = t;
      lo[t] = std::max(t - w + 1, first);
    }
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(spread.begin(), spread.end(), 0.0);
    for (int64_t t = 0; t < T; t++)
      for (int64_t c = 0; c < C; c++) sums[(t + 1) * C + c] = sums[t * C + c] + x[base + t * C + c];
    for (int64_t t = 0; t < T; t++) {
      for (int64_t c = 0; c < C; c++) {
        const int64_t i = base + t * C + c, head = c / h, n = t - lo[t] + 1;
        const double mean = (sums[(t + 1) * C + c] - sums[lo[t] * C + c]) / double(n);
        r.y[i] = coef[head] * double(x[i]) + coef[H + head] * double(m[i]) - coef[2 * H + head] * mean;
        r.dm[i] = coef[H + head] * double(dy[i]);
        r.dcoef[head] += double(dy[i]) * x[i];
        r.dcoef[H + head] += double(dy[i]) * m[i];
        r.dcoef[2 * H + head] -= double(dy[i]) * mean;
        spread[lo[t] * C + c] += dy[i] / double(n);
        spread[(t + 1) * C + c] -= dy[i] / double(n);
      }
    }
    std::vector<double> S(C, 0.0);
    for (int64_t s = 0; s < T; s++) {
      for (int64_t c = 0; c < C; c++) {
        const int64_t i = base + s * C + c, head = c / h;
        S[c] += spread[s * C + c];
        r.dx[i] = coef[head] * double(dy[i]) - coef[2 * H + head] * S[c];
      }
    }
  }
  return r;
}

// n bf16 values on the device from floats (exact where the floats hold bf16 values).
static __nv_bfloat16* bf16Buffer(const std::vector<float>& v) {
  __nv_bfloat16* d;
  check(cudaMalloc(&d, v.size() * 2), "cudaMalloc");
  uploadBf16(d, v);
  return d;
}

int main(int argc, char** argv) {
  auto arg = [&](int i) { return i < argc ? std::atoll(argv[i]) : 0; };
  const int64_t B = arg(1), T = arg(2), H = arg(3), h = arg(4), window = arg(5);
  if (argc > 7 || B < 1 || T < 1 || H < 1 || h < 1 || window < 1) {
    std::fprintf(stderr, "usage: %s B T H h window [seed]\n", argv[0]);
    return 2;
  }
  const unsigned seed = argc == 7 ? unsigned(std::strtoul(argv[6], nullptr, 10)) : std::random_device{}();
  const int64_t C = H * h, w = std::min(window, T), rows = B * T, n = rows * C;
  const int64_t chunks = (T + kShapedMixChunk - 1) / kShapedMixChunk, walks = (T + kShapedMixWalk - 1) / kShapedMixWalk;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.f, 2.f), positive(0.5f, 1.5f);
  auto random = [&](int64_t count) { std::vector<float> v(count); for (float& e : v) e = u(rng); return v; };
  // x and m hold bf16 values, so that the float and bf16 runs agree
  const std::vector<float> x = bf16Values(random(n)), m = bf16Values(random(n)), dy = random(n), accumulated = random(n);
  std::vector<float> coef(3 * H);
  for (float& e : coef) e = positive(rng);
  const std::vector<int32_t> doc = documents(rng, B, T, w);
  int64_t docs = 0, shortest = T, longest = 0;
  for (int64_t r = 0, len = 1; r < rows; r++, len++) {
    if (r + 1 < rows && (r + 1) % T != 0 && doc[r + 1] == doc[r]) continue;  // r is not its document's last token
    docs++, shortest = std::min(shortest, len), longest = std::max(longest, len), len = 0;
  }
  std::printf("B %lld T %lld H %lld h %lld window %lld, seed %u: %lld documents of %lld to %lld tokens\n", (long long)B,
              (long long)T, (long long)H, (long long)h, (long long)window, seed, (long long)docs, (long long)shortest,
              (long long)longest);
  const Reference want = reference(x, m, coef, dy, doc, B, T, H, h, w);
  // the kernel adds the gradient so far as the Add it replaces would: in float32, to dx rounded to float (where the two
  // nearly cancel, against the exact sum that is up to an ulp of each term: a false FAIL)
  std::vector<double> dxAccumulated(n), dmBf16(n);
  for (int64_t i = 0; i < n; i++) dxAccumulated[i] = accumulated[i] + float(want.dx[i]);
  for (int64_t i = 0; i < n; i++) dmBf16[i] = __bfloat162float(__float2bfloat16(float(want.dm[i])));

  Buffer dX(n), dM(n), dCoef(3 * H), dDy(n), dAcc(n), out(n), dmOut(n), dcoef(3 * H);
  dX.upload(x); dM.upload(m); dCoef.upload(coef); dDy.upload(dy); dAcc.upload(accumulated);
  __nv_bfloat16 *xB = bf16Buffer(x), *mB = bf16Buffer(m), *dmB;
  int32_t* dDoc;
  double *chunkSums, *invCounts, *partials;
  check(cudaMalloc(&dmB, n * 2), "cudaMalloc");
  check(cudaMalloc(&dDoc, rows * 4), "cudaMalloc");
  check(cudaMalloc(&chunkSums, B * chunks * C * sizeof(double)), "cudaMalloc");
  check(cudaMalloc(&invCounts, rows * sizeof(double)), "cudaMalloc");
  check(cudaMalloc(&partials, 3 * B * walks * C * sizeof(double)), "cudaMalloc");
  check(cudaMemcpy(dDoc, doc.data(), rows * 4, cudaMemcpyHostToDevice), "upload");
  // scratch and outputs start as NaNs (all-ones bytes): a read of an unwritten partial sum or an unwritten output shows
  check(cudaMemset(chunkSums, 0xff, B * chunks * C * sizeof(double)), "memset");
  check(cudaMemset(invCounts, 0xff, rows * sizeof(double)), "memset");
  check(cudaMemset(partials, 0xff, 3 * B * walks * C * sizeof(double)), "memset");
  auto forward = [&](const void* xs, bool xBf16, const void* ms, bool mBf16) {
    check(launchShapedMix(0, xs, xBf16, ms, mBf16, dCoef.d, dDoc, out.d, chunkSums, B, T, H, h, window), "forward");
  };
  auto backward = [&](const void* xs, bool xBf16, const void* ms, bool mBf16, const float* acc, void* dm, bool dmIsBf16) {
    check(launchShapedMixGrad(0, dDy.d, xs, xBf16, ms, mBf16, dCoef.d, dDoc, acc, out.d, dm, dmIsBf16, dcoef.d, chunkSums,
                              invCounts, partials, B, T, H, h, window), "backward");
  };
  auto result = [&](const Buffer& buffer, auto&& run) {
    check(cudaMemset(buffer.d, 0xff, buffer.n * 4), "memset");
    run();
    check(cudaDeviceSynchronize(), "run");
    return buffer.download();
  };
  std::printf("float32 outputs against float64:\n");
  double worst = report("y", result(out, [&] { forward(dX.d, false, dM.d, false); }), want.y);
  worst = std::fmax(worst, report("y bf16", result(out, [&] { forward(xB, true, mB, true); }), want.y));
  worst = std::fmax(worst, report("dx", result(out, [&] { backward(dX.d, false, dM.d, false, nullptr, dmOut.d, false); }), want.dx));
  worst = std::fmax(worst, report("dm", dmOut.download(), want.dm));
  worst = std::fmax(worst, report("dcoef", dcoef.download(), want.dcoef));
  const std::vector<float> first = result(out, [&] { backward(xB, true, mB, true, dAcc.d, dmB, true); });
  const std::vector<float> firstCoef = dcoef.download();
  worst = std::fmax(worst, report("dx + acc", first, dxAccumulated));
  worst = std::fmax(worst, report("dm bf16", downloadBf16(dmB, n), dmBf16));
  worst = std::fmax(worst, report("dcoef bf16", firstCoef, want.dcoef));
  const bool bitSame = std::memcmp(first.data(), result(out, [&] { backward(xB, true, mB, true, dAcc.d, dmB, true); }).data(), n * 4) == 0 &&
                       std::memcmp(firstCoef.data(), dcoef.download().data(), 3 * H * 4) == 0;
  std::printf("  dx and dcoef rerun bit-identical: %s\n", bitSame ? "yes" : "NO");

  // training's storage: x, m bf16 in, y float out; dy float, x, m bf16 in, dx float, dm bf16 out (no gradient so far)
  timeBandwidth("forward", [&] { forward(xB, true, mB, true); }, 2.0 * n + 2.0 * n + 4.0 * n);
  timeBandwidth("backward", [&] { backward(xB, true, mB, true, nullptr, dmB, true); }, 4.0 * n + 2.0 * n + 2.0 * n + 4.0 * n + 2.0 * n);
  check(cudaDeviceSynchronize(), "timings");
  for (void* p : {static_cast<void*>(xB), static_cast<void*>(mB), static_cast<void*>(dmB), static_cast<void*>(dDoc),
                  static_cast<void*>(chunkSums), static_cast<void*>(invCounts), static_cast<void*>(partials)}) cudaFree(p);
  // every window sum is fp64 in the kernels, rounded to float once: errors are float rounding, ~1e-7 of the norm. An
  // element of y or dx is a difference of float32 terms of up to ~6 that may cancel, so its error (a few ulps of the
  // terms, ~1e-6) against report()'s floor (1e-3 of the largest, ~6e-3) can reach ~2e-4 elementwise
  const bool pass = worst < 2e-4 && bitSame;
  std::printf("worst error %.2e: %s\n", worst, pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
