// Shared by the Node-free kernel benchmarks (bench/*_native.cu): stop on a CUDA error, a device buffer of floats
// with host transfers, values rounded as bf16 holds them, a result's error against a float64 reference, and a memory-bound
// kernel's timing.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

static void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
  std::exit(1);
}

// A device buffer of n floats starting `shift` floats into its allocation (shift 1: not 16-byte aligned).
struct Buffer {
  float* base = nullptr;
  float* d = nullptr;
  size_t n = 0;
  explicit Buffer(size_t n_, int shift = 0) : n(n_) {
    check(cudaMalloc(&base, (n + 4) * sizeof(float)), "cudaMalloc");
    d = base + shift;
  }
  ~Buffer() { cudaFree(base); }
  void upload(const std::vector<float>& h) { check(cudaMemcpy(d, h.data(), n * 4, cudaMemcpyHostToDevice), "upload"); }
  std::vector<float> download() const {
    std::vector<float> h(n);
    check(cudaMemcpy(h.data(), d, n * 4, cudaMemcpyDeviceToHost), "download");
    return h;
  }
};

// The values as bf16 holds them (rounded to nearest even, widened back): inputs that a float and a bf16 run of a kernel
// both see exactly.
static std::vector<float> bf16Values(std::vector<float> v) {
  for (float& e : v) e = __bfloat162float(__float2bfloat16(e));
  return v;
}

// Prints and returns the larger of ‖got − want‖ / ‖want‖ and max |got − want| / (f + |want|), f = 1e-3·max(1, max |want|)
// (a sum over many random terms, a mean or a weight's gradient, can land near 0).
static double report(const char* name, const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0, maxRel = 0, top = 1;
  for (double v : want) top = std::fmax(top, std::fabs(v));
  for (size_t i = 0; i < want.size(); i++) {
    const double d = double(got[i]) - want[i];
    num += d * d;
    den += want[i] * want[i];
    maxRel = std::fmax(maxRel, std::isfinite(got[i]) ? std::fabs(d) / (1e-3 * top + std::fabs(want[i])) : INFINITY);
  }
  const double rel = std::sqrt(num / std::fmax(den, 1e-300));
  std::printf("  %-8s rel. error %.2e, max elementwise %.2e\n", name, rel, maxRel);
  return std::fmax(rel, maxRel);
}

// The mean time of run() (kernel launches on `stream`) by CUDA events over `reps` runs after one warm-up.
template <typename F>
float meanMs(F&& run, cudaStream_t stream = 0, int reps = 20) {
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  run();
  check(cudaEventRecord(e0, stream), "record");
  for (int r = 0; r < reps; r++) run();
  check(cudaEventRecord(e1, stream), "record");
  check(cudaEventSynchronize(e1), "sync");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return ms / reps;
}

// meanMs of run() on the default stream, printed with the bandwidth of the `bytes` it must move; nothing where BENCH_REPS=0
// (test/simt's runs on the CPU, which check the results only).
template <typename F>
void timeBandwidth(const char* name, F&& run, double bytes, int reps = 20) {
  if (const char* text = std::getenv("BENCH_REPS"); text && std::atoi(text) == 0) return;
  const float ms = meanMs(run, 0, reps);
  std::printf("  %-8s %.3f ms, %.0f GB/s (compulsory bytes %.0f MB)\n", name, ms, bytes / (ms * 1e6), bytes / 1e6);
}
