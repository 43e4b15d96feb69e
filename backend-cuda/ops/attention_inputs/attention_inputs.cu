// The attention's inputs from the QKV projection, forward and backward in one pass each
// (train_gpt.ts's attentionInputs()). qkv [B,T,(H+2·Hk)·h] holds per token H q heads, Hk k heads,
// Hk v heads: B·T·(H+2·Hk) contiguous rows of h; without v (the shaped blocks' q and k: v null, dv null in the
// backward) [B,T,(H+Hk)·h], no v rows, no lambdas, no dλ sums. With x a row and (x1, x2) its pairs (x[j], x[j+half]):
//   q, k rows:  n = x·rstd (rstd = (mean x² + eps)^-½ under QK-norm, else 1),
//               y1 = n1·cos + n2·sin,  y2 = n2·cos − n1·sin   (rotary.cu's rotation, tables [T, half])
//   v rows:     y = λa·x + λb·ve   (λa·x without value embeddings)
// backward, from dy (dq, dk or dv at the row's place):
//   q, k rows:  g = the transpose rotation of dy (g1 = dy1·cos − dy2·sin, g2 = dy1·sin + dy2·cos),
//               dx = rstd·g − x·rstd³·mean(g·x)   (rms_norm.cu's backward; dx = g without QK-norm)
//   v rows:     dx = λa·dy,  dve = λb·dy (+ veAcc),  dλa += Σ dy·x,  dλb += Σ dy·ve
// veAcc: ve's gradient so far, where the backward hands it over (tfjs_node.ts: a value embedding feeds two layers), added
// in dve's store as the Add it replaces would (float32, the sum so far first).
// rstd is recomputed from the row in the backward (one FMA per element, in the pass that reads the row
// anyway) rather than saved. dλ comes from per-block partial sums in a fixed order and a one-block
// final sum: no float atomics, so reruns are bit-identical.
// Memory-bound: the forward reads qkv (and ve) once and writes q, k, v once; the backward reads dq, dk,
// dv, qkv (and ve) once and writes dqkv (and dve) once; the tables (T·h floats) stay in L2. qkv is read as the
// projection stored it: bf16 under bf16 matmul precision (ops/linear: In = __nv_bfloat16), else float; dk and dv as
// the attention's backward stored them: bf16 on the tensor cores (Kv = __nv_bfloat16), else float; dq is float (the
// attention sums it by atomics).
// Layout of the threads: R lanes per row (R a power of two ≤ 32, so a row's lanes sit in one warp),
// each lane V pairs at a time. Where half = 4·R (h = 8, 16, ..., 256: the model's 64 and 128) and
// the buffers are 16-byte aligned, one float4 of each half per lane, kept in registers between the
// row sum and the output; otherwise a warp per row, one pair per lane per step, reading the row twice.
#include "attention_inputs.h"

#include "../../native/kernels.h"
#include "../../native/launch.h"
#include "../../native/rows.cuh"
#include "../../native/vec.cuh"
#include "../../native/launchers.h"

namespace tsgpt {
namespace {

enum RowKind : int { kQueryRow = 0, kKeyRow = 1, kValueRow = 2 };

struct Sizes {
  int64_t rows;  // B·T·(H + Hk + Hv)
  int T, H, Hk, Hv, h, half;  // Hv: v heads per token, Hk (or 0 without v)
  bool qkNorm;
  float eps;
};

// Row r of qkv (token·(H + Hk + Hv) + head): q, k or v, its offset there (and in dq, dk, dv, ve), its position.
struct Row {
  RowKind kind;
  int64_t out;
  int t;
};

__device__ __forceinline__ Row locate(const Sizes& s, int64_t r) {
  const int heads = s.H + s.Hk + s.Hv;
  const int64_t token = r / heads;
  const int j = int(r - token * heads), t = int(token % s.T);
  if (j < s.H) return {kQueryRow, (token * s.H + j) * s.h, t};
  if (j < s.H + s.Hk) return {kKeyRow, (token * s.Hk + j - s.H) * s.h, t};
  return {kValueRow, (token * s.Hk + j - s.H - s.Hk) * s.h, t};
}

// Sum over the R lanes of a row (aligned groups of R lanes; every lane of the warp takes part).
template <int R>
__device__ __forceinline__ float rowSum(float v) {
#pragma unroll
  for (int o = R / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// kCached: half == V·R, so each lane has exactly one chunk (j = V·lane) and keeps it in registers. Out: float, or
// bf16 (rounded to nearest even) for the attention's tensor-core kernels.
template <int V, int R, bool kCached, typename In, typename Out>
__global__ void __launch_bounds__(kThreads) attentionInputsKernel(const In* __restrict__ qkv, const float* __restrict__ cosT,
    const float* __restrict__ sinT, const float* __restrict__ lambdas, const float* __restrict__ ve, Out* __restrict__ q,
    Out* __restrict__ k, Out* __restrict__ v, Sizes s) {
  const int lane = threadIdx.x % R, half = kCached ? V * R : s.half;
  const float la = v ? lambdas[0] : 0.f, lb = ve ? lambdas[1] : 0.f;  // no lambdas without v
  // The block takes kThreads / R rows per step; the loop's bound is the same for all its threads, so every
  // lane of a warp reaches the row sums' shuffles.
  for (int64_t first = int64_t(blockIdx.x) * (kThreads / R); first < s.rows; first += int64_t(gridDim.x) * (kThreads / R)) {
    const int64_t r = first + threadIdx.x / R;
    const bool valid = r < s.rows;
    const Row row = locate(s, valid ? r : 0);
    const In* x = qkv + (valid ? r : 0) * s.h;
    const bool normed = s.qkNorm && row.kind != kValueRow;
    float x1[V] = {}, x2[V] = {}, ss = 0.f;
    if (valid && (kCached || normed)) {
      for (int j = V * lane; j < half; j += V * R) {
        loadVec<V>(x + j, x1);
        loadVec<V>(x + half + j, x2);
#pragma unroll
        for (int i = 0; i < V; ++i) ss += x1[i] * x1[i] + x2[i] * x2[i];
      }
    }
    ss = rowSum<R>(ss);
    if (!valid) continue;
    const float rstd = normed ? rsqrtf(ss / float(s.h) + s.eps) : 1.f;
    Out* y = (row.kind == kQueryRow ? q : row.kind == kKeyRow ? k : v) + row.out;
    for (int j = V * lane; j < half; j += V * R) {
      if (!kCached) {
        loadVec<V>(x + j, x1);
        loadVec<V>(x + half + j, x2);
      }
      float y1[V], y2[V];
      if (row.kind == kValueRow) {
        float e1[V] = {}, e2[V] = {};
        if (ve) {
          loadVec<V>(ve + row.out + j, e1);
          loadVec<V>(ve + row.out + half + j, e2);
        }
#pragma unroll
        for (int i = 0; i < V; ++i) {
          y1[i] = la * x1[i] + lb * e1[i];
          y2[i] = la * x2[i] + lb * e2[i];
        }
      } else {
        float c[V], sn[V];
        loadVec<V>(cosT + int64_t(row.t) * half + j, c);
        loadVec<V>(sinT + int64_t(row.t) * half + j, sn);
#pragma unroll
        for (int i = 0; i < V; ++i) {
          const float n1 = x1[i] * rstd, n2 = x2[i] * rstd;
          y1[i] = n1 * c[i] + n2 * sn[i];
          y2[i] = n2 * c[i] - n1 * sn[i];
        }
      }
      storeVec<V>(y + j, y1);
      storeVec<V>(y + half + j, y2);
    }
  }
}

// g = the transpose rotation of dy's pair chunk at j (q and k rows).
template <int V, typename G>
__device__ __forceinline__ void rotateBack(const G* __restrict__ dy, const float* __restrict__ cosT,
                                           const float* __restrict__ sinT, int half, int j, float (&g1)[V], float (&g2)[V]) {
  float d1[V], d2[V], c[V], sn[V];
  loadVec<V>(dy + j, d1);
  loadVec<V>(dy + half + j, d2);
  loadVec<V>(cosT + j, c);
  loadVec<V>(sinT + j, sn);
#pragma unroll
  for (int i = 0; i < V; ++i) {
    g1[i] = d1[i] * c[i] - d2[i] * sn[i];
    g2[i] = d1[i] * sn[i] + d2[i] * c[i];
  }
}

// Also writes this block's [Σ dv·v_raw, Σ dv·ve] to partials[2·blockIdx.x ..] (where there is v: partials null without).
// dqkv is float, or bf16 where only the QKV projection's gradient matmuls read it (bf16 matmul precision).
template <int V, int R, bool kCached, typename In, typename Out, typename Kv>
__global__ void __launch_bounds__(kThreads) attentionInputsGradKernel(const float* __restrict__ dq, const Kv* __restrict__ dk,
    const Kv* __restrict__ dv, const In* __restrict__ qkv, const float* __restrict__ cosT, const float* __restrict__ sinT,
    const float* __restrict__ lambdas, const float* __restrict__ ve, Out* __restrict__ dqkv, float* __restrict__ dve,
    const float* __restrict__ veAcc, float* __restrict__ partials, Sizes s) {
  __shared__ float scratch[32];
  const int lane = threadIdx.x % R, half = kCached ? V * R : s.half;
  const float la = dv ? lambdas[0] : 0.f, lb = ve ? lambdas[1] : 0.f;  // no lambdas without v
  float sumA = 0.f, sumB = 0.f;  // this thread's share of Σ dv·v_raw and Σ dv·ve
  for (int64_t first = int64_t(blockIdx.x) * (kThreads / R); first < s.rows; first += int64_t(gridDim.x) * (kThreads / R)) {
    const int64_t r = first + threadIdx.x / R;
    const bool valid = r < s.rows;
    const Row row = locate(s, valid ? r : 0);
    const In* x = qkv + (valid ? r : 0) * s.h;
    const float* c = cosT + int64_t(row.t) * half;
    const float* sn = sinT + int64_t(row.t) * half;
    // g at j from dq or dk, which may differ in type
    const auto turnBack = [&](int j, float (&g1)[V], float (&g2)[V]) {
      if (row.kind == kQueryRow) rotateBack<V>(dq + row.out, c, sn, half, j, g1, g2);
      else rotateBack<V>(dk + row.out, c, sn, half, j, g1, g2);
    };
    const bool normed = s.qkNorm && row.kind != kValueRow;
    // q and k rows read x only under QK-norm (x1 = x2 = 0 and coef = 0 below otherwise: dx = g)
    float x1[V] = {}, x2[V] = {}, g1[V] = {}, g2[V] = {}, ss = 0.f, dot = 0.f;
    if (valid && row.kind != kValueRow && (kCached || normed)) {
      for (int j = V * lane; j < half; j += V * R) {
        if (normed) {
          loadVec<V>(x + j, x1);
          loadVec<V>(x + half + j, x2);
        }
        turnBack(j, g1, g2);
#pragma unroll
        for (int i = 0; i < V; ++i) {
          ss += x1[i] * x1[i] + x2[i] * x2[i];
          dot += g1[i] * x1[i] + g2[i] * x2[i];
        }
      }
    }
    ss = rowSum<R>(ss);
    dot = rowSum<R>(dot);
    if (!valid) continue;
    Out* dx = dqkv + r * s.h;
    if (row.kind == kValueRow) {
      for (int j = V * lane; j < half; j += V * R) {
        float d1[V], d2[V], e1[V] = {}, e2[V] = {}, o1[V], o2[V];
        loadVec<V>(x + j, x1);
        loadVec<V>(x + half + j, x2);
        loadVec<V>(dv + row.out + j, d1);
        loadVec<V>(dv + row.out + half + j, d2);
        if (ve) {
          loadVec<V>(ve + row.out + j, e1);
          loadVec<V>(ve + row.out + half + j, e2);
        }
#pragma unroll
        for (int i = 0; i < V; ++i) {
          sumA += d1[i] * x1[i] + d2[i] * x2[i];
          o1[i] = la * d1[i];
          o2[i] = la * d2[i];
        }
        storeVec<V>(dx + j, o1);
        storeVec<V>(dx + half + j, o2);
        if (ve) {
          float a1[V] = {}, a2[V] = {};
          if (veAcc) {  // the same branch for the whole grid
            loadVec<V>(veAcc + row.out + j, a1);
            loadVec<V>(veAcc + row.out + half + j, a2);
          }
#pragma unroll
          for (int i = 0; i < V; ++i) {
            sumB += d1[i] * e1[i] + d2[i] * e2[i];
            o1[i] = veAcc ? __fadd_rn(a1[i], __fmul_rn(lb, d1[i])) : lb * d1[i];
            o2[i] = veAcc ? __fadd_rn(a2[i], __fmul_rn(lb, d2[i])) : lb * d2[i];
          }
          storeVec<V>(dve + row.out + j, o1);
          storeVec<V>(dve + row.out + half + j, o2);
        }
      }
      continue;
    }
    const float rstd = normed ? rsqrtf(ss / float(s.h) + s.eps) : 1.f;
    const float coef = normed ? rstd * rstd * rstd * dot / float(s.h) : 0.f;
    for (int j = V * lane; j < half; j += V * R) {
      if (!kCached) {
        if (normed) {
          loadVec<V>(x + j, x1);
          loadVec<V>(x + half + j, x2);
        }
        turnBack(j, g1, g2);
      }
      float o1[V], o2[V];
#pragma unroll
      for (int i = 0; i < V; ++i) {
        o1[i] = rstd * g1[i] - coef * x1[i];
        o2[i] = rstd * g2[i] - coef * x2[i];
      }
      storeVec<V>(dx + j, o1);
      storeVec<V>(dx + half + j, o2);
    }
  }
  if (!partials) return;  // the same branch for the whole grid: no v rows, no sums
  sumA = blockReduce<false>(sumA, scratch);
  sumB = blockReduce<false>(sumB, scratch);
  if (threadIdx.x == 0) {
    partials[2 * blockIdx.x] = sumA;
    partials[2 * blockIdx.x + 1] = sumB;
  }
}

// Lanes per row for the float4 path (half = 4·R), or 0 where the scalar path runs.
int vectorLanes(int64_t half, std::initializer_list<const void*> ptrs) {
  if (half % 4 != 0 || !aligned16(ptrs)) return 0;
  const int64_t R = half / 4;
  return R <= 32 && (R & (R - 1)) == 0 ? int(R) : 0;
}

// Runs Path<V, R, kCached>::run(args...) for the path that applies (R from vectorLanes).
template <template <int, int, bool> class Path, typename... Args>
void dispatch(int R, Args... args) {
  switch (R) {
    case 32: Path<4, 32, true>::run(args...); break;
    case 16: Path<4, 16, true>::run(args...); break;
    case 8: Path<4, 8, true>::run(args...); break;
    case 4: Path<4, 4, true>::run(args...); break;
    case 2: Path<4, 2, true>::run(args...); break;
    case 1: Path<4, 1, true>::run(args...); break;
    default: Path<1, 32, false>::run(args...); break;
  }
}

unsigned gridForRows(int64_t rows, int R, int64_t cap) {
  const int64_t perBlock = kThreads / R;
  return unsigned(std::min<int64_t>(std::max<int64_t>((rows + perBlock - 1) / perBlock, 1), cap));
}

template <int V, int R, bool kCached>
struct ForwardPath {
  template <typename... Args>
  static void run(cudaStream_t st, int64_t rows, Args... args) {
    launchForward(st, gridForRows(rows, R, 16384), args...);
  }
  template <typename In, typename Out>
  static void launchForward(cudaStream_t st, unsigned blocks, const In* qkv, const float* cosT, const float* sinT,
                            const float* lambdas, const float* ve, Out* q, Out* k, Out* v, Sizes s) {
    attentionInputsKernel<V, R, kCached, In, Out><<<blocks, kThreads, 0, st>>>(qkv, cosT, sinT, lambdas, ve, q, k, v, s);
  }
};

// The backward's grid is a fixed function of the sizes (so is the partial sums' order): at most a few blocks per SM.
constexpr int64_t kMaxGradBlocks = 2048;

template <int V, int R, bool kCached>
struct GradPath {
  template <typename... Args>
  static void run(cudaStream_t st, unsigned blocks, Args... args) {
    attentionInputsGradKernel<V, R, kCached><<<blocks, kThreads, 0, st>>>(args...);
  }
};

bool sizesFit(int64_t T, int64_t H, int64_t Hk, int64_t h) {
  return T <= 0x7fffffffLL && H + 2 * Hk <= 0x7fffffffLL && h <= 0x7fffffffLL;
}

}  // namespace

cudaError_t launchAttentionInputs(cudaStream_t st, const void* qkv, bool qkvBf16, const float* cosT, const float* sinT,
                                  const float* lambdas, const float* ve, void* q, void* k, void* v, bool outBf16,
                                  int64_t B, int64_t T, int64_t H, int64_t Hk, int64_t h, bool qkNorm, float eps) {
  const int64_t Hv = v ? Hk : 0, rows = B * T * (H + Hk + Hv);
  if (rows == 0) return cudaSuccess;
  if (!sizesFit(T, H, Hk, h) || h % 2 != 0) return cudaErrorInvalidValue;
  const Sizes s{rows, int(T), int(H), int(Hk), int(Hv), int(h), int(h / 2), qkNorm, eps};
  const int R = vectorLanes(h / 2, {qkv, cosT, sinT, ve, q, k, v});
  byInputType(qkv, qkvBf16, [&](auto* in) {
    if (outBf16) {
      using bf16 = __nv_bfloat16;
      dispatch<ForwardPath>(R, st, rows, in, cosT, sinT, lambdas, ve, static_cast<bf16*>(q), static_cast<bf16*>(k),
                            static_cast<bf16*>(v), s);
    } else {
      dispatch<ForwardPath>(R, st, rows, in, cosT, sinT, lambdas, ve, static_cast<float*>(q), static_cast<float*>(k),
                            static_cast<float*>(v), s);
    }
  });
  return cudaGetLastError();
}

cudaError_t launchAttentionInputsGrad(cudaStream_t st, const float* dq, const void* dk, const void* dv, bool kvBf16,
                                      const void* qkv, bool qkvBf16, const float* cosT, const float* sinT,
                                      const float* lambdas, const float* ve, void* dqkv, bool dqkvBf16, float* dlambdas,
                                      float* dve, const float* veAcc, int64_t B, int64_t T, int64_t H, int64_t Hk,
                                      int64_t h, bool qkNorm, float eps, const float* lambdasAcc) {
  const int64_t Hv = dv ? Hk : 0, rows = B * T * (H + Hk + Hv);
  if (rows == 0) return dv ? launchSumPartialPairs(st, nullptr, 0, dlambdas, dlambdas + 1, lambdasAcc) : cudaSuccess;  // empty sums (+ the sum so far)
  if (!sizesFit(T, H, Hk, h) || h % 2 != 0) return cudaErrorInvalidValue;
  const Sizes s{rows, int(T), int(H), int(Hk), int(Hv), int(h), int(h / 2), qkNorm, eps};
  const int R = vectorLanes(h / 2, {dq, dk, dv, qkv, cosT, sinT, ve, dqkv, dve, veAcc});
  const unsigned blocks = gridForRows(rows, R == 0 ? 32 : R, kMaxGradBlocks);
  float* partials = nullptr;  // the blocks' dλ sums, where there is v
  cudaError_t e = dv ? cudaMallocAsync(reinterpret_cast<void**>(&partials), sizeof(float) * 2 * blocks, st) : cudaSuccess;
  if (e != cudaSuccess) return e;
  byInputType(dk, kvBf16, [&](auto* dkT) {
    const auto* dvT = static_cast<decltype(dkT)>(dv);
    byInputType(qkv, qkvBf16, [&](auto* in) {
      if (dqkvBf16) {
        dispatch<GradPath>(R, st, blocks, dq, dkT, dvT, in, cosT, sinT, lambdas, ve, static_cast<__nv_bfloat16*>(dqkv), dve,
                           veAcc, partials, s);
      } else {
        dispatch<GradPath>(R, st, blocks, dq, dkT, dvT, in, cosT, sinT, lambdas, ve, static_cast<float*>(dqkv), dve, veAcc,
                           partials, s);
      }
    });
  });
  if (!dv) return cudaGetLastError();
  e = launchSumPartialPairs(st, partials, int(blocks), dlambdas, dlambdas + 1, lambdasAcc);
  const cudaError_t f = cudaFreeAsync(partials, st);  // stream-ordered: after the final sum
  return e != cudaSuccess ? e : f;
}

TSGPT_LAUNCHER(attentionInputs, launchAttentionInputs, "qkv", "qkvBf16", "cos", "sin", "lambdas", "ve", "q", "k", "v", "outBf16", "B", "T",
               "H", "Hk", "h", "qkNorm", "eps");
TSGPT_LAUNCHER(attentionInputsGrad, launchAttentionInputsGrad, "dq", "dk", "dv", "kvBf16", "qkv", "qkvBf16", "cos", "sin",
               "lambdas", "ve", "dqkv", "dqkvBf16", "dlambdas", "dve", "veAcc", "B", "T", "H", "Hk", "h", "qkNorm", "eps",
               "lambdasAcc");

}  // namespace tsgpt
