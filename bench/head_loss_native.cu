// The FP8 head loss's elementwise kernels without Node: the soft-capped cross-entropy's forward (softcap_cross_entropy.cu),
// its gradient quantised to e5m2 where it is computed (fp8_head_loss.cu's softcapGradFp8), both in one pass
// (fp8_head_loss.cu's softcapLossGradFp8) and the quantisation (fp8_matmul.cu's fp8Quantise), on one chunk of the
// speedrun's head: random bf16 logits [rows, cols], the record's sigmoid cap (30, 7.5) and grad_s = 1/448.
//   1. fp8_codes.cuh's divided(v, s) against the IEEE division v / s on every one of the 2³² floats, for the record's
//      three scales and a few others: the quotients' bits (where |v| ≥ 2⁻¹⁰⁰ and the quotient is normal) and their
//      e5m2 and e4m3 codes (everywhere) must agree.
//   2. softcapGradFp8's codes, both layouts, byte for byte against the two-op path it fuses (the cross-entropy's
//      gradient stored in bf16, or float32, then fp8Quantise). softcapLossGradFp8's against the same: its row
//      statistics within 1e-6, each code the two-op path's or its neighbour (≤ 1e-4 of them), the transposed codes the
//      row-major ones'. Then its codes against float64: each decoded code within half an e5m2 step of g / grad_s
//      computed in double from the same logits (the hardware's exp and reciprocal are ~1e-6 off, so a value next to a
//      rounding boundary may take the other code: counted, not failed, below 1e-4 of them).
//   3. CUDA-event timings with the bandwidth of their compulsory bytes.
//   nvcc -std=c++17 -arch=sm_90a -O2 bench/head_loss_native.cu backend-cuda/ops/fp8_head_loss/fp8_head_loss.cu \
//        backend-cuda/ops/softcap_cross_entropy/softcap_cross_entropy.cu backend-cuda/ops/fp8_matmul/fp8_matmul.cu \
//        -o /tmp/head_loss_native
//   /tmp/head_loss_native division               (1 only: 7 scales, a second on an H200)
//   /tmp/head_loss_native rows cols [seed]       (2 and 3) e.g. 4096 50304 (a chunk of the speedrun's head);
//                                                1024 2176 (small, for compute-sanitizer: blocks walk two tiles)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../backend-cuda/ops/fp8_head_loss/fp8_head_loss.h"
#include "../backend-cuda/ops/fp8_matmul/fp8_codes.cuh"
#include "../backend-cuda/ops/fp8_matmul/fp8_matmul.h"
#include "../backend-cuda/ops/softcap_cross_entropy/softcap_cross_entropy.h"
#include "native_bench.h"

using namespace tsgpt;

// Mismatches of divided(v, s) against v / s over all 2³² bit patterns v: [0] quotient bits where |v| ≥ 2⁻¹⁰⁰ and the IEEE
// quotient is a normal float, ±0 or ∞ (NaN: both NaN), [1] e5m2 codes, [2] e4m3 codes (everywhere).
__global__ void divisionMismatches(Fp8Scale scale, unsigned long long* counts) {
  unsigned long long bad[3] = {0, 0, 0};
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < (1ull << 32); i += uint64_t(gridDim.x) * blockDim.x) {
    const float v = __uint_as_float(uint32_t(i)), want = v / scale.s, got = divided(v, scale);
    const bool normal = want == 0.f || !(fabsf(want) < 1.17549435e-38f);  // ±0, normal, ∞ or NaN
    if (!(fabsf(v) < 0x1p-100f) && normal && __float_as_uint(want) != __float_as_uint(got) && !(isnan(want) && isnan(got))) bad[0]++;
    const float w4[4] = {want, 0, 0, 0}, g4[4] = {got, 0, 0, 0};
    bad[1] += (toFp8x4<true>(w4) & 0xFF) != (toFp8x4<true>(g4) & 0xFF);
    bad[2] += (toFp8x4<false>(w4) & 0xFF) != (toFp8x4<false>(g4) & 0xFF);
  }
  for (int k = 0; k < 3; k++) atomicAdd(counts + k, bad[k]);
}

// An e5m2 code's value: the high byte of an IEEE half.
static double e5m2Value(uint8_t code) {
  const uint16_t h = uint16_t(code) << 8;
  __half_raw raw;
  raw.x = h;
  return double(__half2float(__half(raw)));
}

// 1. the division, exhaustively
static bool divisionCheck() {
  bool pass = true;
  unsigned long long* counts;
  check(cudaMalloc(&counts, 3 * sizeof(unsigned long long)), "cudaMalloc");
  for (float s : {1.f / 448.f, std::sqrt(768.f) / 448.f, 1.f / 512.f, 0.3f, 1.7e-3f, 3.f, 1e-30f}) {
    check(cudaMemset(counts, 0, 3 * sizeof(unsigned long long)), "memset");
    divisionMismatches<<<132 * 16, 256>>>(fp8Scale(s), counts);
    unsigned long long h[3];
    check(cudaMemcpy(h, counts, sizeof h, cudaMemcpyDeviceToHost), "download");
    std::printf("divided(v, %.9g) against v / s over 2^32 floats: %llu quotients, %llu e5m2 codes, %llu e4m3 codes differ\n", s,
                h[0], h[1], h[2]);
    pass = pass && h[0] == 0 && h[1] == 0 && h[2] == 0;
  }
  cudaFree(counts);
  return pass;
}

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "division") == 0) {
    const bool pass = divisionCheck();
    std::printf("%s\n", pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
  }
  const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 0, cols = argc > 2 ? std::atoll(argv[2]) : 0;
  if (argc > 4 || rows < 4 || cols < 4 || rows % 4 || cols % 4) {
    std::fprintf(stderr, "usage: %s division | rows cols [seed]   (rows and cols multiples of 4)\n", argv[0]);
    return 2;
  }
  const unsigned seed = argc == 4 ? unsigned(std::strtoul(argv[3], nullptr, 10)) : std::random_device{}();
  const float capScale = 30.f, capTemp = 7.5f, gradScale = 1.f / 448.f;
  std::printf("rows %lld cols %lld, seed %u; sigmoid cap (%g, %g), grad_s 1/448\n", (long long)rows, (long long)cols, seed,
              capScale, capTemp);
  bool pass = true;

  // 2. the gradient's codes: random logits as bf16 (normal, σ 6: the cap's whole range), random targets, a row whose
  // target is out of range (NaN), one logit per row at the target made large (a confident row)
  const int64_t n = rows * cols;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 6.f);
  std::vector<__nv_bfloat16> logits(n);
  for (auto& e : logits) e = __float2bfloat16(normal(rng));
  std::vector<int32_t> targets(rows);
  for (int64_t r = 0; r < rows; r++) targets[r] = int32_t(rng() % cols);
  targets[rows / 2] = -1;
  for (int64_t r = 0; r < rows; r += 3) logits[r * cols + targets[r]] = __float2bfloat16(40.f);
  std::vector<float> one = {1.f};
  Buffer dLogits(n / 2 + 1), dOne(1), rowStats(2 * rows), loss(1), gFloat(n);  // dLogits: n bf16; gFloat: n floats or bf16
  check(cudaMemcpy(dLogits.d, logits.data(), n * 2, cudaMemcpyHostToDevice), "upload");
  dOne.upload(one);
  int32_t* dTargets;
  uint8_t* codes;  // fused row-major, fused transposed, two-op row-major, two-op transposed
  check(cudaMalloc(&dTargets, rows * 4), "cudaMalloc");
  check(cudaMalloc(&codes, 4 * n), "cudaMalloc");
  check(cudaMemcpy(dTargets, targets.data(), rows * 4, cudaMemcpyHostToDevice), "upload");
  const int cap = kLogitCapSigmoid;
  auto forward = [&] {
    check(launchSoftcapCrossEntropy(0, dLogits.d, true, dTargets, rowStats.d, loss.d, rows, cols, cap, capScale, capTemp, false),
          "forward");
  };
  auto fused = [&](bool gBf16) {
    check(launchSoftcapGradFp8(0, dOne.d, dLogits.d, true, dTargets, rowStats.d, gBf16, rows, cols, cap, capScale, capTemp, false,
                               gradScale, codes, codes + n),
          "softcapGradFp8");
  };
  auto twoOp = [&](bool gBf16) {
    check(launchSoftcapCrossEntropyGrad(0, dOne.d, dLogits.d, true, dTargets, rowStats.d, gFloat.d, gBf16, rows, cols, cap, capScale,
                                        capTemp, false),
          "softcapCrossEntropyGrad");
    check(launchFp8Quantise(0, gFloat.d, gBf16, rows, cols, gradScale, true, codes + 2 * n, codes + 3 * n), "fp8Quantise");
  };
  forward();
  std::vector<uint8_t> h(4 * n);
  for (bool gBf16 : {true, false}) {
    check(cudaMemset(codes, 0x55, 4 * n), "memset");
    fused(gBf16);
    twoOp(gBf16);
    check(cudaMemcpy(h.data(), codes, 4 * n, cudaMemcpyDeviceToHost), "download");
    const bool same = std::memcmp(h.data(), h.data() + 2 * n, n) == 0 && std::memcmp(h.data() + n, h.data() + 3 * n, n) == 0;
    std::printf("softcapGradFp8 (%s gradient) against the two-op path, both layouts: %s\n", gBf16 ? "bf16" : "float32",
                same ? "byte for byte" : "DIFFERENT");
    pass = pass && same;
  }
  // the one pass against the two-op path
  Buffer onePassStats(2 * rows), onePassLoss(1);
  auto onePass = [&](bool gBf16) {
    check(launchSoftcapLossGradFp8(0, dOne.d, dLogits.d, true, dTargets, onePassStats.d, onePassLoss.d, gBf16, rows, cols, cap, capScale,
                                   capTemp, false, gradScale, codes, codes + n),
          "softcapLossGradFp8");
  };
  for (bool gBf16 : {true, false}) {
    twoOp(gBf16);
    check(cudaMemcpy(h.data() + 2 * n, codes + 2 * n, 2 * n, cudaMemcpyDeviceToHost), "download");
    check(cudaMemset(codes, 0x55, 2 * n), "memset");
    onePass(gBf16);
    check(cudaMemcpy(h.data(), codes, 2 * n, cudaMemcpyDeviceToHost), "download");
    int64_t neighbours = 0, far = 0, twins = 0;
    for (int64_t i = 0; i < n; i++) {
      const int64_t r = i / cols, c = i % cols;
      twins += h[n + c * rows + r] != h[i];
      if (h[i] == h[2 * n + i]) continue;
      if (((h[i] ^ h[2 * n + i]) & 0x80) == 0 && std::abs((h[i] & 0x7f) - (h[2 * n + i] & 0x7f)) == 1) neighbours++;
      else far++;
    }
    const std::vector<float> want = rowStats.download(), got = onePassStats.download();
    double statsErr = 0;
    for (int64_t i = 0; i < 2 * rows; i++)  // a row's loss is lse − z_t: lse's error, however small the loss
      if (std::isfinite(want[i])) statsErr = std::fmax(statsErr, std::fabs(got[i] - want[i]) / std::fmax(1.0, std::fabs(want[i % rows])));
    std::printf("softcapLossGradFp8 (%s gradient) against the two-op path: %lld of %lld codes the neighbouring one, %lld further, "
                "%lld transposed twins differ; row statistics within %.2e\n", gBf16 ? "bf16" : "float32", (long long)neighbours,
                (long long)n, (long long)far, (long long)twins, statsErr);
    pass = pass && far == 0 && twins == 0 && neighbours <= n / 10000 && statsErr <= 1e-6;
  }
  // against float64 (the one pass's codes of the float32 gradient, from the last loop): g = (softmax − one-hot)·dz/dx,
  // lse from the logits in double; a row-major code and its transposed twin must agree
  int64_t checked = 0, offByStep = 0, wrong = 0, twinDiffers = 0;
  for (int64_t r = 0; r < rows; r += std::max<int64_t>(1, rows / 64)) {
    if (targets[r] < 0) continue;
    std::vector<double> c(cols);
    double mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < cols; j++) {
      const double x = __bfloat162float(logits[r * cols + j]), sig = 1 / (1 + std::exp(-x / capTemp));
      c[j] = sig;
      mx = std::fmax(mx, capScale * sig);
    }
    for (int64_t j = 0; j < cols; j++) sum += std::exp(capScale * c[j] - mx);
    const double lse = mx + std::log(sum);
    for (int64_t j = 0; j < cols; j++) {
      const double p = std::exp(capScale * c[j] - lse), g = (p - (j == targets[r])) * capScale / capTemp * c[j] * (1 - c[j]);
      const double want = g / double(gradScale), got = e5m2Value(h[r * cols + j]);
      const double step = std::ldexp(1.0, std::max(-16, int(std::floor(std::log2(std::fmax(std::fabs(want), 1e-30)))) - 2));
      const double err = std::fabs(got - want);
      checked++;
      if (err > 1.5 * step) wrong++;
      else if (err > 0.5 * step * (1 + 1e-5)) offByStep++;
      if (h[r * cols + j] != h[n + j * rows + r]) twinDiffers++;
    }
  }
  std::printf("against float64 on %lld values: %lld off by one e5m2 step (next to a boundary), %lld wrong, %lld transposed twins "
              "differ\n", (long long)checked, (long long)offByStep, (long long)wrong, (long long)twinDiffers);
  pass = pass && wrong == 0 && twinDiffers == 0 && offByStep <= checked / 10000;

  // 3. timings (bf16 logits in; the gradient's two layouts out)
  timeBandwidth("cross-entropy forward", forward, 2.0 * n);
  timeBandwidth("softcapGradFp8", [&] { fused(true); }, 2.0 * n + 2.0 * n);
  timeBandwidth("forward + softcapGradFp8 (two passes)", [&] { forward(); fused(true); }, 2.0 * n + 2.0 * n + 2.0 * n);
  timeBandwidth("softcapLossGradFp8 (one pass + transposition)", [&] { onePass(true); }, 2.0 * n + 1.0 * n + 2.0 * n);
  if (rows % 16 == 0 && cols % 16 == 0)
    timeBandwidth("transposeCodes", [&] { check(launchTransposeCodes(0, codes, rows, cols, codes + n), "transposeCodes"); }, 2.0 * n);
  timeBandwidth("two-op gradient + quantise", [&] { twoOp(true); }, 2.0 * n + 2.0 * n + 2.0 * n + 2.0 * n);
  timeBandwidth("fp8Quantise bf16 -> e5m2 x2", [&] {
    check(launchFp8Quantise(0, gFloat.d, true, rows, cols, gradScale, true, codes + 2 * n, codes + 3 * n), "fp8Quantise");
  }, 2.0 * n + 2.0 * n);
  check(cudaDeviceSynchronize(), "timings");
  cudaFree(dTargets);
  cudaFree(codes);
  std::printf("%s\n", pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
