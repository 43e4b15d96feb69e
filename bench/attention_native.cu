// The fused attention kernels without Node: the bf16 tensor-core kernels (causal_attention_mma.cu) against
// the exact fp32 ones (causal_attention.cu) on one random problem, relative errors and CUDA-event timings.
// For kernel work on the GPU machine: runs under compute-sanitizer, needs only the CUDA runtime.
//   nvcc -std=c++17 -arch=sm_90 -O2 bench/attention_native.cu backend-cuda/ops/causal_attention/causal_attention.cu \
//        backend-cuda/ops/causal_attention/causal_attention_mma.cu -o /tmp/attention_native
//   /tmp/attention_native B T H Hk h window score docLen     (score: 0 softmax, 1 softpick, 2 softmax1)
//   e.g. /tmp/attention_native 8 2048 6 6 128 2048 0 5000     (the speedrun's shape, one document)
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

int main(int argc, char** argv) {
  if (argc != 9) {
    std::fprintf(stderr, "usage: %s B T H Hk h window score docLen\n", argv[0]);
    return 2;
  }
  const int B = std::atoi(argv[1]), T = std::atoi(argv[2]), H = std::atoi(argv[3]), Hk = std::atoi(argv[4]);
  const int h = std::atoi(argv[5]), window = std::atoi(argv[6]), score = std::atoi(argv[7]), docLen = std::atoi(argv[8]);
  const size_t nq = size_t(B) * T * H * h, nk = size_t(B) * T * Hk * h, rows = size_t(B) * T * H;
  const float scale = 1.f / std::sqrt(float(h));

  std::srand(1);
  auto random = [](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = 4.f * std::rand() / RAND_MAX - 2.f;
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
  Buffer o[2] = {Buffer(nq), Buffer(nq)}, stats[2] = {Buffer(rows * 3), Buffer(rows * 3)}, delta(rows);
  Buffer dq[2] = {Buffer(nq), Buffer(nq)}, dk[2] = {Buffer(nk), Buffer(nk)}, dv[2] = {Buffer(nk), Buffer(nk)};
  auto forward = [&](int tc) {
    return launchAttention(nullptr, q.d, k.d, v.d, docIds, o[tc].d, stats[tc].d, B, T, H, Hk, h, window, scale, score, tc);
  };
  auto backward = [&](int tc) {
    return launchAttentionGrad(nullptr, q.d, k.d, v.d, docIds, o[tc].d, dO.d, stats[tc].d, true, tc ? delta.d : nullptr,
                               dq[tc].d, dk[tc].d, dv[tc].d, B, T, H, Hk, h, window, scale, score, tc);
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
  for (int tc = 0; tc < 2; tc++)
    std::printf("%-12s forward %.3f ms  backward %.3f ms\n", tc ? "tensor cores" : "exact",
                timeMs([&] { return forward(tc); }), timeMs([&] { return backward(tc); }));
  cudaFree(docIds);
  return 0;
}
