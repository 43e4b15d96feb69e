// Causal windowed mean (train_gpt.ts's windowMean(): the uniform average C·X of shaped attention, He & Hofmann),
// forward and backward, per document of a packed row, in O(B·T·C): no T×T anything. Rows (b, t) of C channels;
// token t sees s ∈ [lo(t), t], lo(t) = max(t − w + 1, the first token of t's document) (docIds nondecreasing: a
// document is a run of equal ids), n(t) = t − lo(t) + 1 tokens:
//   forward:  y[t]  = (Σ_{s=lo(t)..t} x[s]) / n(t)
//   backward: dx[s] = Σ_{t : lo(t) ≤ s ≤ t} dy[t] / n(t) = Σ_{t=s..hi(s)} dy[t] / n(t),
//             hi(s) = min(s + w − 1, the last token of s's document)
// The backward is the forward's window sum run backwards in time over dy / n, so both are one template over
// walk steps u (u = t forward, u = T − 1 − t backward), with 1 / n(t) precomputed for the backward's terms.
//
// Design (why): a running window sum (add the entering token, subtract the leaving one) makes each output O(1),
// but one thread walking a whole row per channel gives only B·C threads (12k at the speedrun batch: a few warps
// per SM, far below the memory bandwidth), and an fp32 running add/subtract drifts over a long row. So:
//   pass 1: per (b, chunk of kWindowMeanChunk steps, c) the chunk's sum;
//   pass 2: per (b, walk of kWindowMeanWalk steps, c) a thread starts from the exact sum over its first step's
//           window (the partial chunk at the window's lower edge term by term, then the whole chunks up to its
//           first step from pass 1: at most kWindowMeanChunk − 1 + w / kWindowMeanChunk reads), then adds and
//           subtracts along its kWindowMeanWalk steps (98k threads at the speedrun batch).
// Every sum is fp64, rounded to float once at the output: a thread adds and subtracts a few hundred terms from
// an exact start, so nothing drifts at any T, and fp64 adds cost nothing next to this memory-bound op's traffic.
// Each output element is written by one thread in a fixed order: deterministic, no atomics. Consecutive threads
// take consecutive channels: each step's reads of x are coalesced and its docIds read is one broadcast.
#include "causal_window_mean.h"

#include <cuda_bf16.h>

#include "../../native/launch.h"
#include "../../native/launchers.h"

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

// What the walk sums at step u of row b, channel c: x forward (float, or bf16 as stored), dy / n(t) backward (inv: 1 / n
// per row).
template <bool Back, typename In>
__host__ __device__ __forceinline__ double term(const In* in, const double* inv, int64_t b, int64_t u, int64_t T,
                                                int64_t C, int64_t c) {
  const int64_t r = b * T + timeAt<Back>(u, T);
  if constexpr (Back) return double(float(in[r * C + c])) * inv[r];
  else return float(in[r * C + c]);
}

// Pass 1, one thread's work: i = (b·chunks + k)·C + c sums steps [k·kChunk, (k + 1)·kChunk) ∩ [0, T) in order.
template <bool Back, typename In>
__host__ __device__ void chunkSum(int64_t i, const In* in, const double* inv, double* sums, int64_t T,
                                  int64_t C, int64_t chunks) {
  const int64_t c = i % C, k = (i / C) % chunks, b = i / (C * chunks);
  double acc = 0;
  for (int64_t u = k * kChunk, end = smaller(u + kChunk, T); u < end; ++u) acc += term<Back>(in, inv, b, u, T, C, c);
  sums[i] = acc;
}

// Pass 2, one thread's work: i = (b·walks + k)·C + c writes steps [k·kWalk, (k + 1)·kWalk) ∩ [0, T).
// The backward adds `acc` (where given: the input's gradient so far) to each output, as the Add it replaces would.
template <bool Back, typename In>
__host__ __device__ void windowWalk(int64_t i, const In* in, const int32_t* doc, const double* inv,
                                    const double* sums, const float* acc, float* out, int64_t T, int64_t C, int64_t w,
                                    int64_t chunks, int64_t walks) {
  const int64_t c = i % C, k = (i / C) % walks, b = i / (C * walks);
  const int32_t* row = doc + b * T;
  const int64_t u0 = k * kWalk, u1 = smaller(u0 + kWalk, T);
  // The window of u0 less u0 itself, [lo, u0): term by term up to the first chunk boundary, then whole chunks
  // (u0 is a chunk boundary; every chunk in there lies in u0's document, as lo does).
  int64_t lo = windowStart<Back>(row, u0, T, w), u = lo;
  double sum = 0;
  for (const int64_t edge = smaller((lo + kChunk - 1) / kChunk * kChunk, u0); u < edge; ++u) sum += term<Back>(in, inv, b, u, T, C, c);
  for (; u < u0; u += kChunk) sum += sums[(b * chunks + u / kChunk) * C + c];
  int32_t prevDoc = row[timeAt<Back>(u0, T)];
  for (u = u0; u < u1; ++u) {
    const int64_t t = timeAt<Back>(u, T);
    const int32_t d = row[t];
    if (d != prevDoc) {  // a document starts: its window starts empty
      sum = 0;
      lo = u;
      prevDoc = d;
    } else if (u - lo == w) {  // the window is full: its oldest term leaves
      sum -= term<Back>(in, inv, b, lo, T, C, c);
      ++lo;
    }
    sum += term<Back>(in, inv, b, u, T, C, c);
    const int64_t o = (b * T + t) * C + c;
    if constexpr (Back) out[o] = acc ? acc[o] + float(sum) : float(sum);
    else out[o] = float(sum / double(u - lo + 1));
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

template <bool Back, typename In>
__global__ void chunkSumsKernel(const In* __restrict__ in, const double* __restrict__ inv, double* __restrict__ sums,
                                int64_t T, int64_t C, int64_t chunks, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) chunkSum<Back>(i, in, inv, sums, T, C, chunks);
}

template <bool Back, typename In>
__global__ void windowWalkKernel(const In* __restrict__ in, const int32_t* __restrict__ doc,
                                 const double* __restrict__ inv, const double* __restrict__ sums,
                                 const float* __restrict__ acc, float* __restrict__ out, int64_t T, int64_t C, int64_t w,
                                 int64_t chunks, int64_t walks, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) windowWalk<Back>(i, in, doc, inv, sums, acc, out, T, C, w, chunks, walks);
}

template <bool Back, typename In>
cudaError_t windowSums(cudaStream_t s, const In* in, const int32_t* doc, const double* inv, const float* acc, float* out,
                       double* sums, int64_t B, int64_t T, int64_t C, int64_t w) {
  const int64_t chunks = (T + kChunk - 1) / kChunk, walks = (T + kWalk - 1) / kWalk;
  // A window of at most kChunk tokens never holds a whole chunk before its last token: no pass 1.
  if (w > kChunk) chunkSumsKernel<Back, In><<<gridFor(B * chunks * C), kThreads, 0, s>>>(in, inv, sums, T, C, chunks, B * chunks * C);
  windowWalkKernel<Back, In><<<gridFor(B * walks * C), kThreads, 0, s>>>(in, doc, inv, sums, acc, out, T, C, w, chunks,
                                                                     walks, B * walks * C);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launchCausalWindowMean(cudaStream_t s, const void* x, bool xBf16, const int32_t* docIds, float* y,
                                   double* chunkSums, int64_t B, int64_t T, int64_t C, int64_t window) {
  if (window < 1) return cudaErrorInvalidValue;
  if (B * T * C == 0) return cudaSuccess;
  if (xBf16) return windowSums<false>(s, static_cast<const __nv_bfloat16*>(x), docIds, nullptr, nullptr, y, chunkSums, B, T, C, smaller(window, T));
  return windowSums<false>(s, static_cast<const float*>(x), docIds, nullptr, nullptr, y, chunkSums, B, T, C, smaller(window, T));
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
