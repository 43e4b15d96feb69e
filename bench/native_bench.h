// Shared by the Node-free kernel benchmarks (bench/*_native.cu): stop on a CUDA error, a device buffer of floats
// with host transfers, values rounded as bf16 holds them, a result's error against a float64 reference, and a memory-bound
// kernel's timing.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
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

// v rounded to bf16 (to nearest even) into device memory at dst (v.size() bf16 values).
static void uploadBf16(void* dst, const std::vector<float>& v) {
  std::vector<__nv_bfloat16> bits(v.size());
  for (size_t i = 0; i < v.size(); i++) bits[i] = __float2bfloat16(v[i]);
  check(cudaMemcpy(dst, bits.data(), bits.size() * 2, cudaMemcpyHostToDevice), "upload");
}

// n bf16 values at src in device memory, widened to float.
static std::vector<float> downloadBf16(const void* src, size_t n) {
  std::vector<__nv_bfloat16> bits(n);
  check(cudaMemcpy(bits.data(), src, n * 2, cudaMemcpyDeviceToHost), "download");
  std::vector<float> v(n);
  for (size_t i = 0; i < n; i++) v[i] = __bfloat162float(bits[i]);
  return v;
}

// The random inputs' generator, seeded from argv[at] where given, else at random; the seed printed, to rerun a failure.
static std::mt19937 seededRng(int argc, char** argv, int at) {
  const unsigned seed = argc > at ? unsigned(std::strtoul(argv[at], nullptr, 10)) : std::random_device{}();
  std::printf("seed %u\n", seed);
  return std::mt19937(seed);
}

// count values uniform in [−2·scale, 2·scale).
static std::vector<float> uniformValues(std::mt19937& rng, int64_t count, float scale = 1.f) {
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<float> v(count);
  for (float& e : v) e = scale * u(rng);
  return v;
}

// Document ids of rows·(one per token), rows r = b·T + t: a document starts at each sequence's first token and at about
// one token in 300 (the attention's, Canon's and their inputs' taps must not cross one).
static std::vector<int32_t> randomDocuments(std::mt19937& rng, int64_t rows, int64_t T) {
  std::vector<int32_t> doc(rows);
  for (int64_t r = 0, d = 0; r < rows; r++) doc[r] = (r % T == 0 || rng() % 300 == 0) ? int32_t(++d) : int32_t(d);
  return doc;
}

// Rotary tables [T, half] as the speedrun's half-truncated RoPE makes them: the first ⌈half/2⌉ pairs turn at frequencies
// from 1 down to 1/1024, the rest stay (cos 1, sin 0).
static void rotaryTables(int64_t T, int64_t half, std::vector<float>& cosT, std::vector<float>& sinT) {
  cosT.assign(T * half, 0.f);
  sinT.assign(T * half, 0.f);
  for (int64_t t = 0; t < T; t++) {
    for (int64_t j = 0; j < half; j++) {
      const double f = j < (half + 1) / 2 ? std::pow(1.0 / 1024, double(j) / std::fmax(1.0, (half + 1) / 2 - 1.0)) : 0.0;
      cosT[t * half + j] = float(std::cos(t * f));
      sinT[t * half + j] = float(std::sin(t * f));
    }
  }
}

// RMS norms in float64 over spans of `span` channels among the first `channels` of each of `rows` rows of C: z = x·rstd
// there, x elsewhere (rstd 1); and back, dx = rstd·(dz − z·mean(dz·z)) per span (rms_norm.cu's backward), dz elsewhere.
// Canon B's heads (span h over the q and k heads) and Canon A's and C's rows (span C over all of them).
struct SpanNorm {
  int64_t rows, C, channels, span;
  double eps;
  void forward(const std::vector<float>& x, std::vector<double>& z, std::vector<double>& rstd) const {
    z.assign(x.begin(), x.end());
    rstd.assign(x.size(), 1.0);
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t c0 = 0; c0 < channels; c0 += span) {
        double ss = 0;
        for (int64_t c = c0; c < c0 + span; c++) ss += double(x[r * C + c]) * x[r * C + c];
        const double s = 1 / std::sqrt(ss / span + eps);
        for (int64_t c = c0; c < c0 + span; c++) { z[r * C + c] *= s; rstd[r * C + c] = s; }
      }
    }
  }
  void backward(const std::vector<double>& dz, const std::vector<double>& z, const std::vector<double>& rstd, std::vector<double>& dx) const {
    dx = dz;
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t c0 = 0; c0 < channels; c0 += span) {
        double dot = 0;
        for (int64_t c = c0; c < c0 + span; c++) dot += dz[r * C + c] * z[r * C + c];
        for (int64_t c = c0; c < c0 + span; c++) dx[r * C + c] = rstd[r * C + c] * (dz[r * C + c] - z[r * C + c] * dot / span);
      }
    }
  }
};

// Canon's taps in float64 (canon_conv.cu's formulas) over rows r = b·T + t of C channels: a tap counts within the row's
// sequence and document. taps: u = z·(1 + w[·,3]) + Σ_s w[·,3−s]·z_{r−s}; back, from g (u's gradient): dz and dw.
struct CanonReference {
  int64_t rows, T, C;
  const std::vector<float>& w;
  const std::vector<int32_t>& doc;
  bool same(int64_t later, int64_t s) const { return later % T >= s && doc[later - s] == doc[later]; }
  std::vector<double> taps(const std::vector<double>& z) const {
    std::vector<double> u(rows * C);
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t c = 0; c < C; c++) {
        double acc = z[r * C + c] * (1 + w[c * 4 + 3]);
        for (int64_t s = 1; s <= 3; s++) if (same(r, s)) acc += w[c * 4 + 3 - s] * z[(r - s) * C + c];
        u[r * C + c] = acc;
      }
    }
    return u;
  }
  void tapsGradient(const std::vector<double>& g, const std::vector<double>& z, std::vector<double>& dz, std::vector<double>& dw) const {
    dz.assign(rows * C, 0.0);
    dw.assign(C * 4, 0.0);
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t c = 0; c < C; c++) {
        double acc = g[r * C + c] * (1 + w[c * 4 + 3]);
        dw[c * 4 + 3] += g[r * C + c] * z[r * C + c];
        for (int64_t s = 1; s <= 3; s++) {
          if (r + s < rows && same(r + s, s)) acc += w[c * 4 + 3 - s] * g[(r + s) * C + c];
          if (same(r, s)) dw[c * 4 + 3 - s] += g[r * C + c] * z[(r - s) * C + c];
        }
        dz[r * C + c] = acc;
      }
    }
  }
};

// The attention's inputs in float64 (attention_inputs.cu's formulas) for token `token` at position t, from its row x of
// the QKV projection's output, (H + 2·Hk) heads of h: q and k its q and k heads RMS-normed over h (where qkNorm; eps)
// and turned by the tables ([T, h/2]), v = λa·x_v + λb·ve (ve null: λa·x_v); and back, from dq, dk, dv: dx (the row's
// gradient), dve = λb·dv (where ve) and the sums dλ += [Σ dv·x_v, Σ dv·ve]. Tensors [tokens, heads, h].
struct AttentionInputsReference {
  int64_t H, Hk, h;
  bool qkNorm;
  double eps;
  const std::vector<float>& cosT;
  const std::vector<float>& sinT;
  const std::vector<float>& lambdas;
  const float* ve;
  const std::vector<float>& dq;
  const std::vector<float>& dk;
  const std::vector<float>& dv;
  std::vector<double>& q;
  std::vector<double>& k;
  std::vector<double>& v;
  std::vector<double>& dve;
  std::vector<double>& dl;
  template <typename X>
  void token(int64_t token, int64_t t, const X* x, double* dx) {
    const int64_t half = h / 2;
    for (int64_t head = 0; head < H + 2 * Hk; head++, x += h, dx += h) {
      if (head >= H + Hk) {  // v
        const int64_t o = (token * Hk + head - H - Hk) * h;
        for (int64_t i = 0; i < h; i++) {
          v[o + i] = lambdas[0] * double(x[i]) + (ve ? lambdas[1] * double(ve[o + i]) : 0.0);
          dx[i] = lambdas[0] * double(dv[o + i]);
          dl[0] += double(dv[o + i]) * x[i];
          if (ve) { dve[o + i] = lambdas[1] * double(dv[o + i]); dl[1] += double(dv[o + i]) * ve[o + i]; }
        }
        continue;
      }
      const bool isQ = head < H;
      const int64_t o = isQ ? (token * H + head) * h : (token * Hk + head - H) * h;
      double* y = isQ ? &q[o] : &k[o];
      const float* dy = isQ ? &dq[o] : &dk[o];
      double ss = 0, dot = 0;
      for (int64_t i = 0; i < h; i++) ss += double(x[i]) * x[i];
      const double rstd = qkNorm ? 1 / std::sqrt(ss / h + eps) : 1;
      std::vector<double> g(h);
      for (int64_t i = 0; i < half; i++) {
        const double c = cosT[t * half + i], s = sinT[t * half + i];
        y[i] = x[i] * rstd * c + x[half + i] * rstd * s;
        y[half + i] = x[half + i] * rstd * c - x[i] * rstd * s;
        g[i] = dy[i] * c - dy[half + i] * s;
        g[half + i] = dy[i] * s + dy[half + i] * c;
      }
      for (int64_t i = 0; i < h; i++) dot += g[i] * x[i];
      const double coef = qkNorm ? rstd * rstd * rstd * dot / h : 0;
      for (int64_t i = 0; i < h; i++) dx[i] = rstd * g[i] - coef * x[i];
    }
  }
};

// Prints and returns the larger of ‖got − want‖ / ‖want‖ and max |got − want| / (f + |want|), f = 1e-3·max(1, max |want|)
// (a sum over many random terms, a mean or a weight's gradient, can land near 0). Also prints a hash of got's bits (FNV-1a),
// so that two builds of a kernel (a refactoring that should change no result) can be compared on the same seed.
static double report(const char* name, const std::vector<float>& got, const std::vector<double>& want) {
  uint32_t bits = 2166136261u;
  for (float v : got) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    for (int b = 0; b < 4; ++b) bits = (bits ^ ((u >> (8 * b)) & 0xffu)) * 16777619u;
  }
  double num = 0, den = 0, maxRel = 0, top = 1;
  for (double v : want) top = std::fmax(top, std::fabs(v));
  for (size_t i = 0; i < want.size(); i++) {
    const double d = double(got[i]) - want[i];
    num += d * d;
    den += want[i] * want[i];
    maxRel = std::fmax(maxRel, std::isfinite(got[i]) ? std::fabs(d) / (1e-3 * top + std::fabs(want[i])) : INFINITY);
  }
  const double rel = std::sqrt(num / std::fmax(den, 1e-300));
  std::printf("  %-8s rel. error %.2e, max elementwise %.2e, bits %08x\n", name, rel, maxRel, bits);
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
