// Canon B inside the attention's inputs (canon_attention_inputs.cu) without Node: forward and backward against a float64
// CPU reference on one random problem with random document boundaries (relative errors), a bit-identical rerun of the
// backward (dw's and dλ's fixed-order sums), and CUDA-event timings with bf16 x, dk, dv, q, k, v and dx as training stores
// them, beside the two ops it replaces (CanonConv with the heads' norm, then AttentionInputs, and their gradients).
// For kernel work on the GPU machine: runs under compute-sanitizer, needs only the CUDA runtime.
//   nvcc -std=c++17 -arch=sm_90a -O2 bench/canon_attention_inputs_native.cu backend-cuda/ops/canon_attention_inputs/canon_attention_inputs.cu \
//        backend-cuda/ops/canon_conv/canon_conv.cu backend-cuda/ops/attention_inputs/attention_inputs.cu backend-cuda/native/reduce.cu \
//        backend-cuda/native/elementwise.cu -o /tmp/canon_attention_inputs_native
//   /tmp/canon_attention_inputs_native B T H Hk h qkNorm(0|1) ve(0|1) [seed]   (seed: random by default, printed to rerun a failure)
//   e.g. /tmp/canon_attention_inputs_native 1 32768 6 6 128 1 1     (the speedrun's micro-batch, a layer with value embeddings)
#include <cuda_bf16.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../backend-cuda/ops/attention_inputs/attention_inputs.h"
#include "../backend-cuda/ops/canon_attention_inputs/canon_attention_inputs.h"
#include "../backend-cuda/ops/canon_conv/canon_conv.h"
#include "native_bench.h"

using namespace tsgpt;

// A device copy of v in bf16 (n values in a Buffer of ⌈n/2⌉ + 1 floats).
struct Bf16Buffer {
  Buffer buffer;
  explicit Bf16Buffer(const std::vector<float>& v) : buffer(v.size() / 2 + 1) { uploadBf16(buffer.d, v); }
  explicit Bf16Buffer(size_t n) : buffer(n / 2 + 1) {}
  void* d() const { return buffer.d; }
};

int main(int argc, char** argv) {
  if (argc != 8 && argc != 9) {
    std::fprintf(stderr, "usage: %s B T H Hk h qkNorm(0|1) ve(0|1) [seed]\n", argv[0]);
    return 2;
  }
  const int64_t B = std::atoll(argv[1]), T = std::atoll(argv[2]), H = std::atoll(argv[3]), Hk = std::atoll(argv[4]), h = std::atoll(argv[5]);
  const bool qkNorm = std::atoi(argv[6]) != 0, withVe = std::atoi(argv[7]) != 0;
  const int64_t rows = B * T, heads = H + 2 * Hk, C = heads * h, half = h / 2, n = rows * C, nQ = rows * H * h, nK = rows * Hk * h;
  const int64_t normChannels = qkNorm ? (H + Hk) * h : 0;
  const float eps = 1e-6f;
  std::mt19937 rng = seededRng(argc, argv, 8);
  auto random = [&](int64_t count, float scale) { return uniformValues(rng, count, scale); };
  // x, dk and dv as bf16 holds them, so that the float and bf16 runs see the same inputs
  const std::vector<float> x = bf16Values(random(n, 1.f)), w = random(C * 4, 0.25f), ve = random(nK, 1.f), dq = random(nQ, 1.f);
  const std::vector<float> dk = bf16Values(random(nK, 1.f)), dv = bf16Values(random(nK, 1.f)), lambdas = {0.7f, -0.4f};
  const std::vector<int32_t> doc = randomDocuments(rng, rows, T);
  std::vector<float> cosT, sinT;
  rotaryTables(T, half, cosT, sinT);

  // float64 reference: z (the taps' input), u (the Canon layer's output), q, k, v; g (u's gradient), dz, dx, dw, dλ, dve
  const SpanNorm norm{rows, C, normChannels, h, eps};
  std::vector<double> z, rstd, q(nQ), k(nK), v(nK), g(n), dz, dx, dw, dve(nK), dl(2, 0.0);
  norm.forward(x, z, rstd);
  const CanonReference canon{rows, T, C, w, doc};
  const std::vector<double> u = canon.taps(z);
  AttentionInputsReference reference{H, Hk, h, false, eps, cosT, sinT, lambdas, withVe ? ve.data() : nullptr, dq, dk, dv, q, k, v, dve, dl};
  for (int64_t r = 0; r < rows; r++) reference.token(r, r % T, &u[r * C], &g[r * C]);  // without a norm: it is in z
  canon.tapsGradient(g, z, dz, dw);
  norm.backward(dz, z, rstd, dx);

  Buffer dX(n), dW(C * 4), dCos(T * half), dSin(T * half), dLam(2), dVe(nK), dDq(nQ), dDk(nK), dDv(nK);
  Buffer oQ(nQ), oK(nK), oV(nK), oDx(n), oDw(C * 4), oDl(2), oDve(nK), partials(canonAttentionInputsPartialFloats(rows, C));
  int32_t* dDoc;
  check(cudaMalloc(&dDoc, rows * 4), "cudaMalloc");
  check(cudaMemcpy(dDoc, doc.data(), rows * 4, cudaMemcpyHostToDevice), "upload");
  dX.upload(x); dW.upload(w); dCos.upload(cosT); dSin.upload(sinT); dLam.upload(lambdas); dVe.upload(ve);
  dDq.upload(dq); dDk.upload(dk); dDv.upload(dv);
  const float* vePtr = withVe ? dVe.d : nullptr;
  auto forward = [&](const void* in, bool inBf16, void* oq, void* ok, void* ov, bool outBf16) {
    check(launchCanonAttentionInputs(0, in, inBf16, dW.d, dDoc, dCos.d, dSin.d, dLam.d, vePtr, oq, ok, ov, outBf16, B, T, H, Hk, h, qkNorm,
                                     eps), "forward");
  };
  auto backward = [&](const void* gk, const void* gv, bool kvBf16, const void* in, bool inBf16, void* out, bool outBf16) {
    check(launchCanonAttentionInputsGrad(0, dDq.d, gk, gv, kvBf16, in, inBf16, dW.d, dDoc, dCos.d, dSin.d, dLam.d, vePtr, out, outBf16, oDw.d,
                                         nullptr, oDl.d, withVe ? oDve.d : nullptr, nullptr, nullptr, partials.d, B, T, H, Hk, h, qkNorm, eps),
          "backward");
  };
  forward(dX.d, false, oQ.d, oK.d, oV.d, false);
  backward(dDk.d, dDv.d, false, dX.d, false, oDx.d, false);
  check(cudaDeviceSynchronize(), "run");
  std::printf("B %lld T %lld H %lld Hk %lld h %lld, qkNorm %d, ve %d (float32 tensors against float64):\n", (long long)B, (long long)T,
              (long long)H, (long long)Hk, (long long)h, int(qkNorm), int(withVe));
  double worst = report("q", oQ.download(), q);
  worst = std::fmax(worst, report("k", oK.download(), k));
  worst = std::fmax(worst, report("v", oV.download(), v));
  worst = std::fmax(worst, report("dx", oDx.download(), dx));
  worst = std::fmax(worst, report("dw", oDw.download(), dw));
  worst = std::fmax(worst, report("dlambdas", oDl.download(), dl));
  if (withVe) worst = std::fmax(worst, report("dve", oDve.download(), dve));
  const std::vector<float> firstW = oDw.download(), firstL = oDl.download();
  backward(dDk.d, dDv.d, false, dX.d, false, oDx.d, false);
  const bool bitSame = std::memcmp(firstW.data(), oDw.download().data(), firstW.size() * 4) == 0 &&
                       std::memcmp(firstL.data(), oDl.download().data(), 8) == 0;
  std::printf("  dw and dlambdas rerun bit-identical: %s\n", bitSame ? "yes" : "NO");

  // Training's form (x, dk, dv, q, k, v and dx in bf16, dq and ve float32; the kernels by the block's head kind where h is
  // 128, as the float run's) on the same inputs: its arithmetic is the float run's, so q, k, v and dx are the float run's
  // rounded to bf16 (one rounding apart at most, where the two instances' products contract alike or not), and dw, dλ and
  // dve the float run's (report()'s error of each against the float run's; a slot or lane mixed up is far off both)
  Bf16Buffer xB(x), dkB(dk), dvB(dv), qB(nQ), kB(nK), vB(nK), dxB(n), uB(n), gB(n);
  const std::vector<float> floatQ = oQ.download(), floatK = oK.download(), floatV = oV.download(), floatDx = oDx.download(),
                           floatDve = withVe ? oDve.download() : std::vector<float>();
  forward(xB.d(), true, qB.d(), kB.d(), vB.d(), true);
  backward(dkB.d(), dvB.d(), true, xB.d(), true, dxB.d(), true);
  bool bf16Agrees = true;
  auto against = [&](const char* name, const std::vector<float>& got, const std::vector<float>& want, double bound) {
    const bool near = report(name, got, std::vector<double>(want.begin(), want.end())) <= bound;
    if (!near) std::printf("  %s: over %.0e of the float run's\n", name, bound);
    bf16Agrees = bf16Agrees && near;
  };
  std::printf("training's form (bf16 x, dk, dv, q, k, v and dx) against the float run:\n");
  const double bf16Step = 1.0 / 128;  // a bf16 rounding and a float one before it, relative
  against("q", downloadBf16(qB.d(), nQ), floatQ, bf16Step);
  against("k", downloadBf16(kB.d(), nK), floatK, bf16Step);
  against("v", downloadBf16(vB.d(), nK), floatV, bf16Step);
  against("dx", downloadBf16(dxB.d(), n), floatDx, bf16Step);
  against("dw", oDw.download(), firstW, 1e-5);
  against("dlambdas", oDl.download(), firstL, 1e-5);
  if (withVe) against("dve", oDve.download(), floatDve, 1e-5);

  // timings as training stores the tensors (the form above)
  const double veBytes = withVe ? 4.0 * nK : 0.0;
  std::printf("fused (this op):\n");
  timeBandwidth("forward", [&] { forward(xB.d(), true, qB.d(), kB.d(), vB.d(), true); }, 2.0 * n + 2.0 * n + veBytes);
  timeBandwidth("backward", [&] { backward(dkB.d(), dvB.d(), true, xB.d(), true, dxB.d(), true); },
                4.0 * nQ + 2.0 * 2 * nK + 2.0 * n + 2.0 * n + 2 * veBytes);
  // the two ops it replaces, through u (the Canon layer's output) and g (its gradient) in bf16
  Buffer canonPartials((rows + kCanonRowsPerPartial - 1) / kCanonRowsPerPartial * C * 4);
  std::printf("CanonConv then AttentionInputs (the ops it replaces):\n");
  timeBandwidth("forward", [&] {
    check(launchCanonConv(0, xB.d(), true, dW.d, dDoc, uB.d(), true, B, T, C, normChannels, h, eps, false, false, nullptr, 0), "canon");
    check(launchAttentionInputs(0, uB.d(), true, dCos.d, dSin.d, dLam.d, vePtr, qB.d(), kB.d(), vB.d(), true, B, T, H, Hk, h, false, eps), "inputs");
  }, 2.0 * n * 4 + veBytes);
  timeBandwidth("backward", [&] {
    check(launchAttentionInputsGrad(0, dDq.d, dkB.d(), dvB.d(), true, uB.d(), true, dCos.d, dSin.d, dLam.d, vePtr, gB.d(), true, oDl.d,
                                    withVe ? oDve.d : nullptr, nullptr, B, T, H, Hk, h, false, eps, nullptr), "inputs grad");
    check(launchCanonConvGrad(0, gB.d(), true, xB.d(), true, dW.d, dDoc, dxB.d(), true, oDw.d, nullptr, canonPartials.d, B, T, C, normChannels, h, eps,
                              false, nullptr, nullptr, false, nullptr, false, 0), "canon grad");
  }, 4.0 * nQ + 2.0 * 2 * nK + 2.0 * nK + 2.0 * n * 4 + 2 * veBytes);
  check(cudaDeviceSynchronize(), "timings");
  cudaFree(dDoc);
  // float32 against float64: the head norm's backward subtracts nearly equal terms (bound 1e-3 as attention_inputs')
  const bool pass = worst < 1e-3 && bitSame && bf16Agrees;
  std::printf("worst error %.2e%s: %s\n", worst, bf16Agrees ? "" : ", training's form off the float run's", pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
