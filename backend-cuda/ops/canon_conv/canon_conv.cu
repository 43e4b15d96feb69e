// Fused Canon layer (Allen-Zhu, Physics of LMs 4.1; train_gpt.ts's canon()): a causal depthwise convolution of
// kernel 4 with its residual, per document, forward and backward. Rows r = b·T + t of C channels; tap k of
// channel c multiplies the token 3 − k steps back, and a tap that would read before the sequence or into
// another document reads zero:
//   forward:  y[r,c]  = x[r,c]·(1 + w[c,3]) + Σ_{s=1..3} w[c,3−s]·x[r−s,c]·same(r, r−s)
//   backward: dx[r,c] = dy[r,c]·(1 + w[c,3]) + Σ_{s=1..3} w[c,3−s]·dy[r+s,c]·same(r+s, r)
//             dw[c,3−s] = Σ_r dy[r,c]·x[r−s,c]·same(r, r−s)   (s = 0: the residual's tap, always counted)
// same(r, q): q is in the same sequence (t ≥ s, resp. t + s < T) and docIds[q] = docIds[r].
// Canon B convolves the QK-normed q and k heads (and v as it is): with normChannels > 0 the taps read z = x·rstd in
// each head of normGroup channels among the first normChannels (rstd = (mean x² + eps)^-½, from the row in registers
// through the head's lanes), and the backward turns dz, the taps' gradient, into dx = rstd·(dz − z·mean(dz·z)): the
// split, the two norms and the concatenation of the composite (5 kernels and 2 copies of the row each way) are gone.
// Canon A and C convolve the sublayer's normed input: with rowNorm the taps read x·rstd over the whole row (x the
// residual stream, which the block keeps anyway), so nothing is kept or made again for the backward. Both ways take
// whole rows a block (canonRowNormKernel, canonRowNormGradKernel), so that the row sums the norm needs (Σx², and Σdz·x
// backward) are the block's: the forward reads x once, where a pass wrote each row's rstd and the conv read x again;
// the backward finishes dx through the norm and adds the residual's gradient so far in its stores, where a dz tensor,
// an rstd pass and RMSNormGrad's pass over them were.
// Canon D with the relu2 MLP (relu2): y = relu(h)², h the conv, in the forward's store; the backward makes h again from
// x in registers (canonRelu2GradKernel), so neither h nor relu(h)² is kept or made again by a separate kernel (the
// composite checkpointed the conv and the activation and ran both again, then ReLU²'s gradient, then the conv's).
// The composite pads x three times and keeps the padded copies for its backward ([16,2051,3072] at Canon D
// on the speedrun batch); here each way is one pass over the tensors, with nothing saved but x.
// Each thread walks kRowsPerThread consecutive rows of V channels (V = 4: one vector load a row) with the three rows
// before (forward: x) or after (backward: dy) in registers, so every element is read about once: the first kernels
// took a thread per element, with three 64-bit divisions and four reads of x each, and ran at a fifth of the
// memory's bandwidth. dw is deterministic: each thread sums its rows in order, the block its 8 row groups in order
// (one partial per kCanonRowsPerPartial rows and channel), and a last pass sums the partials in order (no atomics).
// That walk, the forward's and the plain and head-normed gradient's, is canon_conv.cuh's, shared with Canon B inside the
// attention's inputs (ops/canon_attention_inputs: the model's Canon B runs there); the row norm's and relu2's gradient
// kernels are here.
// x is read as stored (In: float, or bf16 for a bf16-only activation: the normed input at A and C, the projections'
// outputs at B and D), and so is dy (the gradients that ReLU²'s and AttentionInputs' backward write in bf16 for the
// projections, at D and B); y is bf16 under bf16 matmul precision (Out: every position feeds a projection or an op
// that reads bf16), and so is dx where the kernel is told that x is a projection's output (Canon B and D: the
// projection's two gradient matmuls are its only readers, and they round it to bf16 anyway).
#include "canon_conv.h"

#include "../../native/async_copy.cuh"
#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/rows.cuh"
#include "../../native/vec.cuh"
#include "canon_conv.cuh"

namespace tsgpt {
namespace {

// The row norm's kernels: a thread a channel vector. The gradient's __launch_bounds__ ask for one block of up to 512
// threads an SM (128 registers a thread): without the 1, ptxas held some instances to 64 registers and spilled up to 68
// bytes. 2 channels a thread (12 warps a row of 768) at 2 blocks of 80 registers an SM ran 0.130 ms against 0.125–0.126
// on one H200 (the twenty-sixth session): twice the warps did not pay for the pairs' instructions. The forward is held
// to 96 registers instead (__maxnreg__, which __launch_bounds__ excludes): an SM's registers are four schedulers'
// 16,384, so at its 111 only 2 blocks of 6 warps (C = 768) fitted, at 96 three do, without a spill, and the forward
// went from 0.054 to 0.047 ms on one H200 (canon_native 1 32768 768 rows; at 64 registers it spilled 16–20 bytes and
// took 0.050).
constexpr int kRowNormMaxThreads = kCanonRowNormMaxVectors;
constexpr int kRowNormForwardRegisters = 96;
static_assert(kRowNormForwardRegisters * kRowNormMaxThreads <= 65536, "a block of the most threads fits an SM's registers");
constexpr int kRowNormRingRows = 8;                            // the row norm's kernels' rings (RowRing)

// Sums over rows that a block holds whole (a thread V channels of each): each warp's, then the warps' in order in shared
// memory. A pass of 4 rows exchanges all its sums at one barrier (kMaxSums: 2 for each of 4 rows): a barrier a row over
// 768 channels left too little work between barriers (the thirteenth session's row-norm forward was slower than two
// kernels for it), and the 4 rows' shuffle chains overlap. A warp's N sums come from one warpSums (each to a group of
// 32 / P lanes, P: N padded to a power of two) and go to shared memory from each group's first lane; after the barrier
// each group sums its value over the warps in order, and every lane takes the N sums from the groups by shuffles. Where
// every lane made a warpSum of each value and summed every warp's N values (≈ 150 instructions an exchange of 8 sums
// over 6 warps, counted by hand), this is ≈ 70, with the same bits. Two sets of slots alternate, so that one exchange's
// writes cannot meet the reads of the one before (a thread past the next barrier has every thread's reads behind it).
// Every thread of the block calls it, with the same N: each v[n] becomes the sum of the block's v[n].
constexpr int kMaxSums = 8;
struct BlockRowSums {
  float (&slots)[2][kRowNormMaxThreads / 32][kMaxSums];  // [parity][warp][sum]
  int parity = 0;
  template <int N>
  __device__ __forceinline__ void sums(float (&v)[N]) {
    static_assert(N >= 1 && N <= kMaxSums, "at most kMaxSums sums an exchange");
    constexpr int P = N <= 1 ? 1 : N <= 2 ? 2 : N <= 4 ? 4 : 8, kGroup = 32 / P;  // lanes a sum
    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) / 32, warps = int(blockDim.x) / 32, k = lane / kGroup;
    float t[P] = {};
#pragma unroll
    for (int n = 0; n < N; ++n) t[n] = v[n];
    const float warpTotal = warpSums(t);  // the warp's sum of t[k]
    if (lane % kGroup == 0) slots[parity][warp][k] = warpTotal;
    __syncthreads();
    float total = slots[parity][0][k];  // warp 0's, then the others' in order
    for (int i = 1; i < warps; ++i) total += slots[parity][i][k];
#pragma unroll
    for (int n = 0; n < N; ++n) v[n] = __shfl_sync(0xffffffffu, total, n * kGroup);
    parity ^= 1;
  }
};

template <int V>
__device__ __forceinline__ float squares(const float (&v)[V]) {
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < V; ++j) ss += v[j] * v[j];
  return ss;
}

// Canon A and C's forward (rowNorm): whole rows a block, kCanonRowNormRows of them, a thread V channels of each (as
// canonRowNormGradKernel). Each row's Σx² over the block gives rstd = (Σx²/C + eps)^-½ and z = x·rstd, and y is the taps
// over z of the row and the three before (forwardTaps, as canonConvKernel; z of the three rows before the block's first
// made the same way first: 3 rows in 35 read twice). Where a pass of its own wrote each row's rstd and canonConvKernel
// read x again: at the speedrun's float32 x, ≈ 160 MB a call where ≈ 250 were. Rows in passes of 4: the pass's x, then
// its 4 sums in one exchange (BlockRowSums), then its z and y. x comes through a ring of kRowNormRingRows rows (RowRing):
// a thread reads only its own slots, so row r copies row r + 7 into row r − 1's as it is read. Where lead is given, z's
// first leadCols channels of each row go there too (Canon A's z as the attention gate's input: a multiple of V).
// kWholeWarps: the row's vectors fill the block's warps (RowNormBlocks::wholeWarps), so no lane is inactive and x's reads
// need no select (the speedrun's instance 1,656 SASS instructions where it was 1,712).
template <int V, bool kWholeWarps, typename In, typename Out>
__global__ void __maxnreg__(kRowNormForwardRegisters)
    canonRowNormKernel(const In* __restrict__ x, const float* __restrict__ w, const int32_t* __restrict__ doc,
                       Out* __restrict__ y, Out* __restrict__ lead, int leadCols, int rows, int T, int C, float eps) {
  extern __shared__ __align__(16) unsigned char ringMemory[];
  __shared__ float rowSumsOf[2][kRowNormMaxThreads / 32][kMaxSums];
  // rows read, relative to the block's first: r0 − 3 … r0 + 31, one commit group a row (empty past the last)
  constexpr int kFirst = -3, kLast = kCanonRowNormRows - 1, kPending = kRowNormRingRows - 1;
  const int c0 = int(threadIdx.x) * V, r0 = int(blockIdx.x) * kCanonRowNormRows;
  const bool active = kWholeWarps || c0 < C;
  const int cl = active ? c0 : C - V;  // an inactive lane reads the last channels and zeroes them
  const uint64_t starts = runStarts(doc, r0 - 4, rows, T);  // bit i + 4: row r0 + i (the same in every warp)
  CanonTaps k[V];
#pragma unroll
  for (int j = 0; j < V; ++j) k[j] = canonTaps(w, cl + j);
  RowRing<In, V, kRowNormRingRows> xRing(ringMemory, int(threadIdx.x), int(blockDim.x));
  BlockRowSums rowSums{rowSumsOf};
  auto fetch = [&](int i) {  // rows outside the tensor: the first or last, read and never counted
    if (i <= kLast) xRing.copy(i, x + int64_t(min(max(r0 + i, 0), rows - 1)) * C + cl);
    commitAsync();
  };
  // x of row r0 + i, once its copy has landed (the row after the ring's last copied as it is read)
  auto load = [&](int i, float (&v)[V]) {
    fetch(i + kPending);
    waitAsync<kPending>();
    xRing.read(i, v);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = active ? v[j] : 0.f;
  };
  const float invC = 1.f / float(C);
  auto norm = [&](auto& xs) {  // xs[N][V]: N rows' x made z, their Σx² in one exchange
    constexpr int N = std::extent_v<std::remove_reference_t<decltype(xs)>>;
    float ss[N];
#pragma unroll
    for (int n = 0; n < N; ++n) ss[n] = squares(xs[n]);
    rowSums.sums(ss);
#pragma unroll
    for (int n = 0; n < N; ++n) {
      const float rstd = rsqrtf(ss[n] * invC + eps);
#pragma unroll
      for (int j = 0; j < V; ++j) xs[n][j] *= rstd;
    }
  };
  float zs[4][V];  // z of row r0 + i in zs[i & 3]
#pragma unroll 1
  for (int i = kFirst; i < kFirst + kPending; ++i) fetch(i);
  {
    float before[-kFirst][V];
#pragma unroll
    for (int i = kFirst; i < 0; ++i) load(i, before[i - kFirst]);
    norm(before);
#pragma unroll
    for (int i = kFirst; i < 0; ++i)
#pragma unroll
      for (int j = 0; j < V; ++j) zs[i & 3][j] = before[i - kFirst][j];
  }
  // Four rows from row r0 + m; checked: the taps count where sameRun, and rows past the last are not stored
  auto pass = [&](int m, auto checked) {
    constexpr bool kChecked = decltype(checked)::value;
    float xs[4][V];  // z of the pass's rows (zs[p] still holds row m + p − 4's, which the rows before p read)
#pragma unroll
    for (int p = 0; p < 4; ++p) load(m + p, xs[p]);
    norm(xs);
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const int i = m + p, bit = i + 4, r = r0 + i;
#pragma unroll
      for (int j = 0; j < V; ++j) zs[p][j] = xs[p][j];
      float out[V];
      forwardTaps<kChecked>(zs, p, k, starts, bit, out);
      if (active && (!kChecked || r < rows)) {
        storeVec<V>(y + int64_t(r) * C + c0, out);
        if (lead && c0 < leadCols) storeVec<V>(lead + int64_t(r) * leadCols + c0, zs[p]);
      }
    }
  };
  forEachPass<kCanonRowNormRows, 4, 0>(starts, pass);
}

// Canon A and C's gradient (rowNorm): whole rows a block, kCanonRowNormRows of them, a thread V channels of each. dz, the
// taps' gradient, as canonConvGradKernel makes it; then the row's Σx² and Σdz·x over the block give rstd = (Σx²/C +
// eps)^-½ and dx = rstd·dz − x·rstd³·Σdz·x/C (rms_norm.cu's backward), plus acc (x's gradient so far: the residual's)
// where given, and dx's bf16 copy where twin is given. dw from z = x·rstd of the row and the three before (their rstd
// from the same sums, before the first row). The block's dw goes to partials[blockIdx.x][c], summed in two ordered passes
// after (canonPartialSumsKernel). What this replaces: an rstd pass over x, dz written and read back, and RMSNormGrad's
// pass over dz, x and acc.
// Rows in passes of 4, each in two halves around one exchange of its 8 sums (BlockRowSums): the first reads x and dy
// and makes dz and the sums, the second reads x again with acc and finishes dx and dw. x, acc and dy come through rings
// of kRowNormRingRows rows (RowRing; 40 bytes a row a thread at float32 x and acc, so two blocks of 192 threads fit an
// SM), one commit group j a row: x and acc of row r0 + j, dy of row r0 + j + 3 (the rows a row's dz reads after it). Row
// r's second half copies group r + 7, into the slots of row r − 1 and of dy's row r + 2, both read by then (dy lives in
// registers from its first read: the 7 rows of a pass's dz). With a row ahead in registers the kernel ran at ≈ 2.2 TB/s.
// Where dLead is given (the gradient of z's first leadCols channels as the forward's second output: the attention gate's
// input, at Canon A), it is added to dz of those channels, as the Add of the two gradients of z was: the gate's own
// RMSNormGrad pass over x, acc and dx is not needed. kWholeWarps as the forward's (the speedrun's instance 3,024 SASS
// instructions where it was 3,304: its rows' reads of x, dy and acc are selected in every row).
template <int V, bool kWholeWarps, typename InDy, typename In>
__global__ void __launch_bounds__(kRowNormMaxThreads, 1)
    canonRowNormGradKernel(const InDy* __restrict__ dy, const In* __restrict__ x, const float* __restrict__ w,
                           const int32_t* __restrict__ doc, const float* __restrict__ acc, const void* __restrict__ dLead,
                           bool dLeadBf16, int leadCols, float* __restrict__ dx, __nv_bfloat16* __restrict__ twin,
                           float* __restrict__ partials, int rows, int T, int C, float eps) {
  extern __shared__ __align__(16) unsigned char ringMemory[];
  __shared__ float rowSumsOf[2][kRowNormMaxThreads / 32][kMaxSums];
  // groups j = −3 … 31 read x of r0 − 3 … r0 + 31, acc of r0 … r0 + 31, dy of r0 … r0 + 34 (empty past); group j + 7
  // is copied at row j's second half, so at row m + p's first (m: a pass's first row) groups up to m + 6 are copied
  constexpr int kFirst = -3, kLastX = kCanonRowNormRows - 1, kLead = 3, kAhead = kRowNormRingRows - 1;
  const int threads = int(blockDim.x), c0 = int(threadIdx.x) * V, r0 = int(blockIdx.x) * kCanonRowNormRows;
  const bool active = kWholeWarps || c0 < C;
  const int cl = active ? c0 : C - V;  // an inactive lane reads the last channels and zeroes them
  const uint64_t starts = runStarts(doc, r0 - 4, rows, T);  // bit i + 4: row r0 + i (the same in every warp)
  CanonTaps k[V];
#pragma unroll
  for (int j = 0; j < V; ++j) k[j] = canonTaps(w, cl + j);
  using XRing = RowRing<In, V, kRowNormRingRows>;
  using DyRing = RowRing<InDy, V, kRowNormRingRows>;
  XRing xRing(ringMemory, int(threadIdx.x), threads);
  DyRing dyRing(ringMemory + XRing::bytes(threads), int(threadIdx.x), threads);
  RowRing<float, V, kRowNormRingRows> accRing(ringMemory + XRing::bytes(threads) + DyRing::bytes(threads), int(threadIdx.x), threads);
  auto fetch = [&](int j) {  // group j: one commit group, empty past the last rows read
    auto at = [&](int i) { return int64_t(min(max(r0 + i, 0), rows - 1)) * C + cl; };  // rows outside: read, never counted
    if (j <= kLastX) {
      xRing.copy(j, x + at(j));
      if (acc && j >= 0) accRing.copy(j, acc + at(j));
      dyRing.copy(j + kLead, dy + at(j + kLead));
    }
    commitAsync();
  };
  // dLead of the block's rows, row i's channel c at leadRows[i][c]: the threads of its channels copy all of theirs at the
  // start, in the first commit group (a ring beside the others held 4 more registers in the loop and spilled at the 128
  // that two blocks an SM allow)
  __shared__ __align__(16) float leadRows[kCanonRowNormRows][kCanonMaxLeadCols];
  const bool leads = dLead && c0 < leadCols;  // this thread's channels have dLead
  if (leads) {
#pragma unroll 1
    for (int i = 0; i < kCanonRowNormRows; ++i) {
      const int64_t at = int64_t(min(r0 + i, rows - 1)) * leadCols + c0;  // rows past the last: read, never counted
      if (dLeadBf16) copyRowAsync<__nv_bfloat16, V>(&leadRows[i][c0], static_cast<const __nv_bfloat16*>(dLead) + at);
      else copyRowAsync<float, V>(&leadRows[i][c0], static_cast<const float*>(dLead) + at);
    }
  }
  auto read = [&](const auto& ring, int i, float (&v)[V]) {
    ring.read(i, v);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = active ? v[j] : 0.f;
  };
  BlockRowSums rowSums{rowSumsOf};
  const float invC = 1.f / float(C);
  float zs[4][V];       // z of row r0 + i in zs[i & 3]
  float gs[4 + kLead][V];  // dy of a pass's rows m … m + 6 (the first 3 read by the pass before)
  float sum[V][4] = {};    // sum[j][k]: tap k (the token 3 − k back) of channel c0 + j
#pragma unroll 1
  for (int j = kFirst; j < kFirst + kAhead; ++j) fetch(j);
  // z of the three rows before r0 (their rstd from one exchange: every thread of the block takes part), dy of the first three
  waitAsync<kAhead + kFirst>();  // groups −3 … −1 have landed
  {
    float ss[-kFirst];
#pragma unroll
    for (int i = kFirst; i < 0; ++i) {
      read(xRing, i, zs[i & 3]);
      read(dyRing, i + kLead, gs[i - kFirst]);
      ss[i - kFirst] = squares(zs[i & 3]);
      fetch(i + kAhead);
    }
    rowSums.sums(ss);
#pragma unroll
    for (int i = kFirst; i < 0; ++i) {
      const float rstd = rsqrtf(ss[i - kFirst] * invC + eps);
#pragma unroll
      for (int j = 0; j < V; ++j) zs[i & 3][j] *= rstd;
    }
  }
  // Four rows from row r0 + m; checked: the taps count where sameRun, and rows past the last are not stored or summed
  auto pass = [&](int m, auto checked) {
    constexpr bool kChecked = decltype(checked)::value;
    float dz[4][V], sums[8];  // sums[2p], sums[2p + 1]: row m + p's Σx², Σdz·x
    waitAsync<kAhead - 4>();  // groups up to m + 3 have landed (m + 4 … m + 6 may not)
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const int i = m + p, bit = i + 4;
      float cur[V], l[V] = {};  // l: dLead of the row's channels (0 past them)
      read(xRing, i, cur);
      read(dyRing, i + kLead, gs[p + kLead]);
      if (leads) {
        if (dLeadBf16) readRow<__nv_bfloat16, V>(&leadRows[i][c0], l);
        else readRow<float, V>(&leadRows[i][c0], l);
      }
      float dot = 0.f;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        float d = gs[p][j] * k[j].self;
#pragma unroll
        for (int s = 1; s <= 3; ++s)
          if (!kChecked || sameRun(starts, bit + s, s)) d += gs[p + s][j] * k[j].taps[s - 1];
        d += l[j];
        dz[p][j] = d;
        dot += d * cur[j];
      }
      sums[2 * p] = squares(cur);
      sums[2 * p + 1] = dot;
    }
    rowSums.sums(sums);
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const int i = m + p, bit = i + 4, r = r0 + i;
      float cur[V], a[V] = {}, out[V];
      read(xRing, i, cur);
      if (acc) read(accRing, i, a);
      fetch(i + kAhead);
      const bool inside = !kChecked || r < rows;
      const float rstd = rsqrtf(sums[2 * p] * invC + eps), c = rstd * rstd * rstd * sums[2 * p + 1] * invC;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        out[j] = rstd * dz[p][j] - c * cur[j] + a[j];
        cur[j] *= rstd;  // z, for dw and the rows after
        const float g = inside ? gs[p][j] : 0.f;
        sum[j][3] += g * cur[j];
#pragma unroll
        for (int s = 1; s <= 3; ++s)
          if (!kChecked || sameRun(starts, bit, s)) sum[j][3 - s] += g * zs[(p - s) & 3][j];
      }
      if (active && inside) {
        storeVec<V>(dx + int64_t(r) * C + c0, out);
        if (twin) storeVec<V>(twin + int64_t(r) * C + c0, out);  // the copy a bf16 matmul reads (toBf16's rounding)
      }
#pragma unroll
      for (int j = 0; j < V; ++j) zs[p][j] = cur[j];
    }
#pragma unroll
    for (int q = 0; q < kLead; ++q)
#pragma unroll
      for (int j = 0; j < V; ++j) gs[q][j] = gs[q + 4][j];  // the next pass's first rows
  };
  forEachPass<kCanonRowNormRows, 4, kLead>(starts, pass);  // dz reads dy of the 3 rows after; the same for the whole block
  if (active) {
#pragma unroll
    for (int j = 0; j < V; ++j)
      reinterpret_cast<float4*>(partials)[int64_t(blockIdx.x) * C + c0 + j] = make_float4(sum[j][0], sum[j][1], sum[j][2], sum[j][3]);
  }
}

// The first of dw's two ordered passes over many partials (canonRowNormGradKernel's, one a block of kCanonRowNormRows rows):
// out[group][i] = Σ of partials[chunk][i] over the group's kCanonPartialsPerGroup chunks, in order (i over C·4 values).
__global__ void canonPartialSumsKernel(const float* __restrict__ partials, float* __restrict__ out, int64_t chunks, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, first = int64_t(blockIdx.y) * kCanonPartialsPerGroup;
  if (i >= n) return;
  const int64_t last = min(first + kCanonPartialsPerGroup, chunks);
  float total = 0.f;
  for (int64_t chunk = first; chunk < last; ++chunk) total += partials[chunk * n + i];
  out[int64_t(blockIdx.y) * n + i] = total;
}

// Canon D with the MLP's relu² (Relu2): the gradient from dy, the gradient of relu(h)² with h = the conv of x, which is
// made again here from x (with FMAs: forwardTaps' kFused, within an ulp or two of the forward's h). g = dy·2·relu(h) is the conv's
// gradient; a row's dx needs g of it and the three rows after, its dw g of it and x of it and the three before. A thread
// walks its kRowsPerThread rows with x of rows r − 3 … r + 4 and g of rows r … r + 3 in registers, eight rows a pass of
// the unrolled loop so that each row's register is fixed (the loop of one row shifted 40 registers a row); x and dy come
// through the ring (RowRing), row r + 13 copied at row r. A pass whose rows all see each other (forEachPass) runs without
// the taps' conditions. Two blocks an SM (at most 128 registers). More warps did not pay: at 2 channels a thread and 3
// blocks an SM (80 registers, no spill; 24 warps where this has 16) it ran 0.215–0.218 ms against 0.187–0.188 on one
// H200 (canon_native 1 32768 3072 relu2, the twenty-sixth session).
template <int V, typename InDy, typename In, typename OutDx>
__global__ void __launch_bounds__(kGridThreads, 2)
    canonRelu2GradKernel(const InDy* __restrict__ dy, const In* __restrict__ x, const float* __restrict__ w,
                         const int32_t* __restrict__ doc, OutDx* __restrict__ dx, float* __restrict__ partials, int rows,
                         int T, int C) {
  extern __shared__ __align__(16) unsigned char ringMemory[];
  // rows read, relative to the thread's first: x of r0 − 3 … r0 + 35, dy of r0 … r0 + 35; row r reads both of r + 4,
  // and copies row r + 13 into the slot of row r − 3 (read 7 rows ago)
  constexpr int kFirst = -3, kLast = kRowsPerThread + 3, kLead = 4;
  constexpr int kPending = kRingRows + kFirst - kLead;  // rows after the one read that may still be in flight
  const int c0 = (int(blockIdx.x) * kChannelThreads + int(threadIdx.x)) * V, r0 = firstRow();
  const uint64_t starts = runStarts(doc, r0 - 4, rows, T);  // bit i + 4: row r0 + i
  float sum[V][4] = {};  // sum[j][k]: tap k (the token 3 − k back) of channel c0 + j
  if (r0 < rows && c0 < C) {
    CanonTaps k[V];
#pragma unroll
    for (int j = 0; j < V; ++j) k[j] = canonTaps(w, c0 + j);
    GridRing<In, V> xRing(ringMemory);
    GridRing<InDy, V> dyRing(ringMemory + GridRing<In, V>::kBytes);
      // row r0 + i into its slots (one commit group a row, empty past the last row read); rows outside the tensor are
    // read from its first or last row and never counted
    auto fetch = [&](int i) {
      if (i <= kLast) {
        const int64_t at = int64_t(min(max(r0 + i, 0), rows - 1)) * C + c0;
        xRing.copy(i, x + at);
        if (i >= 0) dyRing.copy(i, dy + at);
      }
      commitAsync();
    };
    float xs[8][V], gs[4][V];  // x of row r0 + i in xs[(i + 3) & 7], g of it in gs[i & 3]
    // h at the row of bit `bit` whose x is xs[q] (its taps: xs[q − s]; forwardTaps with FMAs), and g = dy·2·relu(h)
    // (d: its dy); checked: the taps count where sameRun, and g is 0 outside the rows
    auto reluGrad = [&](int q, int bit, bool inside, const float (&d)[V], float (&g)[V], auto checked) {
      constexpr bool kChecked = decltype(checked)::value;
      float h[V];
      forwardTaps<kChecked, true>(xs, q, k, starts, bit, h);
#pragma unroll
      for (int j = 0; j < V; ++j) g[j] = h[j] > 0.f && (!kChecked || inside) ? d[j] * 2.f * h[j] : 0.f;
    };
#pragma unroll 1
    for (int i = kFirst; i < kFirst + kRingRows; ++i) fetch(i);
    waitAsync<kPending>();  // rows r0 − 3 … r0 + 3 have landed
#pragma unroll
    for (int i = kFirst; i < kLead; ++i) xRing.read(i, xs[(i + 3) & 7]);
#pragma unroll
    for (int i = 0; i < kLead; ++i) {
      float d[V];
      dyRing.read(i, d);
      reluGrad(i + 3, i + 4, r0 + i < rows, d, gs[i], std::true_type{});
    }
    // Eight rows from row r0 + m; checked: the taps count where sameRun, and rows past the last are not stored
    auto pass = [&](int m, auto checked) {
      constexpr bool kChecked = decltype(checked)::value;
#pragma unroll
      for (int p = 0; p < 8; ++p) {
        const int i = m + p, bit = i + 4, r = r0 + i;
        fetch(i + kRingRows + kFirst);
        waitAsync<kPending>();
        float d[V], out[V];
        xRing.read(i + kLead, xs[(p + 7) & 7]);
        dyRing.read(i + kLead, d);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const float g = gs[p & 3][j];
          float acc = g * k[j].self;
          sum[j][3] += g * xs[(p + 3) & 7][j];
#pragma unroll
          for (int s = 1; s <= 3; ++s) {
            if (!kChecked || sameRun(starts, bit + s, s)) acc += gs[(p + s) & 3][j] * k[j].taps[s - 1];
            if (!kChecked || sameRun(starts, bit, s)) sum[j][3 - s] += g * xs[(p + 3 - s) & 7][j];
          }
          out[j] = acc;
        }
        if (!kChecked || r < rows) storeVec<V>(dx + int64_t(r) * C + c0, out);
        reluGrad(p + 7, bit + kLead, r + kLead < rows, d, gs[p & 3], checked);  // g of row r + 4, in row r's registers
      }
    };
    forEachPass<kRowsPerThread, 8, kLead>(starts, pass);  // h of the 4 rows after each pass's last
  }
  writeBlockPartials<V>(sum, partials, C, ringMemory);
}

// Calls f(width, norm) with V = 4 where every row of C channels starts 16-byte aligned in each tensor (C a multiple of
// 4, the pointers aligned), else V = 1, and the norm as a type: kHeadNorm (normChannels > 0) needs V = 4 and a head of
// 4 to 128 channels, a power of two (its lanes within a warp). An unsupported norm is an invalid value. (The row norm
// takes whole rows a block: RowNormBlocks.)
template <typename F>
cudaError_t byCanonVariant(int64_t C, const NormArgs& norm, std::initializer_list<const void*> ptrs, F f) {
  using Four = std::integral_constant<int, 4>;
  using One = std::integral_constant<int, 1>;
  const bool vec4 = C % 4 == 0 && aligned16(ptrs);
  if (norm.channels > 0) {
    const bool headFits = norm.group >= 4 && norm.group <= 4 * kChannelThreads && (norm.group & (norm.group - 1)) == 0;
    if (!vec4 || !headFits || norm.channels % norm.group != 0 || norm.channels > C) return cudaErrorInvalidValue;
    f(Four{}, std::integral_constant<int, kHeadNorm>{});
  } else if (vec4) {
    f(Four{}, std::integral_constant<int, kNoNorm>{});
  } else {
    f(One{}, std::integral_constant<int, kNoNorm>{});
  }
  return cudaGetLastError();
}

// The row norm's blocks (canonRowNormKernel and canonRowNormGradKernel): whole rows a block, kCanonRowNormRows of them,
// a thread a vector of 4 channels where every row starts 16-byte aligned in each tensor (else of 1), up to
// kCanonRowNormMaxVectors; no head norm beside it.
struct RowNormBlocks {
  bool vec4, fit, wholeWarps;  // wholeWarps: the vectors fill the block's warps (every lane active)
  unsigned threads, chunks;
  RowNormBlocks(int64_t rows, int64_t C, int64_t normChannels, std::initializer_list<const void*> ptrs)
      : vec4(C % 4 == 0 && aligned16(ptrs)) {
    const int64_t vectors = vec4 ? C / 4 : C;
    fit = normChannels == 0 && vectors <= kCanonRowNormMaxVectors && rows <= INT32_MAX;
    threads = unsigned((vectors + 31) / 32 * 32);
    wholeWarps = vectors % 32 == 0;
    chunks = unsigned((rows + kCanonRowNormRows - 1) / kCanonRowNormRows);
  }
  // z's leading channels as a second output (lead, or its gradient dLead): none, or 1 … kCanonMaxLeadCols of them (at most
  // C) in whole vectors
  bool leadFits(const void* lead, int64_t leadCols, int64_t C) const {
    return !lead || (leadCols > 0 && leadCols <= std::min<int64_t>(C, kCanonMaxLeadCols) && leadCols % (vec4 ? 4 : 1) == 0);
  }
  // f(std::bool_constant<kWholeWarps>{}) for a kernel of width V: whole warps only at V = 4 (the model's widths: V = 1 is
  // for unaligned tensors, and its instances would double for nothing)
  template <int V, typename F>
  void byWholeWarps(F f) const {
    if constexpr (V == 4) {
      if (wholeWarps) return f(std::true_type{});
    }
    f(std::false_type{});
  }
};

}  // namespace

cudaError_t launchCanonConv(cudaStream_t s, const void* x, bool xBf16, const float* w, const int32_t* docIds, void* y,
                            bool yBf16, int64_t B, int64_t T, int64_t C, int64_t normChannels, int64_t normGroup, float eps,
                            bool rowNorm, bool relu2, void* lead, int64_t leadCols) {
  const int64_t rows = B * T;
  if (lead && !rowNorm) return cudaErrorInvalidValue;
  if (rows * C == 0) return cudaSuccess;
  if (relu2 && (rowNorm || normChannels > 0)) return cudaErrorInvalidValue;
  if (rowNorm) {
    const RowNormBlocks blocks(rows, C, normChannels, {x, y, lead});
    if (!blocks.fit || !blocks.leadFits(lead, leadCols, C)) return cudaErrorInvalidValue;
    auto launch = [&](auto width, auto* in, auto* out) {
      constexpr int V = decltype(width)::value;
      using In = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
      const size_t ring = RowRing<In, V, kRowNormRingRows>::bytes(int(blocks.threads));  // x's ring in dynamic shared memory
      auto run = [&](auto kernel) {
        if (allowSharedMemory(kernel, ring) == cudaSuccess)
          kernel<<<blocks.chunks, blocks.threads, ring, s>>>(in, w, docIds, out, static_cast<decltype(out)>(lead), int(leadCols), int(rows),
                                                              int(T), int(C), eps);
      };
      using Out = std::remove_pointer_t<decltype(out)>;
      blocks.byWholeWarps<V>([&](auto whole) { run(canonRowNormKernel<V, decltype(whole)::value, In, Out>); });
    };
    byInputType(x, xBf16, [&](auto* in) {
      auto widths = [&](auto* out) {
        if (blocks.vec4) launch(std::integral_constant<int, 4>{}, in, out);
        else launch(std::integral_constant<int, 1>{}, in, out);
      };
      if (yBf16) widths(static_cast<__nv_bfloat16*>(y));
      else widths(static_cast<float*>(y));
    });
    return cudaGetLastError();
  }
  const dim3 block(kChannelThreads, kRowGroups);
  const NormArgs norm{int(normChannels), int(normGroup), eps};
  return byCanonVariant(C, norm, {x, y}, [&](auto width, auto normKind) {
    constexpr int V = decltype(width)::value;
    constexpr int N = decltype(normKind)::value;
    auto launch = [&](auto* in, auto* out) {
      using In = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
      using Out = std::remove_pointer_t<decltype(out)>;
      const size_t ring = PassRing<In, V>::kBytes + RowOutput<Out>::kRingBytes;  // the rings in dynamic shared memory
      auto run = [&](auto kernel) {
        if (allowSharedMemory(kernel, ring) == cudaSuccess)
          kernel<<<canonGrid(rows, C, V), block, ring, s>>>(in, w, docIds, RowOutput<Out>{out, int(C)}, int(rows), int(T), int(C), norm);
      };
      if constexpr (N == kNoNorm) {
        if (relu2) return run(canonConvKernel<V, N, true, In, RowOutput<Out>>);
      }
      run(canonConvKernel<V, N, false, In, RowOutput<Out>>);
    };
    byInputType(x, xBf16, [&](auto* in) {
      if (yBf16) launch(in, static_cast<__nv_bfloat16*>(y));
      else launch(in, static_cast<float*>(y));
    });
  });
}

cudaError_t launchCanonConvGrad(cudaStream_t s, const void* dy, bool dyBf16, const void* x, bool xBf16, const float* w,
                                const int32_t* docIds, void* dx, bool dxBf16, float* dw, const float* dwAccumulated, float* partials, int64_t B,
                                int64_t T, int64_t C, int64_t normChannels, int64_t normGroup, float eps, bool rowNorm,
                                const float* accumulated, __nv_bfloat16* dxTwin, bool relu2, const void* dLead, bool dLeadBf16,
                                int64_t leadCols) {
  const int64_t rows = B * T, n = rows * C;
  if (dLead && !rowNorm) return cudaErrorInvalidValue;
  if (C == 0) return cudaSuccess;
  if (n == 0) {  // no rows: dw = 0, or the sum so far
    return dwAccumulated ? cudaMemcpyAsync(dw, dwAccumulated, C * 4 * sizeof(float), cudaMemcpyDeviceToDevice, s)
                         : cudaMemsetAsync(dw, 0, C * 4 * sizeof(float), s);
  }
  if ((relu2 && (rowNorm || normChannels > 0)) || ((accumulated || dxTwin) && !rowNorm)) return cudaErrorInvalidValue;
  if (rowNorm) {
    const RowNormBlocks blocks(rows, C, normChannels, {dy, x, dx, accumulated, dxTwin, dLead});
    if (!blocks.fit || !blocks.leadFits(dLead, leadCols, C) || dxBf16) return cudaErrorInvalidValue;
    const int64_t chunks = blocks.chunks, groups = (chunks + kCanonPartialsPerGroup - 1) / kCanonPartialsPerGroup;
    const unsigned threads = blocks.threads;
    auto launch = [&](auto width, auto* g, auto* in) {
      constexpr int V = decltype(width)::value;
      using InDy = std::remove_const_t<std::remove_pointer_t<decltype(g)>>;
      using In = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
      // the rings of x, dy and acc (RowRing) in dynamic shared memory
      const size_t ring = RowRing<In, V, kRowNormRingRows>::bytes(int(threads)) + RowRing<InDy, V, kRowNormRingRows>::bytes(int(threads)) +
                          RowRing<float, V, kRowNormRingRows>::bytes(int(threads));
      auto run = [&](auto kernel) {
        if (allowSharedMemory(kernel, ring) == cudaSuccess)
          kernel<<<unsigned(chunks), threads, ring, s>>>(g, in, w, docIds, accumulated, dLead, dLeadBf16, int(leadCols), static_cast<float*>(dx),
                                                         dxTwin, partials, int(rows), int(T), int(C), eps);
      };
      blocks.byWholeWarps<V>([&](auto whole) { run(canonRowNormGradKernel<V, decltype(whole)::value, InDy, In>); });
    };
    byInputType(dy, dyBf16, [&](auto* g) {
      byInputType(x, xBf16, [&](auto* in) {
        if (blocks.vec4) launch(std::integral_constant<int, 4>{}, g, in);
        else launch(std::integral_constant<int, 1>{}, g, in);
      });
    });
    // dw: the chunks' partials summed in groups, then the groups, each in order
    float* grouped = partials + chunks * C * 4;
    canonPartialSumsKernel<<<dim3(unsigned((C * 4 + kThreads - 1) / kThreads), unsigned(groups)), kThreads, 0, s>>>(partials, grouped, chunks, C * 4);
    launchCanonConvGradWSum(s, grouped, dw, groups, C, dwAccumulated);
    return cudaGetLastError();
  }
  const int64_t chunks = (rows + kCanonRowsPerPartial - 1) / kCanonRowsPerPartial;
  const dim3 block(kChannelThreads, kRowGroups);
  const NormArgs norm{int(normChannels), int(normGroup), eps};
  const cudaError_t launched = byCanonVariant(C, norm, {dy, x, dx}, [&](auto width, auto normKind) {
    constexpr int V = decltype(width)::value;
    constexpr int N = decltype(normKind)::value;
    auto launch = [&](auto* g, auto* in, auto* out) {
      // the rings of x and dy (RowRing) in dynamic shared memory
      using InDy = std::remove_const_t<std::remove_pointer_t<decltype(g)>>;
      using In = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
      auto run = [&](auto kernel, size_t ring, auto... args) {
        if (allowSharedMemory(kernel, ring) == cudaSuccess) kernel<<<canonGrid(rows, C, V), block, ring, s>>>(args...);
      };
      if constexpr (N == kNoNorm) {
        if (relu2) {
          run(canonRelu2GradKernel<V, InDy, In, std::remove_pointer_t<decltype(out)>>, GridRing<In, V>::kBytes + GridRing<InDy, V>::kBytes,
              g, in, w, docIds, out, partials, int(rows), int(T), int(C));
          return;
        }
      }
      run(canonConvGradKernel<V, N, RowDy<InDy, V>, In, std::remove_pointer_t<decltype(out)>>, canonGradRingBytes<RowDy<InDy, V>, In, V>(),
          RowDy<InDy, V>{g}, in, w, docIds, out, partials, int(rows), int(T), int(C), norm);
    };
    byInputType(dy, dyBf16, [&](auto* g) {
      byInputType(x, xBf16, [&](auto* in) {
        if (dxBf16) launch(g, in, static_cast<__nv_bfloat16*>(dx));
        else launch(g, in, static_cast<float*>(dx));
      });
    });
  });
  if (launched != cudaSuccess) return launched;
  launchCanonConvGradWSum(s, partials, dw, chunks, C, dwAccumulated);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(canonConv, launchCanonConv, "x", "xBf16", "w", "docIds", "y", "yBf16", "B", "T", "C", "normChannels", "normGroup", "eps",
               "rowNorm", "relu2", "lead", "leadCols");
TSGPT_LAUNCHER(canonConvGrad, launchCanonConvGrad, "dy", "dyBf16", "x", "xBf16", "w", "docIds", "dx", "dxBf16", "dw", "dwAccumulated", "partials", "B", "T", "C",
               "normChannels", "normGroup", "eps", "rowNorm", "accumulated", "dxTwin", "relu2", "dLead", "dLeadBf16", "leadCols");

}  // namespace tsgpt
