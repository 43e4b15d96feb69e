// Shaped attention's mix with its causal window mean, forward and backward side by side (train_gpt.ts's shapedMix():
// He & Hofmann's α·X + β·A·X − γ·C·X, x the heads' input, m = A·X the attention's output, C the causal uniform average
// over each token's window in its document), in O(B·T·C): no T×T anything, and no C·x tensor either way. Rows (b, t)
// of C = H·h channels; token t sees s ∈ [lo(t), t], lo(t) = max(t − w + 1, the first token of t's document) (docIds
// nondecreasing: a document is a run of equal ids), n(t) = t − lo(t) + 1 tokens:
//   forward:  y[t]  = α·x[t] + β·m[t] − γ·(Σ_{s=lo(t)..t} x[s]) / n(t)
//   backward: S[s]  = (Cᵀ·dy)[s] = Σ_{t : lo(t) ≤ s ≤ t} dy[t] / n(t) = Σ_{t=s..hi(s)} dy[t] / n(t),
//             hi(s) = min(s + w − 1, the last token of s's document);
//             dx = α·dy − γ·S, dm = β·dy, dcoef = (Σ dy·x, Σ dy·m, −Σ x·S) per head.
// γ's gradient is −Σ_t dy[t]·(C·x)[t] = −Σ_s x[s]·(Cᵀ·dy)[s]: the second form needs only S, which the backward's walk
// has at step s, so neither pass makes or reads C·x (the separate HeadMix and CausalWindowMean wrote c and dc, 100 MB a
// layer each at the speedrun's batch, and read them back).
// S is the forward's window sum run backwards in time over dy / n, so both are one template over walk steps u (u = t
// forward, u = T − 1 − t backward), with 1 / n(t) precomputed for the backward's terms.
//
// Design (why): a running window sum (add the entering token, subtract the leaving one) makes each output O(1),
// but one thread walking a whole row per channel gives only B·C threads (12k at the speedrun batch: a few warps
// per SM, far below the memory bandwidth), and an fp32 running add/subtract drifts over a long row. So:
//   pass 1: per (b, chunk of kShapedMixChunk steps, channels) the chunk's sum;
//   pass 2: per (b, walk of kShapedMixWalk steps, channels) a thread starts from the exact sum over its first step's
//           window (the partial chunk at the window's lower edge term by term, then the whole chunks up to its
//           first step from pass 1: at most kShapedMixChunk − 1 + w / kShapedMixChunk reads, several at a time), then
//           adds and subtracts along its kShapedMixWalk steps, the loads of several steps issued together, and writes
//           each step's outputs as it goes (the mix is the walk's epilogue).
// A thread takes 4 consecutive channels where h allows (one 8- or 16-byte load a row; the 4 lie in one head). Every
// window sum is fp64, rounded to float once: a thread adds and subtracts a few hundred terms from an exact start, so
// nothing drifts at any T, and fp64 adds cost nothing next to this memory-bound op's traffic. Each output element is
// written by one thread in a fixed order; the coefficients' sums are per-thread fp64 partials added per head in a
// fixed order by a second small kernel: deterministic, no atomics. Consecutive threads take consecutive channels: each
// step's reads are coalesced and its docIds read is one broadcast.
// Rounding: y = α·x + β·m − γ·mean with each product, the sum and the difference correctly rounded (no FMA contraction),
// the composite's float32 operations on the mean rounded once; dx = α·dy + float(−γ·S), then the sum so far + dx.
#include "shaped_mix.h"

#include <cuda_bf16.h>

#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

constexpr int64_t kChunk = kShapedMixChunk, kWalk = kShapedMixWalk;
static_assert(kShapedMixWalk % kShapedMixChunk == 0, "a walk starts on a chunk boundary");

// Steps whose loads are issued together: a thread's steps depend on each other only through its sums, so the loads of
// several steps are in flight at once (one step at a time left a few hundred bytes in flight per warp and the window
// mean at a quarter of the memory's bandwidth). kStartDepth for the sums before a walk's first step (one value a step),
// kWalkDepth along the walk (three to five values a step: more would take the registers of a second block an SM).
constexpr int kStartDepth = 8, kWalkDepth = 4;
// The walk's blocks: 128 threads, so that the speedrun's 24,576 walks (T = 32768 in walks of 128, 192 vectors of 4
// channels) make 192 blocks for the 132 SMs. Walks of 256 in blocks of 256 made 96: a quarter of the SMs idle.
constexpr int kWalkThreads = 128;

__host__ __device__ __forceinline__ int64_t smaller(int64_t a, int64_t b) { return a < b ? a : b; }

// The time position of walk step u.
template <bool Back>
__device__ __forceinline__ int64_t timeAt(int64_t u, int64_t T) { return Back ? T - 1 - u : u; }

// The first walk step of u's window over its row's docIds: max(u − w + 1, the first step of u's document).
// A document is contiguous in either direction, so "in u's document" is false, then true over
// [u − w + 1, u]: a binary search.
template <bool Back>
__device__ int64_t windowStart(const int32_t* doc, int64_t u, int64_t T, int64_t w) {
  const int32_t d = doc[timeAt<Back>(u, T)];
  int64_t lo = u - w + 1 > 0 ? u - w + 1 : 0, hi = u;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (doc[timeAt<Back>(mid, T)] == d) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// windowStart by a whole warp whose 32 threads walk from the same step u of the same row (a walk's channel vectors a
// multiple of 32): each round the lanes read 32 evenly spaced steps of the range left, and the range becomes the stretch
// after the last one outside u's document up to the first inside. A window of 2,048 takes 3 rounds of loads, where the
// binary search made 11 one after another before the walk's first step.
template <bool Back>
__device__ int64_t windowStartByWarp(const int32_t* doc, int64_t u, int64_t T, int64_t w) {
  const int32_t d = doc[timeAt<Back>(u, T)];
  const int lane = int(threadIdx.x) % 32;
  int64_t lo = u - w + 1 > 0 ? u - w + 1 : 0, hi = u;  // the answer lies in [lo, hi], and hi is in u's document
  while (lo < hi) {
    const int64_t stride = (hi - lo + 30) / 31;  // lane 31 reads hi
    const int64_t at = smaller(lo + lane * stride, hi);
    const unsigned inside = __ballot_sync(0xffffffffu, doc[timeAt<Back>(at, T)] == d);
    const int first = __ffs(int(inside)) - 1;  // the first lane inside: lanes before it read steps outside, in order
    if (first == 0) return lo;
    hi = smaller(lo + first * stride, hi);
    lo += (first - 1) * stride + 1;
  }
  return lo;
}

// What the walk sums for a value v of row r: x forward, dy / n(t) backward (invRow = 1 / n of the row).
template <bool Back>
__device__ __forceinline__ double term(float v, double invRow) { return Back ? double(v) * invRow : double(v); }

// The walk's input (x forward, dy backward) and its 1 / n (backward) at walk step u of row b.
template <bool Back, int V, typename In>
struct Step {
  float v[V];
  double inv;
  __device__ __forceinline__ void load(const In* in, const double* inv_, int64_t b, int64_t u, int64_t T, int64_t C, int64_t c) {
    const int64_t r = b * T + timeAt<Back>(u, T);
    loadVec<V>(in + r * C + c, v);
    inv = Back ? inv_[r] : 1.0;
  }
};

// Adds the terms of walk steps [from, to) of row b's V channels at c to sum, in order, the loads of kStartDepth steps
// issued together (a clamped step is past `to`: never added).
template <bool Back, int V, typename In>
__device__ __forceinline__ void addSteps(const In* __restrict__ in, const double* __restrict__ inv, int64_t b, int64_t from,
                                         int64_t to, int64_t T, int64_t C, int64_t c, double (&sum)[V]) {
  for (int64_t g = from; g < to; g += kStartDepth) {
    Step<Back, V, In> st[kStartDepth];
#pragma unroll
    for (int s = 0; s < kStartDepth; ++s) st[s].load(in, inv, b, smaller(g + s, to - 1), T, C, c);
#pragma unroll
    for (int s = 0; s < kStartDepth; ++s)
      if (g + s < to)
        for (int j = 0; j < V; ++j) sum[j] += term<Back>(st[s].v[j], st[s].inv);
  }
}

// Pass 1, one thread's work: i = (b·chunks + k)·(C / V) + the channel vector sums steps [k·kChunk, (k + 1)·kChunk) ∩
// [0, T) of V channels in order.
template <bool Back, int V, typename In>
__global__ void chunkSumsKernel(const In* __restrict__ in, const double* __restrict__ inv, double* __restrict__ sums,
                                int64_t T, int64_t C, int64_t chunks, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) {
    const int64_t vectors = C / V, c = i % vectors * V, k = i / vectors % chunks, b = i / (vectors * chunks);
    double acc[V] = {};
    addSteps<Back, V>(in, inv, b, k * kChunk, smaller((k + 1) * kChunk, T), T, C, c, acc);
    for (int j = 0; j < V; ++j) sums[(b * chunks + k) * C + c + j] = acc[j];
  }
}

// The operands of the mix: forward x (the walk's input) and m, coef → y; backward dy (the walk's input), x, m, coef,
// the gradient so far → dx, dm and the coefficients' partial sums.
template <typename X, typename M, typename DM>
struct Mix {
  const X* x;
  const M* m;
  const float* coef;
  const float* acc;  // backward: x's gradient so far, or null
  float* out;        // y forward, dx backward
  DM* dm;            // backward
  double* partials;  // backward: 3 a thread
  int H, h;
};

// Pass 2, one thread's work: i = (b·walks + k)·(C / V) + the channel vector walks steps [k·kWalk, (k + 1)·kWalk) ∩
// [0, T) of V channels. Step u's window sum gains the entering row u and loses the leaving row u − w once that is in
// u's document (u − w ≥ first: the first step of the document, or of u0's full window, where the walk starts in it).
template <bool Back, int V, typename In, typename X, typename M, typename DM>
__global__ void __launch_bounds__(kWalkThreads) walkKernel(const In* __restrict__ in, const int32_t* __restrict__ doc,
    const double* __restrict__ inv, const double* __restrict__ sums, Mix<X, M, DM> mix, int64_t T, int64_t C, int64_t w,
    int64_t chunks, int64_t walks, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) {
    const int64_t vectors = C / V, c = i % vectors * V, k = i / vectors % walks, b = i / (vectors * walks);
    const int head = int(c / mix.h) % mix.H;
    const float alpha = mix.coef[head], beta = mix.coef[mix.H + head], gamma = mix.coef[2 * mix.H + head];
    const int32_t* row = doc + b * T;
    const int64_t u0 = k * kWalk, u1 = smaller(u0 + kWalk, T);
    // The window of u0 less u0 itself, [lo, u0): term by term up to the first chunk boundary, then whole chunks
    // (u0 is a chunk boundary; every chunk in there lies in u0's document, as lo does).
    // (the backward's by the warp where its lanes share the walk: every warp's i begin at a multiple of 32, as n does;
    // the forward with both of the backward's changes below ran 0.141 ms against 0.131 on an H200, so it keeps its own)
    const int64_t lo =
        Back && vectors % 32 == 0 ? windowStartByWarp<Back>(row, u0, T, w) : windowStart<Back>(row, u0, T, w);
    double sum[V] = {};
    const int64_t edge = smaller((lo + kChunk - 1) / kChunk * kChunk, u0);
    addSteps<Back, V>(in, inv, b, lo, edge, T, C, c, sum);
    constexpr int D = kStartDepth;
    for (int64_t g = edge; g < u0; g += D * kChunk) {
      double part[D][V];
#pragma unroll
      for (int s = 0; s < D; ++s) {
        const int64_t chunk = smaller(g + s * kChunk, u0 - kChunk) / kChunk;
        for (int j = 0; j < V; ++j) part[s][j] = sums[(b * chunks + chunk) * C + c + j];
      }
#pragma unroll
      for (int s = 0; s < D; ++s)
        if (g + s * kChunk < u0)
          for (int j = 0; j < V; ++j) sum[j] += part[s][j];
    }
    int64_t first = lo;
    int32_t prevDoc = row[timeAt<Back>(u0, T)];
    double sx = 0, sm = 0, ss = 0;  // backward: this thread's Σ dy·x, Σ dy·m, Σ x·S
    constexpr int E = kWalkDepth;
    for (int64_t g = u0; g < u1; g += E) {
      // the loads of steps g … g + E − 1, clamped into the row (a clamped step is past u1: never used); the backward's
      // leaving row only where it may leave (first only grows, so a step's `leaves` implies g + s − w ≥ first here): in
      // documents shorter than the window, the speedrun's, no row leaves, yet each step read dy's row w back and its 1 / n
      Step<Back, V, In> enter[E], leave[E] = {};
      float xs[E][V], ms[E][V], before[E][V];
      int32_t docs[E];
      int64_t rows[E];
#pragma unroll
      for (int s = 0; s < E; ++s) {
        const int64_t ue = smaller(g + s, T - 1), ul = g + s - w > 0 ? g + s - w : 0;
        enter[s].load(in, inv, b, ue, T, C, c);
        if (!Back || g + s - w >= first) leave[s].load(in, inv, b, ul, T, C, c);
        const int64_t r = b * T + timeAt<Back>(ue, T);
        rows[s] = r;
        docs[s] = doc[r];
        loadVec<V>(mix.m + r * C + c, ms[s]);
        if constexpr (Back) {
          loadVec<V>(mix.x + r * C + c, xs[s]);
          if (mix.acc) loadVec<V>(mix.acc + r * C + c, before[s]);
        }
      }
#pragma unroll
      for (int s = 0; s < E; ++s) {
        const int64_t step = g + s;
        if (step >= u1) break;
        const bool starts = docs[s] != prevDoc, leaves = !starts && step - w >= first;  // a document starts: its window is empty
        if (starts) {
          first = step;
          prevDoc = docs[s];
        }
        float out[V], dm[V];
        for (int j = 0; j < V; ++j) {
          if (starts) sum[j] = 0;
          else if (leaves) sum[j] -= term<Back>(leave[s].v[j], leave[s].inv);
          sum[j] += term<Back>(enter[s].v[j], enter[s].inv);
          if constexpr (Back) {
            const float dy = enter[s].v[j];
            sx += double(dy) * xs[s][j];
            sm += double(dy) * ms[s][j];
            ss += double(xs[s][j]) * sum[j];
            const float own = __fadd_rn(__fmul_rn(alpha, dy), float(-double(gamma) * sum[j]));
            out[j] = mix.acc ? __fadd_rn(before[s][j], own) : own;  // the sum so far first, as the Add would
            dm[j] = __fmul_rn(beta, dy);
          } else {
            const float mean = float(sum[j] / double(smaller(step - first + 1, w)));
            out[j] = __fsub_rn(__fadd_rn(__fmul_rn(alpha, enter[s].v[j]), __fmul_rn(beta, ms[s][j])), __fmul_rn(gamma, mean));
          }
        }
        storeVec<V>(mix.out + rows[s] * C + c, out);
        if constexpr (Back) storeVec<V>(mix.dm + rows[s] * C + c, dm);
      }
    }
    if constexpr (Back) {
      mix.partials[3 * i] = sx;
      mix.partials[3 * i + 1] = sm;
      mix.partials[3 * i + 2] = ss;
    }
  }
}

// 1 / n(t) for the backward's terms (a multiply per term, not an fp64 divide), one thread per row (b, t).
__global__ void inverseCountsKernel(const int32_t* __restrict__ doc, double* __restrict__ inv, int64_t T, int64_t w,
                                    int64_t rows) {
  TSGPT_GRID_STRIDE(r, rows) {
    const int64_t t = r % T;
    inv[r] = 1.0 / double(t - windowStart<false>(doc + (r - t), t, T, w) + 1);
  }
}

// dcoef[j·H + head] = ± the head's partial sums j of the walk's threads, added in a fixed order: block `head` (gridDim.x
// = H), each thread a fixed share of the head's threads, then the block's shares in thread order (γ's with the minus).
__global__ void headSumsKernel(const double* __restrict__ partials, int64_t groups, int64_t headVectors,
                               int64_t vectors, int H, float* __restrict__ dcoef) {
  __shared__ double shares[kThreads][3];
  const int head = blockIdx.x;
  double s[3] = {};
  for (int64_t q = threadIdx.x; q < groups * headVectors; q += blockDim.x) {
    const int64_t item = q / headVectors * vectors + head * headVectors + q % headVectors;  // (b, walk) group, vector
    for (int j = 0; j < 3; ++j) s[j] += partials[3 * item + j];
  }
  for (int j = 0; j < 3; ++j) shares[threadIdx.x][j] = s[j];
  __syncthreads();
  if (threadIdx.x < 3) {
    double total = 0;
    for (int t = 0; t < blockDim.x; ++t) total += shares[t][threadIdx.x];
    dcoef[threadIdx.x * H + head] = float(threadIdx.x == 2 ? -total : total);
  }
}

// Both passes, V = 4 channels a thread where h is a multiple of 4 and the rows start 16-byte aligned, else V = 1.
template <bool Back, typename In, typename X, typename M, typename DM>
void walks(cudaStream_t s, const In* in, const int32_t* doc, const double* inv, double* sums, Mix<X, M, DM> mix, bool vec4,
           int64_t B, int64_t T, int64_t C, int64_t w) {
  const int64_t chunks = (T + kChunk - 1) / kChunk, walkCount = (T + kWalk - 1) / kWalk;
  auto run = [&](auto width) {
    constexpr int V = decltype(width)::value;
    // A window of at most kChunk tokens never holds a whole chunk before its last token: no pass 1.
    if (w > kChunk) chunkSumsKernel<Back, V, In><<<gridFor(B * chunks * C / V), kThreads, 0, s>>>(in, inv, sums, T, C, chunks, B * chunks * C / V);
    const unsigned blocks = unsigned(std::min<int64_t>((B * walkCount * C / V + kWalkThreads - 1) / kWalkThreads, 1 << 20));
    walkKernel<Back, V><<<blocks, kWalkThreads, 0, s>>>(in, doc, inv, sums, mix, T, C, w, chunks, walkCount,
                                                                          B * walkCount * C / V);
  };
  if (vec4) run(std::integral_constant<int, 4>{});
  else run(std::integral_constant<int, 1>{});
}

}  // namespace

cudaError_t launchShapedMix(cudaStream_t s, const void* x, bool xBf16, const void* m, bool mBf16, const float* coef,
                            const int32_t* docIds, float* y, double* chunkSums, int64_t B, int64_t T, int64_t H, int64_t h,
                            int64_t window) {
  if (window < 1) return cudaErrorInvalidValue;
  const int64_t C = H * h;
  if (B * T * C == 0) return cudaSuccess;
  const bool vec4 = h % 4 == 0 && aligned16({x, m, y});
  byInputType(x, xBf16, [&](auto* xs) {
    byInputType(m, mBf16, [&](auto* ms) {
      using X = std::remove_cv_t<std::remove_pointer_t<decltype(xs)>>;
      using M = std::remove_cv_t<std::remove_pointer_t<decltype(ms)>>;
      const Mix<X, M, float> mix{xs, ms, coef, nullptr, y, nullptr, nullptr, int(H), int(h)};
      walks<false>(s, xs, docIds, nullptr, chunkSums, mix, vec4, B, T, C, smaller(window, T));
    });
  });
  return cudaGetLastError();
}

cudaError_t launchShapedMixGrad(cudaStream_t s, const float* dy, const void* x, bool xBf16, const void* m, bool mBf16,
                                const float* coef, const int32_t* docIds, const float* accumulated, float* dx, void* dm,
                                bool dmBf16, float* dcoef, double* chunkSums, double* invCounts, double* partials, int64_t B,
                                int64_t T, int64_t H, int64_t h, int64_t window) {
  if (window < 1) return cudaErrorInvalidValue;
  if (H == 0) return cudaSuccess;
  const int64_t C = H * h;
  if (B * T * C == 0) return cudaMemsetAsync(dcoef, 0, sizeof(float) * 3 * H, s);  // empty sums are 0
  const int64_t w = smaller(window, T);
  const bool vec4 = h % 4 == 0 && aligned16({dy, x, m, accumulated, dx, dm});
  inverseCountsKernel<<<gridFor(B * T), kThreads, 0, s>>>(docIds, invCounts, T, w, B * T);
  byInputType(x, xBf16, [&](auto* xs) {
    byInputType(m, mBf16, [&](auto* ms) {
      byStorage(dmBf16, [&](auto* dmType) {
        using X = std::remove_cv_t<std::remove_pointer_t<decltype(xs)>>;
        using M = std::remove_cv_t<std::remove_pointer_t<decltype(ms)>>;
        using DM = std::remove_pointer_t<decltype(dmType)>;
        const Mix<X, M, DM> mix{xs, ms, coef, accumulated, dx, static_cast<DM*>(dm), partials, int(H), int(h)};
        walks<true>(s, dy, docIds, invCounts, chunkSums, mix, vec4, B, T, C, w);
      });
    });
  });
  const int64_t V = vec4 ? 4 : 1, walkCount = (T + kWalk - 1) / kWalk;
  headSumsKernel<<<unsigned(H), kThreads, 0, s>>>(partials, B * walkCount, h / V, C / V, int(H), dcoef);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(shapedMix, launchShapedMix, "x", "xBf16", "m", "mBf16", "coef", "docIds", "y", "chunkSums", "B", "T", "H", "h",
               "window");
TSGPT_LAUNCHER(shapedMixGrad, launchShapedMixGrad, "dy", "x", "xBf16", "m", "mBf16", "coef", "docIds", "accumulated", "dx",
               "dm", "dmBf16", "dcoef", "chunkSums", "invCounts", "partials", "B", "T", "H", "h", "window");

}  // namespace tsgpt
