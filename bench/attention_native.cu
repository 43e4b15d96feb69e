// The fused attention kernels without Node: the bf16 tensor-core kernels (causal_attention_mma.cu) against
// the exact fp32 ones (causal_attention.cu) on one random problem, relative errors and CUDA-event timings. Both write
// o, dk and dv in float32 here (training under bf16 stores them in bf16: oBf16, kvBf16), so the outputs compare directly.
// For kernel work on the GPU machine: runs under compute-sanitizer, needs only the CUDA runtime.
//   nvcc -std=c++17 -arch=sm_90a -O2 bench/attention_native.cu backend-cuda/ops/causal_attention/causal_attention.cu \
//        backend-cuda/ops/causal_attention/causal_attention_mma.cu -o /tmp/attention_native
//   /tmp/attention_native B T H Hk h window score docLen [seed]   (score: 0 softmax, 1 softpick, 2 softmax1; seed:
//                                                                  random by default, printed to rerun a failure)
//   e.g. /tmp/attention_native 1 32768 6 6 128 896 0 2048   (the speedrun's packed stream: window 7 blocks, documents of 2048)
// TFLOP/s count the visible (query, key) pairs as FlashAttention does: 4·h FLOPs per pair forward (q·k and p·v),
// 10·h backward (five products, as the backward kernel computes them).
#include <cuda_bf16.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "../backend-cuda/ops/causal_attention/causal_attention.h"
#include "native_bench.h"

using namespace tsgpt;

// ‖a − b‖ / ‖b‖
static double relError(const Buffer& a, const Buffer& b) {
  const std::vector<float> x = a.download(), y = b.download();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); i++) {
    num += double(x[i] - y[i]) * (x[i] - y[i]);
    den += double(y[i]) * y[i];
  }
  return std::sqrt(num / (den + 1e-30));
}

// x rounded to bf16 (to nearest even, as the backend's copies) in a new device buffer: the tensor-core kernels' operands.
static __nv_bfloat16* bf16Copy(const Buffer& x) {
  const std::vector<float> f = x.download();
  __nv_bfloat16* d;
  check(cudaMalloc(&d, f.size() * sizeof(__nv_bfloat16)), "cudaMalloc");
  uploadBf16(d, f);
  return d;
}

int main(int argc, char** argv) {
  if (argc != 9 && argc != 10) {
    std::fprintf(stderr, "usage: %s B T H Hk h window score docLen [seed]\n", argv[0]);
    return 2;
  }
  const int B = std::atoi(argv[1]), T = std::atoi(argv[2]), H = std::atoi(argv[3]), Hk = std::atoi(argv[4]);
  const int h = std::atoi(argv[5]), window = std::atoi(argv[6]), score = std::atoi(argv[7]), docLen = std::atoi(argv[8]);
  const size_t nq = size_t(B) * T * H * h, nk = size_t(B) * T * Hk * h, rows = size_t(B) * T * H;
  const float scale = 1.f / std::sqrt(float(h));

  const unsigned seed = argc == 10 ? unsigned(std::strtoul(argv[9], nullptr, 10)) : std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-2.f, 2.f);
  auto random = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = uniform(rng);
    return v;
  };
  Buffer q(nq), k(nk), v(nk), dO(nq);
  q.upload(random(nq));
  k.upload(random(nk));
  v.upload(random(nk));
  dO.upload(random(nq));
  std::vector<int> ids(size_t(B) * T);
  for (size_t i = 0; i < ids.size(); i++) ids[i] = int(i % T) / docLen;
  int* docIds;
  check(cudaMalloc(&docIds, ids.size() * sizeof(int)), "cudaMalloc");
  check(cudaMemcpy(docIds, ids.data(), ids.size() * sizeof(int), cudaMemcpyHostToDevice), "upload");

  // [0]: exact, [1]: tensor cores
  __nv_bfloat16 *q16 = bf16Copy(q), *k16 = bf16Copy(k), *v16 = bf16Copy(v), *dO16 = bf16Copy(dO);
  Buffer o[2] = {Buffer(nq), Buffer(nq)}, stats[2] = {Buffer(rows * 3), Buffer(rows * 3)}, delta(rows);
  Buffer dq[2] = {Buffer(nq), Buffer(nq)}, dk[2] = {Buffer(nk), Buffer(nk)}, dv[2] = {Buffer(nk), Buffer(nk)};
  auto forward = [&](int tc) {
    if (tc) return launchAttentionBf16(nullptr, q16, k16, v16, docIds, o[1].d, false, stats[1].d, nullptr, nullptr, B, T, H, Hk,
                                      h, window, scale, score);
    return launchAttention(nullptr, q.d, k.d, v.d, docIds, o[0].d, stats[0].d, B, T, H, Hk, h, window, scale, score);
  };
  auto backward = [&](int tc) {
    if (tc)
      return launchAttentionGradBf16(nullptr, q16, k16, v16, docIds, o[1].d, false, dO16, stats[1].d, delta.d, false, dq[1].d,
                                     dk[1].d, dv[1].d, false, nullptr, B, T, H, Hk, h, window, scale, score);
    return launchAttentionGrad(nullptr, q.d, k.d, v.d, docIds, o[0].d, dO.d, stats[0].d, true, dq[0].d, dk[0].d, dv[0].d, nullptr,
                               B, T, H, Hk, h, window, scale, score);
  };
  for (int tc = 0; tc < 2; tc++) {
    check(forward(tc), "forward");
    check(backward(tc), "backward");
    check(cudaDeviceSynchronize(), tc ? "tensor-core kernels" : "exact kernels");
  }
  std::printf("tensor cores vs exact, ‖Δ‖/‖ref‖: o %.2e  dq %.2e  dk %.2e  dv %.2e\n", relError(o[1], o[0]),
              relError(dq[1], dq[0]), relError(dk[1], dk[0]), relError(dv[1], dv[0]));

  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  auto timeMs = [&](auto&& launch) {
    constexpr int kReps = 10;
    check(cudaEventRecord(start), "cudaEventRecord");
    for (int r = 0; r < kReps; r++) check(launch(), "launch");
    check(cudaEventRecord(stop), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    return ms / kReps;
  };
  double pairs = 0;  // visible (query, key) pairs per head: same document, within the window, causal
  for (int b = 0; b < B; b++)
    for (int i = 0; i < T; i++)
      for (int j = i; j >= 0 && i - j < window && ids[size_t(b) * T + j] == ids[size_t(b) * T + i]; j--) pairs += 1;
  const double flopsForward = 4.0 * h * pairs * H, flopsBackward = 2.5 * flopsForward;
  for (int tc = 0; tc < 2; tc++) {
    const float f = timeMs([&] { return forward(tc); }), g = timeMs([&] { return backward(tc); });
    std::printf("%-12s forward %.3f ms (%.0f TFLOP/s)  backward %.3f ms (%.0f TFLOP/s)\n", tc ? "tensor cores" : "exact", f,
                flopsForward / f * 1e-9, g, flopsBackward / g * 1e-9);
  }
  for (void* p : {static_cast<void*>(docIds), static_cast<void*>(q16), static_cast<void*>(k16), static_cast<void*>(v16),
                  static_cast<void*>(dO16)})
    cudaFree(p);
  return 0;
}
