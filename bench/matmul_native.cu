// The speedrun's GEMMs through the backend's own matmul (backend-cuda/native/matmul.cc) without Node: each shape of a
// micro-step (and the FP8 head's chunk) timed with the heuristic's first algorithm and with autotuning (the fastest of
// its first candidates, timed on the first call), both checked against float64 dot products on sampled outputs.
//   nvcc -std=c++17 -arch=sm_90a -O2 bench/matmul_native.cu backend-cuda/native/matmul.cc backend-cuda/native/device.cc \
//        -lcublasLt -o /tmp/matmul_native
//   /tmp/matmul_native [tokens] [seed]   (tokens: rows of a micro-step, 32768 by default; seed random by default, printed)
// TFLOP/s count 2·m·n·k per GEMM (times the batch).
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../backend-cuda/native/device.h"
#include "native_bench.h"

namespace {

// Row-major out [m, n] = op(A)·op(B) (batched): A [m, k] or, transposed, [k, m]; B [k, n] or, transposed, [n, k].
struct Gemm {
  const char* what;
  int64_t batch, m, n, k;
  bool transA, transB, outBf16;
  int perMicroStep;  // calls in a speedrun micro-step (10 attention layers, 11 MLPs); 0: the optimiser's, once a step
};

// An FP8 GEMM: out [m, n] = A·Bᵀ, A [m, k] and B [n, k] (matmulFp8's only layout).
struct Fp8Gemm {
  const char* what;
  int64_t m, n, k;
  bool aE5m2, bE5m2, fastAccum;
};

std::mt19937 rng;

template <typename T>
T* deviceRandom(size_t count, std::vector<T>& host, float scale) {
  std::normal_distribution<float> normal(0.f, scale);
  host.resize(count);
  for (T& v : host) v = T(normal(rng));
  T* d = nullptr;
  check(cudaMalloc(&d, count * sizeof(T)), "cudaMalloc");
  check(cudaMemcpy(d, host.data(), count * sizeof(T), cudaMemcpyHostToDevice), "upload");
  return d;
}

// Worst |got − want| / Σ|a·b| over 64 sampled outputs of batch 0, want in float64 (aAt(i, l), bAt(l, j): the operands'
// values); the bound is the accumulator's, relative to the sum of the products' magnitudes.
template <typename A, typename B, typename Out>
double sampledError(const Out* dOut, int64_t m, int64_t n, int64_t k, A aAt, B bAt) {
  std::vector<Out> out(size_t(m) * n);
  check(cudaMemcpy(out.data(), dOut, out.size() * sizeof(Out), cudaMemcpyDeviceToHost), "download");
  std::uniform_int_distribution<int64_t> row(0, m - 1), col(0, n - 1);
  double worst = 0;
  for (int s = 0; s < 64; s++) {
    const int64_t i = row(rng), j = col(rng);
    double want = 0, mag = 0;
    for (int64_t l = 0; l < k; l++) {
      const double p = double(aAt(i, l)) * double(bAt(l, j));
      want += p;
      mag += std::fabs(p);
    }
    worst = std::fmax(worst, std::fabs(double(float(out[size_t(i) * n + j])) - want) / std::fmax(mag, 1e-30));
  }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t N = argc > 1 ? std::atoll(argv[1]) : 32768;
  const unsigned seed = argc > 2 ? unsigned(std::strtoul(argv[2], nullptr, 10)) : std::random_device{}();
  if (N < 16 || N % 16) {
    std::fprintf(stderr, "usage: %s [tokens, a multiple of 16] [seed]\n", argv[0]);
    return 2;
  }
  rng.seed(seed);
  std::printf("tokens %lld, seed %u\n", (long long)N, seed);
  tsgpt::Device dev(0);
  const int64_t d = 768, qkv = 3 * d, hidden = 4 * d, chunk = 4096, vocab = 50304;
  const Gemm gemms[] = {
      {"qkv = x·Wqkv", 1, N, qkv, d, false, false, true, 10},
      {"h = x·Wfc", 1, N, hidden, d, false, false, true, 11},
      {"y = a·Wo", 1, N, d, d, false, false, false, 10},
      {"y = h·Wproj", 1, N, d, hidden, false, false, false, 11},
      {"dx = dqkv·Wqkvᵀ", 1, N, d, qkv, false, true, false, 10},
      {"dx = dh·Wfcᵀ", 1, N, d, hidden, false, true, false, 11},
      {"da = dy·Woᵀ", 1, N, d, d, false, true, false, 10},
      {"dh = dy·Wprojᵀ", 1, N, hidden, d, false, true, false, 11},
      {"dWqkv = xᵀ·dqkv", 1, d, qkv, N, true, false, false, 10},
      {"dWfc = xᵀ·dh", 1, d, hidden, N, true, false, false, 11},
      {"dWo = aᵀ·dy", 1, d, d, N, true, false, false, 10},
      {"dWproj = hᵀ·dy", 1, hidden, d, N, true, false, false, 11},
      {"Muon X·Xᵀ [40,768,768]", 40, d, d, d, false, true, false, 0},
      {"Muon [22,768,3072]", 22, d, hidden, d, false, false, false, 0},
  };
  const Fp8Gemm fp8Gemms[] = {
      {"head z = x8·W8ᵀ (chunk)", chunk, vocab, d, false, false, true},
      {"head dx = g8·W8 (chunk)", chunk, d, vocab, true, false, false},
      {"head dW = x8ᵀ·g8 (chunk)", d, vocab, chunk, false, true, false},
  };
  std::printf("%-26s %10s %10s %8s %10s %10s\n", "GEMM", "heuristic", "autotuned", "ratio", "err heur.", "err auto");
  double sumHeur = 0, sumAuto = 0;
  bool ok = true;
  for (const Gemm& g : gemms) {
    std::vector<__nv_bfloat16> ha, hb;
    const int64_t aCount = g.batch * g.m * g.k, bCount = g.batch * g.k * g.n;
    __nv_bfloat16* a = deviceRandom(size_t(aCount), ha, 1.f);
    __nv_bfloat16* b = deviceRandom(size_t(bCount), hb, 1.f);
    void* out = nullptr;
    check(cudaMalloc(&out, size_t(g.batch * g.m * g.n) * (g.outBf16 ? 2 : 4)), "cudaMalloc");
    const auto aAt = [&](int64_t i, int64_t l) { return float(ha[size_t(g.transA ? l * g.m + i : i * g.k + l)]); };
    const auto bAt = [&](int64_t l, int64_t j) { return float(hb[size_t(g.transB ? j * g.k + l : l * g.n + j)]); };
    float ms[2];
    double err[2];
    for (int tuned = 0; tuned < 2; tuned++) {
      tsgpt::releaseMatmulPlans();
      tsgpt::setMatmulAutotune(tuned == 1);
      // the warm-up run makes the plan (and, autotuned, times the candidates)
      ms[tuned] = meanMs([&] {
        tsgpt::matmul(dev, a, b, out, g.outBf16, g.batch, g.m, g.n, g.k, g.transA, g.transB, g.m * g.k, g.k * g.n, 0);
      }, dev.stream(), 10);
      check(cudaStreamSynchronize(dev.stream()), "matmul");
      err[tuned] = g.outBf16 ? sampledError(static_cast<const __nv_bfloat16*>(out), g.m, g.n, g.k, aAt, bAt)
                             : sampledError(static_cast<const float*>(out), g.m, g.n, g.k, aAt, bAt);
    }
    const double flop = 2.0 * g.batch * g.m * g.n * g.k;
    std::printf("%-26s %6.3f ms %6.3f ms %8.3f %10.1e %10.1e   (%.0f → %.0f TFLOP/s)\n", g.what, ms[0], ms[1],
                ms[1] / ms[0], err[0], err[1], flop / ms[0] / 1e9, flop / ms[1] / 1e9);
    // bf16 operands, fp32 accumulation: ~2⁻²⁰ of Σ|a·b| from the sums; a bf16 output adds half a bf16 step (2⁻⁹)
    const double bound = g.outBf16 ? 4e-3 : 1e-5;
    ok = ok && err[0] < bound && err[1] < bound;
    sumHeur += g.perMicroStep * ms[0], sumAuto += g.perMicroStep * ms[1];
    cudaFree(a);
    cudaFree(b);
    cudaFree(out);
  }
  for (const Fp8Gemm& g : fp8Gemms) {
    std::vector<__nv_fp8_e4m3> a4, b4;
    std::vector<__nv_fp8_e5m2> a5, b5;
    void* a = g.aE5m2 ? static_cast<void*>(deviceRandom(size_t(g.m * g.k), a5, 4.f))
                      : static_cast<void*>(deviceRandom(size_t(g.m * g.k), a4, 4.f));
    void* b = g.bE5m2 ? static_cast<void*>(deviceRandom(size_t(g.n * g.k), b5, 4.f))
                      : static_cast<void*>(deviceRandom(size_t(g.n * g.k), b4, 4.f));
    float* out = nullptr;
    check(cudaMalloc(&out, size_t(g.m * g.n) * 4), "cudaMalloc");
    const auto aAt = [&](int64_t i, int64_t l) { return g.aE5m2 ? float(a5[size_t(i * g.k + l)]) : float(a4[size_t(i * g.k + l)]); };
    const auto bAt = [&](int64_t l, int64_t j) { return g.bE5m2 ? float(b5[size_t(j * g.k + l)]) : float(b4[size_t(j * g.k + l)]); };
    float ms[2];
    double err[2];
    for (int tuned = 0; tuned < 2; tuned++) {
      tsgpt::releaseMatmulPlans();
      tsgpt::setMatmulAutotune(tuned == 1);
      ms[tuned] = meanMs([&] { tsgpt::matmulFp8(dev, a, g.aE5m2, b, g.bE5m2, out, false, g.m, g.n, g.k, 1.f, g.fastAccum, 0.f); },
                         dev.stream(), 10);
      check(cudaStreamSynchronize(dev.stream()), "matmulFp8");
      err[tuned] = sampledError(out, g.m, g.n, g.k, aAt, bAt);
    }
    const double flop = 2.0 * g.m * g.n * g.k;
    std::printf("%-26s %6.3f ms %6.3f ms %8.3f %10.1e %10.1e   (%.0f → %.0f TFLOP/s)\n", g.what, ms[0], ms[1],
                ms[1] / ms[0], err[0], err[1], flop / ms[0] / 1e9, flop / ms[1] / 1e9);
    // products of FP8 values are exact in fp32; fast accumulation keeps ~14 bits inside an MMA and never promotes
    const double bound = g.fastAccum ? 1e-2 : 1e-4;
    ok = ok && err[0] < bound && err[1] < bound;
    sumHeur += ms[0] * double(N) / chunk, sumAuto += ms[1] * double(N) / chunk;  // the head's chunks of a micro-step
    cudaFree(a);
    cudaFree(b);
    cudaFree(out);
  }
  std::printf("a micro-step's GEMMs (each shape times its calls, the head's chunks for %lld rows): %.2f → %.2f ms\n",
              (long long)N, sumHeur, sumAuto);
  std::printf("%s\n", ok ? "ok: every sampled output within its bound" : "FAILED: a sampled output outside its bound");
  return ok ? 0 : 1;
}
