// Shared by the Node-free kernel benchmarks (bench/*_native.cu): stop on a CUDA error, and a device buffer
// of floats with host transfers.
#pragma once
#include <cuda_runtime.h>

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
