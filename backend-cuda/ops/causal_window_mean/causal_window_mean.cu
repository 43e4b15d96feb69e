// Causal windowed mean (train_gpt.ts's windowMean(): the uniform average C·X of shaped attention, He & Hofmann),
// forward and backward, per document of a packed row, in O(B·T·C): no T×T anything. Rows (b, t) of C channels;
// token t sees s ∈ [lo(t), t], lo(t) = max(t − w + 1, the first token of t's document) (docIds nondecreasing: a
// document is a run of equal ids), n(t) = t − lo(t) + 1 tokens:
//   forward:  y[t]  = (Σ_{s=lo(t)..t} x[s]) / n(t)
//   backward: dx[s] = Σ_{t : lo(t) ≤ s ≤ t} dy[t] / n(t) = Σ_{t=s..hi(s)} dy[t] / n(t),
//             hi(s) = min(s + w − 1, the last token of s's document)
// The backward is the forward's window sum run backwards in time over dy / n, so both are one template over
// walk steps u (u = t forward, u = T − 1 − t backward), with 1 / n(t) precomputed for the backward's terms. (The
// forward divides: the same 1 / n from a kernel of its own and a load a step took it 0.158 -> 0.176 ms.)
//
// Design (why): a running window sum (add the entering token, subtract the leaving one) makes each output O(1),
// but one thread walking a whole row per channel gives only B·C threads (12k at the speedrun batch: a few warps
// per SM, far below the memory bandwidth), and an fp32 running add/subtract drifts over a long row. So:
//   pass 1: per (b, chunk of kWindowMeanChunk steps, channels) the chunk's sum;
//   pass 2: per (b, walk of kWindowMeanWalk steps, channels) a thread starts from the exact sum over its first step's
//           window (the partial chunk at the window's lower edge term by term, then the whole chunks up to its
//           first step from pass 1: at most kWindowMeanChunk − 1 + w / kWindowMeanChunk reads), then adds and
//           subtracts along its kWindowMeanWalk steps, the loads of kDepth steps issued together.
// A thread takes 4 consecutive channels where C allows (one 8- or 16-byte load a row: 25k threads at the speedrun
// batch, each with 16 rows' loads in flight); the kernels took one channel and one step at a time, and ran at a
// quarter of the memory's bandwidth (0.18 ms forward, 0.22 backward at [32768, 768] on an H200).
// Every sum is fp64, rounded to float once at the output: a thread adds and subtracts a few hundred terms from
// an exact start, so nothing drifts at any T, and fp64 adds cost nothing next to this memory-bound op's traffic.
// Each output element is written by one thread in a fixed order: deterministic, no atomics. Consecutive threads
// take consecutive channels: each step's reads of x are coalesced and its docIds read is one broadcast.
#include "causal_window_mean.h"

#include <cuda_bf16.h>

#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

constexpr int64_t kChunk = kWindowMeanChunk, kWalk = kWindowMeanWalk;
static_assert(kWindowMeanWalk % kWindowMeanChunk == 0, "a walk starts on a chunk boundary");

__host__ __device__ __forceinline__ int64_t smaller(int64_t a, int64_t b) { return a < b ? a : b; }

// The time position of walk step u.
template <bool Back>
__host__ __device__ __forceinline__ int64_t timeAt(int64_t u, int64_t T) { return Back ? T - 1 - u : u; }

// The first walk step of u's window over its row's docIds: max(u − w + 1, the first step of u's document).
// A document is contiguous in either direction, so "in u's document" is false, then true over
// [u − w + 1, u]: a binary search.
template <bool Back>
__host__ __device__ int64_t windowStart(const int32_t* doc, int64_t u, int64_t T, int64_t w) {
  const int32_t d = doc[timeAt<Back>(u, T)];
  int64_t lo = u - w + 1 > 0 ? u - w + 1 : 0, hi = u;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (doc[timeAt<Back>(mid, T)] == d) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// V consecutive values at p as floats (on the device one 8- or 16-byte load where V = 4), and V floats stored there.
template <int V, typename In>
__host__ __device__ __forceinline__ void loadValues(const In* p, float (&v)[V]) {
#ifdef __CUDA_ARCH__
  loadVec<V>(p, v);
#else
  for (int j = 0; j < V; ++j) v[j] = float(p[j]);
#endif
}
template <int V>
__host__ __device__ __forceinline__ void storeValues(float* p, const float (&v)[V]) {
#ifdef __CUDA_ARCH__
  storeVec<V>(p, v);
#else
  for (int j = 0; j < V; ++j) p[j] = v[j];
#endif
}

// What the walk sums for a value v of row r: x forward (float, or bf16 as stored), dy / n(t) backward (inv: 1 / n per
// row, invRow = inv[r]).
template <bool Back>
__host__ __device__ __forceinline__ double term(float v, double invRow) { return Back ? double(v) * invRow : double(v); }

// Pass 1, one thread's work: i = (b·chunks + k)·(C / V) + the channel vector sums steps [k·kChunk, (k + 1)·kChunk) ∩
// [0, T) of V channels in order.
template <bool Back, int V, typename In>
__host__ __device__ void chunkSum(int64_t i, const In* in, const double* inv, double* sums, int64_t T, int64_t C,
                                  int64_t chunks) {
  const int64_t vectors = C / V, c = i % vectors * V, k = i / vectors % chunks, b = i / (vectors * chunks);
  double acc[V] = {};
  for (int64_t u = k * kChunk, end = smaller(u + kChunk, T); u < end; ++u) {
    const int64_t r = b * T + timeAt<Back>(u, T);
    float v[V];
    loadValues<V>(in + r * C + c, v);
    const double invRow = Back ? inv[r] : 1.0;
    for (int j = 0; j < V; ++j) acc[j] += term<Back>(v[j], invRow);
  }
  for (int j = 0; j < V; ++j) sums[(b * chunks + k) * C + c + j] = acc[j];
}

// Steps of a walk whose loads are issued together: a thread's steps depend on each other only through its sums, so
// the loads of kDepth steps (the entering and the leaving row, the document, the backward's 1 / n and gradient so far)
// are in flight at once. One step at a time left a few hundred bytes in flight per warp and the op at a quarter of the
// memory's bandwidth.
constexpr int kDepth = 8;

// Pass 2, one thread's work: i = (b·walks + k)·(C / V) + the channel vector writes steps [k·kWalk, (k + 1)·kWalk) ∩
// [0, T) of V channels. Step u's window sum gains the entering row u and loses the leaving row u − w once that is in
// u's document (u − w ≥ first: the first step of the document, or of u0's full window, where the walk starts in it).
// The backward adds `acc` (where given: the input's gradient so far) to each output, as the Add it replaces would.
template <bool Back, int V, typename In>
__host__ __device__ void windowWalk(int64_t i, const In* in, const int32_t* doc, const double* inv, const double* sums,
                                    const float* acc, float* out, int64_t T, int64_t C, int64_t w, int64_t chunks,
                                    int64_t walks) {
  const int64_t vectors = C / V, c = i % vectors * V, k = i / vectors % walks, b = i / (vectors * walks);
  const int32_t* row = doc + b * T;
  const int64_t u0 = k * kWalk, u1 = smaller(u0 + kWalk, T);
  // The window of u0 less u0 itself, [lo, u0): term by term up to the first chunk boundary, then whole chunks
  // (u0 is a chunk boundary; every chunk in there lies in u0's document, as lo does).
  const int64_t lo = windowStart<Back>(row, u0, T, w);
  double sum[V] = {};
  int64_t u = lo;
  for (const int64_t edge = smaller((lo + kChunk - 1) / kChunk * kChunk, u0); u < edge; ++u) {
    const int64_t r = b * T + timeAt<Back>(u, T);
    float v[V];
    loadValues<V>(in + r * C + c, v);
    const double invRow = Back ? inv[r] : 1.0;
    for (int j = 0; j < V; ++j) sum[j] += term<Back>(v[j], invRow);
  }
  for (; u < u0; u += kChunk)
    for (int j = 0; j < V; ++j) sum[j] += sums[(b * chunks + u / kChunk) * C + c + j];
  int64_t first = lo;
  int32_t prevDoc = row[timeAt<Back>(u0, T)];
  for (int64_t g = u0; g < u1; g += kDepth) {
    // the loads of steps g … g + kDepth − 1, clamped into the row (a clamped step is past u1: never used)
    float enter[kDepth][V], leave[kDepth][V], before[kDepth][V];
    double invEnter[kDepth], invLeave[kDepth];
    int32_t docs[kDepth];
    int64_t rows[kDepth];
#pragma unroll
    for (int s = 0; s < kDepth; ++s) {
      const int64_t ue = smaller(g + s, T - 1), ul = g + s - w > 0 ? g + s - w : 0;
      const int64_t re = b * T + timeAt<Back>(ue, T), rl = b * T + timeAt<Back>(ul, T);
      rows[s] = re;
      loadValues<V>(in + re * C + c, enter[s]);
      loadValues<V>(in + rl * C + c, leave[s]);
      docs[s] = doc[re];
      invEnter[s] = Back ? inv[re] : 1.0;
      invLeave[s] = Back ? inv[rl] : 1.0;
      if (Back && acc) loadValues<V>(acc + re * C + c, before[s]);
    }
#pragma unroll
    for (int s = 0; s < kDepth; ++s) {
      const int64_t step = g + s;
      if (step >= u1) break;
      const bool starts = docs[s] != prevDoc, leaves = !starts && step - w >= first;  // a document starts: its window is empty
      if (starts) {
        first = step;
        prevDoc = docs[s];
      }
      float result[V];
      for (int j = 0; j < V; ++j) {
        if (starts) sum[j] = 0;
        else if (leaves) sum[j] -= term<Back>(leave[s][j], invLeave[s]);
        sum[j] += term<Back>(enter[s][j], invEnter[s]);
        if constexpr (Back) result[j] = acc ? before[s][j] + float(sum[j]) : float(sum[j]);
        else result[j] = float(sum[j] / double(smaller(step - first + 1, w)));
      }
      storeValues<V>(out + rows[s] * C + c, result);
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

template <bool Back, int V, typename In>
__global__ void chunkSumsKernel(const In* __restrict__ in, const double* __restrict__ inv, double* __restrict__ sums,
                                int64_t T, int64_t C, int64_t chunks, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) chunkSum<Back, V>(i, in, inv, sums, T, C, chunks);
}

template <bool Back, int V, typename In>
__global__ void windowWalkKernel(const In* __restrict__ in, const int32_t* __restrict__ doc,
                                 const double* __restrict__ inv, const double* __restrict__ sums,
                                 const float* __restrict__ acc, float* __restrict__ out, int64_t T, int64_t C, int64_t w,
                                 int64_t chunks, int64_t walks, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) windowWalk<Back, V>(i, in, doc, inv, sums, acc, out, T, C, w, chunks, walks);
}

// Both passes, V = 4 channels a thread where C is a multiple of 4 and the rows start 16-byte aligned, else V = 1.
template <bool Back, typename In>
cudaError_t windowSums(cudaStream_t s, const In* in, const int32_t* doc, const double* inv, const float* acc, float* out,
                       double* sums, int64_t B, int64_t T, int64_t C, int64_t w) {
  const int64_t chunks = (T + kChunk - 1) / kChunk, walks = (T + kWalk - 1) / kWalk;
  auto run = [&](auto width) {
    constexpr int V = decltype(width)::value;
    // A window of at most kChunk tokens never holds a whole chunk before its last token: no pass 1.
    if (w > kChunk) chunkSumsKernel<Back, V, In><<<gridFor(B * chunks * C / V), kThreads, 0, s>>>(in, inv, sums, T, C, chunks, B * chunks * C / V);
    windowWalkKernel<Back, V, In><<<gridFor(B * walks * C / V), kThreads, 0, s>>>(in, doc, inv, sums, acc, out, T, C, w, chunks,
                                                                              walks, B * walks * C / V);
  };
  if (C % 4 == 0 && aligned16({in, out, acc})) run(std::integral_constant<int, 4>{});
  else run(std::integral_constant<int, 1>{});
  return cudaGetLastError();
}

}  // namespace

cudaError_t launchCausalWindowMean(cudaStream_t s, const void* x, bool xBf16, const int32_t* docIds, float* y,
                                   double* chunkSums, int64_t B, int64_t T, int64_t C, int64_t window) {
  if (window < 1) return cudaErrorInvalidValue;
  if (B * T * C == 0) return cudaSuccess;
  const int64_t w = smaller(window, T);
  if (xBf16) return windowSums<false>(s, static_cast<const __nv_bfloat16*>(x), docIds, nullptr, nullptr, y, chunkSums, B, T, C, w);
  return windowSums<false>(s, static_cast<const float*>(x), docIds, nullptr, nullptr, y, chunkSums, B, T, C, w);
}

cudaError_t launchCausalWindowMeanGrad(cudaStream_t s, const float* dy, const int32_t* docIds, const float* accumulated,
                                       float* dx, double* chunkSums, double* invCounts, int64_t B, int64_t T, int64_t C,
                                       int64_t window) {
  if (window < 1) return cudaErrorInvalidValue;
  if (B * T * C == 0) return cudaSuccess;
  const int64_t w = smaller(window, T);
  inverseCountsKernel<<<gridFor(B * T), kThreads, 0, s>>>(docIds, invCounts, T, w, B * T);
  return windowSums<true>(s, dy, docIds, invCounts, accumulated, dx, chunkSums, B, T, C, w);
}

TSGPT_LAUNCHER(causalWindowMean, launchCausalWindowMean, "x", "xBf16", "docIds", "y", "chunkSums", "B", "T", "C", "window");
TSGPT_LAUNCHER(causalWindowMeanGrad, launchCausalWindowMeanGrad, "dy", "docIds", "accumulated", "dx", "chunkSums", "invCounts", "B", "T",
               "C", "window");

}  // namespace tsgpt
