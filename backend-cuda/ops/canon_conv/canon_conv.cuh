// The walk over rows that Canon's forward and gradient kernels share (canon_conv.cu's kernels; and Canon B inside the
// attention's inputs, ops/canon_attention_inputs): the blocks of 32 channel vectors × 8 row groups of 32 rows, the taps,
// the head norm, the rows read ahead through shared memory (RowRing), the documents' run mask and the passes. The two
// kernels here take where their values go (the forward: an Output) and where the taps' gradient comes from (the gradient:
// a Dy) as types, so that Canon B can write q, k and v and read dq, dk and dv directly: RowOutput and RowDy below are the
// plain layer's (a [rows, C] tensor each way). canon_conv.cu's head comment has the layer's formulas.
#pragma once
#include <type_traits>

#include "canon_conv.h"
#include "../../native/async_copy.cuh"
#include "../../native/launch.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

constexpr int kRowsPerThread = 32;                                    // consecutive rows one thread walks
constexpr int kRowGroups = kCanonRowsPerPartial / kRowsPerThread;      // a block's threads along rows (8)
constexpr int kChannelThreads = 32;                                   // a block's threads along channel vectors
static_assert(kRowGroups * kRowsPerThread == kCanonRowsPerPartial, "a block covers one partial's rows");

// Channel c's weights as the kernels use them: 1 + w[c,3] (the residual and the current token's tap) and
// taps[s − 1] = w[c,3−s], multiplying the token s back.
struct CanonTaps {
  float self;
  float taps[3];
};

__device__ __forceinline__ CanonTaps canonTaps(const float* __restrict__ w, int64_t c) {
  const float4 wc = reinterpret_cast<const float4*>(w)[c];
  return {__fadd_rn(wc.w, 1.f), {wc.z, wc.y, wc.x}};
}

// The first row of a thread's rows and one past its last, in the grid both kernels share: blockIdx.x·32 + x the
// channel vector, (blockIdx.y·8 + y)·32 the first row.
__device__ __forceinline__ int firstRow() { return (int(blockIdx.y) * kRowGroups + int(threadIdx.y)) * kRowsPerThread; }

// The norm before the taps: none, or Canon B's q and k heads (kHeadNorm: normGroup channels each among the first
// normChannels of a row, the lanes of one head normGroup / 4 consecutive lanes of a warp). z = x·rstd, rstd = (mean x² +
// eps)^-½. (Canon A's and C's norm of the whole row has kernels of its own, canon_conv.cu's canonRowNorm*.)
enum CanonNorm : int { kNoNorm = 0, kHeadNorm = 1 };

struct NormArgs {
  int channels, group;  // kHeadNorm: normChannels, normGroup
  float eps;
  // x / group as x·(1 / group): the same bits where group is a power of two (every head size of the model), and the
  // reciprocal is made once a thread (the compiler hoists it), where a division a row took ≈ 8 instructions of the row's
  // ≈ 200 (the heads' kernels are bound by their instructions' issue). kGroup: the group where a walk knows it when
  // compiling (a reader's or writer's kBlockHeadChannels), else 0
  template <int kGroup = 0>
  __device__ __forceinline__ float perChannel(float x) const { return x * (1.f / float(kGroup > 0 ? kGroup : group)); }
};

// The sum of v over the lanes of the lane's head (group / 4 consecutive lanes; kGroup: the group where known when
// compiling, else 0). Always five shuffles, the unneeded ones not added: a loop bounded by the group (a runtime value)
// stays a loop, and its branches kept the unrolled rows' chains of dependent shuffles from overlapping (the normed
// kernels ran at half the plain ones' bandwidth). With a whole warp's group known, no shuffle's sum is selected. Every
// lane of the warp calls it.
template <int kGroup = 0>
__device__ __forceinline__ float headSum(float v, int group) {
  const int lanes = (kGroup > 0 ? kGroup : group) / 4;
#pragma unroll
  for (int offset = 16; offset >= 1; offset >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, offset);
    v += offset < lanes ? other : 0.f;
  }
  return v;
}

// The sums of a and of b over the lanes of the lane's head, as headSum, the two chains interleaved. Every lane of the
// warp calls it.
template <int kGroup = 0>
__device__ __forceinline__ void headSums(float& a, float& b, int group) {
  const int lanes = (kGroup > 0 ? kGroup : group) / 4;
#pragma unroll
  for (int offset = 16; offset >= 1; offset >>= 1) {
    const float otherA = __shfl_xor_sync(0xffffffffu, a, offset), otherB = __shfl_xor_sync(0xffffffffu, b, offset);
    a += offset < lanes ? otherA : 0.f;
    b += offset < lanes ? otherB : 0.f;
  }
}

// kHeadNorm's rstd of the lane's head, and 1 outside the normed channels. Every lane of the warp calls it (the
// shuffles), active or not.
template <int kGroup = 0>
__device__ __forceinline__ float headRstd(const float (&v)[4], bool normed, const NormArgs& norm) {
  const float ss = headSum<kGroup>(v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + v[3] * v[3], norm.group);
  return normed ? rsqrtf(norm.perChannel<kGroup>(ss) + norm.eps) : 1.f;
}

// The block's dw: each thread's sums (sum[j][k]: tap k of its channel j) summed over the block's row groups in order in
// shared memory, one partial [4] per channel: partials[blockIdx.y][c]. Every thread of the block calls it, its walk
// done. The sums go through the walk's rings (rings: the kernel's dynamic shared memory, at least kBlockSumsBytes):
// an array of their own took 16 KiB a block beside them, which left the heads' gradient no room for a ring of the
// rotary tables and ve at two blocks an SM.
template <int V>
constexpr size_t kBlockSumsBytes = sizeof(float4) * kRowGroups * kChannelThreads * V;
template <int V>
__device__ __forceinline__ void writeBlockPartials(const float (&sum)[V][4], float* __restrict__ partials, int C,
                                                   unsigned char* rings) {
  auto blockSums = reinterpret_cast<float4 (*)[kChannelThreads * V]>(rings);  // [row group][channel of the block]
  waitAsync<0>();    // none of this thread's copies is in flight (every one was read: this is the walk's end)
  __syncthreads();   // nor does any thread read its slots
#pragma unroll
  for (int j = 0; j < V; ++j)
    blockSums[threadIdx.y][threadIdx.x * V + j] = make_float4(sum[j][0], sum[j][1], sum[j][2], sum[j][3]);
  __syncthreads();
  const int local = int(threadIdx.y) * kChannelThreads + int(threadIdx.x), c = int(blockIdx.x) * kChannelThreads * V + local;
  if (local < kChannelThreads * V && c < C) {
    float4 acc = blockSums[0][local];
    for (int g = 1; g < kRowGroups; ++g) {
      const float4 v = blockSums[g][local];
      acc = make_float4(acc.x + v.x, acc.y + v.y, acc.z + v.z, acc.w + v.w);
    }
    reinterpret_cast<float4*>(partials)[int64_t(blockIdx.y) * C + c] = acc;
  }
}

// Where the taps count, for a warp's rows (every Canon kernel): bit k of the mask says that row
// first + k begins a run of rows that see each other (the first token of its sequence, or another document than the row
// before) or lies outside [0, rows). Rows q and q − s see each other where none of rows q − s + 1 … q begins a run. The
// warp's lanes share their rows, so lane l tests rows first + l and first + 32 + l and a ballot gathers the bits: two
// loads of the documents a lane, where each row's taps compared documents and positions (a remainder a row among them).
// Every lane calls it.
__device__ __forceinline__ uint64_t runStarts(const int32_t* __restrict__ doc, int first, int rows, int T) {
  const int lane = int(threadIdx.x) & 31;
  auto starts = [&](int q) { return q <= 0 || q >= rows || q % T == 0 || doc[q] != doc[q - 1]; };
  const uint32_t low = __ballot_sync(0xffffffffu, starts(first + lane)), high = __ballot_sync(0xffffffffu, starts(first + 32 + lane));
  return uint64_t(high) << 32 | low;
}
// Rows at bits k and k − s (s ≤ 3) see each other.
__device__ __forceinline__ bool sameRun(uint64_t starts, int k, int s) { return ((starts >> (k - s + 1)) & ((1u << s) - 1)) == 0; }
// pass(m, checked) for the passes over a thread's (or block's) kRows rows, kPass rows each from row m: checked is
// std::false_type where none of the rows the pass reads begins a run, so every tap counts and every row is inside
// (rows m − 2 … m + kPass − 1 + kAfter: the 3 rows before each row see back to m − 3, and the pass reads kAfter rows past
// its last), else std::true_type. Bit k of starts is the walk's row k − 4 (runStarts from its first row less 4).
template <int kRows, int kPass, int kAfter, typename Pass>
__device__ __forceinline__ void forEachPass(uint64_t starts, Pass&& pass) {
  constexpr uint64_t kSpan = (uint64_t(1) << (kPass + 2 + kAfter)) - 1;
#pragma unroll 1
  for (int m = 0; m < kRows; m += kPass) {
    if (((starts >> (m + 2)) & kSpan) == 0) pass(m, std::false_type{});
    else pass(m, std::true_type{});
  }
}

// A thread's V values of a row as one copy (16, 8, 4 or 2 bytes).
template <typename In, int V>
struct RawRow;
template <>
struct RawRow<float, 4> { using type = float4; };
template <>
struct RawRow<__nv_bfloat16, 4> { using type = uint2; };
template <>
struct RawRow<float, 1> { using type = float; };
template <>
struct RawRow<__nv_bfloat16, 1> { using type = __nv_bfloat16; };

// A thread's V values of a row into its slot in shared memory (dst: sizeof the RawRow), and back from there as floats.
template <typename In, int V>
__device__ __forceinline__ void copyRowAsync(void* dst, const In* __restrict__ src) {
  using Raw = typename RawRow<In, V>::type;
  if constexpr (sizeof(Raw) >= 4) copyAsyncOwn<int(sizeof(Raw))>(dst, src);
  else *static_cast<Raw*>(dst) = *reinterpret_cast<const Raw*>(src);  // 2 bytes (V = 1 of bf16) is below cp.async's smallest copy
}
template <typename In, int V>
__device__ __forceinline__ void readRow(const void* src, float (&v)[V]) {
  using Raw = typename RawRow<In, V>::type;
  const Raw raw = *static_cast<const Raw*>(src);
  if constexpr (V == 4) widen(Packed4<In>{raw}, v);
  else v[0] = toFloat(raw);
}

// The rows a kernel reads ahead: each thread copies its own V values of each row into its own slot of a ring of kRows
// rows in shared memory (cp.async), some rows before it reads them, so that the bytes in flight hold no registers. With
// one row ahead in registers (≈ 20 bytes a thread in flight), D's and B's gradients ran at 1.3–1.6 TB/s. Slots are
// [kRows][the block's threads], so a warp's copies and reads of a row are consecutive.
template <typename In, int V, int kRows>
struct RowRing {
  static_assert((kRows & (kRows - 1)) == 0, "a ring of a power of two rows: a row's slot is its index & (kRows − 1)");
  using Raw = typename RawRow<In, V>::type;
  Raw* slots;  // this thread's slot of ring row 0
  int stride;  // the block's threads
  __device__ __forceinline__ RowRing(unsigned char* memory, int thread, int threads)
      : slots(reinterpret_cast<Raw*>(memory) + thread), stride(threads) {}
  __host__ __device__ static constexpr size_t bytes(int threads) { return size_t(kRows) * threads * sizeof(Raw); }
  // row `row`'s slot (row: relative to any fixed origin, negative too)
  __device__ __forceinline__ Raw* at(int row) const { return slots + (row & (kRows - 1)) * stride; }
  __device__ __forceinline__ void copy(int row, const In* __restrict__ src) { copyRowAsync<In, V>(at(row), src); }
  __device__ __forceinline__ void read(int row, float (&v)[V]) const { readRow<In, V>(at(row), v); }
  // row `row`'s values from the slot of the thread `delta` threads on (a lane of the same warp: the walk syncs the warp
  // between its copies and these reads, an Output's or Dy's kSharesSlots)
  __device__ __forceinline__ void readOf(int row, int delta, float (&v)[V]) const { readRow<In, V>(at(row) + delta, v); }
};
// The rings of the kernels with blocks of 32 channel vectors × 8 row groups (canonGrid: kGridThreads). A walk's pass
// reads 4 rows (kPass), and the rows a pass reads are copied one pass ahead into rings of two passes' rows (PassRing: 8
// rows), so that a pass's copies land while the pass before runs (a pass is ≈ 1,000 instructions a warp, past a copy's
// latency); the gradient's dy, read kLead rows past the row, comes through a ring of 16 rows (GridRing), copied three
// passes ahead. 16-row rings for x and the forward's rows too took shared memory that held the heads' kernels to 2 blocks
// an SM, and their per-row reads of the rotary tables and ve to loads from global memory in the walk.
constexpr int kRingRows = 16, kPassRingRows = 8;
constexpr int kGradLead = 3;  // the gradient reads dy of the row kGradLead rows after the row it makes (the taps' reach)
constexpr int kGridThreads = kChannelThreads * kRowGroups;
template <typename In, int V, int kRows = kRingRows>
struct GridRing : RowRing<In, V, kRows> {
  __device__ __forceinline__ explicit GridRing(unsigned char* memory)
      : RowRing<In, V, kRows>(memory, int(threadIdx.y) * kChannelThreads + int(threadIdx.x), kGridThreads) {}
  static constexpr size_t kBytes = RowRing<In, V, kRows>::bytes(kGridThreads);
};
template <typename In, int V>
using PassRing = GridRing<In, V, kPassRingRows>;

// Where the forward's values go (canonConvKernel's Output): withWriter(ring, c, walk) calls walk with each thread's writer
// of channels c … c + V − 1 with its rows' slots at `ring` (kRingBytes a block, after x's ring; a PassRing), of one type
// across a block (an Output may choose among several by the block, as the gradient's Dy does: walk is instantiated for
// each): copy(i, row) starts the copy of what the store of row `row` reads besides y (into the walk's slot i, in x's
// commit group of that row), and store(i, r, y, inside) takes row r's values y (every lane calls it where kShuffles;
// inside: the lane is active and r a row of the tensor). kSharesSlots: a store reads other lanes' slots of its ring (then
// every lane of the warp runs the walk, kShuffles, and the walk syncs the warp after a pass's copies have landed and
// before it copies over slots that the pass before read). A writer's kNeverNormed: none of its lanes' channels is in a
// normed head (the walk leaves the head norm out); its kBlockHeadChannels: where not 0, the block's channels are one head
// of that many (kChannelThreads lanes of V), so every lane is active and the head norm's group known when compiling: the
// walk leaves out the selects of inactive lanes (and, forward, of unnormed ones), headSum adds every shuffle's value
// without a select, and the mean's scale is a constant; else 0. The speedrun's instances of CanonAttentionInputs'
// kernels: 7,456 against 8,256 SASS instructions (forward), 9,928 against 11,104 (backward). kMinBlocks: the blocks an SM should hold (__launch_bounds__).
// RowOutput: the layer's output, y [rows, C] (float, or bf16 rounded to nearest even), and nothing read.
template <typename Out>
struct RowOutput {
  static constexpr bool kShuffles = false;
  static constexpr bool kSharesSlots = false;
  static constexpr size_t kRingBytes = 0;
  static constexpr int kMinBlocks = 4;  // canonConvKernel's
  Out* __restrict__ y;
  int C;
  struct Writer {
    static constexpr bool kNeverNormed = false;
    static constexpr int kBlockHeadChannels = 0;
    Out* __restrict__ y;
    int C, c;
    __device__ __forceinline__ void copy(int, int) const {}
    template <int V>
    __device__ __forceinline__ void store(int, int r, const float (&v)[V], bool inside) const {
      if (inside) storeVec<V>(y + int64_t(r) * C + c, v);
    }
  };
  template <typename Walk>
  __device__ __forceinline__ void withWriter(unsigned char*, int c, Walk&& walk) const {
    walk(Writer{y, C, c});
  }
};

// Where the gradient's dy comes from (canonConvGradKernel's Dy: the gradient of the taps' sum, before the residual's
// scale). withReader(ring, c, C, walk) calls walk with each thread's reader of channels c … c + V − 1 of C with its rows'
// slots at `ring` (kRingBytes a block), of one type across a block (a Dy may choose among several by the block: walk is
// instantiated for each): copy(i, row) starts the copy of dy's row into the walk's slot i (a GridRing), copyAhead(i, row,
// leadRow) the copies of what read and atRow read besides dy, in x's commit group of walk row i (into a PassRing: row is
// the walk's row i, for slot i, and leadRow the row whose dy the walk reads with it, for slot i + kGradLead), read(i, g)
// gives dy's values (every lane calls it where kShuffles), g·scale() is the gradient (dz is scaled here, dw's sums by endWalk), and atRow(i,
// r, inside, g, sums) sees each row's g once (inside: the lane is active and r a row of the tensor), for work of its own
// summed in Sums, which endWalk(dw's sums, taps, sums) may finish in the thread and writeSums(sums) over the block (every
// thread calls it). kSharesSlots as an Output's: read reads other lanes' slots of its rings. A reader's kNeverNormed:
// none of its lanes' channels is in a normed head (the kernel's head norm is left out of its walk); its
// kBlockHeadChannels as a writer's (Output above). kMinBlocks: the blocks an SM should hold (__launch_bounds__: at 2,
// 128 registers a thread).
// RowDy: dy [rows, C] as stored, and nothing else.
template <typename InDy, int V>
struct RowDy {
  static constexpr bool kShuffles = false;
  static constexpr bool kSharesSlots = false;
  static constexpr int kMinBlocks = 1;
  static constexpr size_t kRingBytes = GridRing<InDy, V>::kBytes;
  struct Sums {};
  const InDy* __restrict__ dy;
  struct Reader {
    static constexpr bool kNeverNormed = false;
    static constexpr int kBlockHeadChannels = 0;
    GridRing<InDy, V> ring;
    const InDy* __restrict__ dy;
    int C, c;
    __host__ __device__ static constexpr float scale() { return 1.f; }
    __device__ __forceinline__ void copy(int i, int row) { ring.copy(i, dy + int64_t(row) * C + c); }
    __device__ __forceinline__ void copyAhead(int, int, int) const {}
    __device__ __forceinline__ void read(int i, float (&g)[V]) const { ring.read(i, g); }
    __device__ __forceinline__ void atRow(int, int, bool, const float (&)[V], Sums&) const {}
    __device__ __forceinline__ void endWalk(float (&)[V][4], const CanonTaps (&)[V], Sums&) const {}
  };
  template <typename Walk>
  __device__ __forceinline__ void withReader(unsigned char* ring, int c, int C, Walk&& walk) const {
    walk(Reader{GridRing<InDy, V>(ring), dy, C, c});
  }
  __device__ __forceinline__ void writeSums(const Sums&) const {}
};

// The forward's taps over the row whose z is zs[p] (z of the rows before it: zs[(p − s) mod kWindow], a window of a power
// of two rows), in the composite's order, each product and sum rounded on its own (no FMA contraction):
// ((z·(1 + w3) + z₁·w2) + z₂·w1) + z₃·w0, z_s the token s back, so that the fused forward equals the composite bit for
// bit. Checked: z_s counts where sameRun (bit: the row's in starts), else every tap counts. kFused: the same sum with the
// three taps as FMAs (4 instructions a channel against 7), for relu2's gradient, which makes h again only for
// g = dy·2·relu(h): h within an ulp or two of the forward's changes g by as little, and where the two disagree on h's
// sign, |h| is that small, so g is ≈ 0 either way.
template <bool kChecked, bool kFused = false, int kWindow, int V>
__device__ __forceinline__ void forwardTaps(const float (&zs)[kWindow][V], int p, const CanonTaps (&k)[V], uint64_t starts,
                                            int bit, float (&y)[V]) {
  static_assert(kWindow >= 4 && (kWindow & (kWindow - 1)) == 0, "a window of a power of two rows, the row and three before");
#pragma unroll
  for (int j = 0; j < V; ++j) {
    float acc = __fmul_rn(zs[p & (kWindow - 1)][j], k[j].self);
#pragma unroll
    for (int s = 1; s <= 3; ++s) {
      const float z = !kChecked || sameRun(starts, bit, s) ? zs[(p - s) & (kWindow - 1)][j] : 0.f;
      acc = kFused ? __fmaf_rn(z, k[j].taps[s - 1], acc) : __fadd_rn(acc, __fmul_rn(z, k[j].taps[s - 1]));
    }
    y[j] = acc;
  }
}

// The forward (forwardTaps; without the norm, z = x). A thread walks its kRowsPerThread rows with z of
// rows r − 3 … r in registers, four rows a pass of the unrolled loop (each row's register fixed); x comes through the
// ring (PassRing: copied a pass ahead), the pass's rows all landed before it starts, so that the four rows' norms (a normed
// head's chain of shuffles) overlap. A pass whose rows all see each other (forEachPass) runs without the taps' conditions. The values go
// to `output` (RowOutput: y [rows, C]), whose own reads of a row come through its ring in the row's commit group.
// Four blocks an SM for the plain layer (64 registers: Canon B's instances by the lane's head kind took 71–79, which held
// them to 3 blocks, and at 64 they do not spill); the Output says (kMinBlocks).
template <int V, int Norm, bool Relu2, typename In, typename Output>
__global__ void __launch_bounds__(kGridThreads, Output::kMinBlocks)
    canonConvKernel(const In* __restrict__ x, const float* __restrict__ w, const int32_t* __restrict__ doc,
                    Output output, int rows, int T, int C, NormArgs norm) {
  extern __shared__ __align__(16) unsigned char ringMemory[];
  // rows read, relative to the thread's first: x of r0 − 3 … r0 + 31; a pass from row i copies rows i + 4 … i + 7 (into
  // the slots of rows i − 4 … i − 1, read by the pass before) and waits for its own rows, up to i + 3
  constexpr int kFirst = -3, kLast = kRowsPerThread - 1, kPass = 4, kPending = kPassRingRows - kPass;
  constexpr bool Shuffles = Norm == kHeadNorm || Output::kShuffles;  // every lane of the warp must take part
  const int c0 = (int(blockIdx.x) * kChannelThreads + int(threadIdx.x)) * V, r0 = firstRow();
  const bool active = c0 < C, normed = Norm == kHeadNorm && c0 < norm.channels;  // the same across a head's lanes
  const uint64_t starts = runStarts(doc, r0 - 4, rows, T);  // bit i + 4: row r0 + i
  if (r0 >= rows || (!Shuffles && !active)) return;  // r0: the same across the warp
  const int cl = active ? c0 : C - V;  // an inactive lane reads the last channels
  CanonTaps k[V];
#pragma unroll
  for (int j = 0; j < V; ++j) k[j] = canonTaps(w, cl + j);
  PassRing<In, V> xRing(ringMemory);
  // the walk, once for each writer the Output gives a block (AttentionOutput: one a head kind where a block's channels
  // are one head's): what the writer knows of its lanes at compile time leaves no branch on it in the rows
  output.withWriter(ringMemory + PassRing<In, V>::kBytes, cl, [&](auto out) {
    // a writer whose lanes are never normed (the v heads) skips the head norm and its shuffles; tested only inside
    // `if constexpr (Norm == kHeadNorm)`, since a condition on out's type alone would compile the head norm for every Norm
    [[maybe_unused]] constexpr bool kNormedLanes = !decltype(out)::kNeverNormed;
    // a block of one head (kBlockHeadChannels): the head norm's group known, every lane active and normed where the kernel
    // norms, so no select or branch on either
    [[maybe_unused]] constexpr int kHead = decltype(out)::kBlockHeadChannels;
    const bool on = kHead > 0 || active;
    [[maybe_unused]] const bool inNorm = kHead > 0 || normed;
    auto fetch = [&](int i) {  // one commit group a row, empty past the last row read
      if (i <= kLast) {
        const int row = min(max(r0 + i, 0), rows - 1);
        xRing.copy(i, x + int64_t(row) * C + cl);
        if (i >= 0) out.copy(i, row);  // the rows stored
      }
      commitAsync();
    };
    // z of row r0 + i: x, or x·rstd in a normed head; 0 in an inactive lane of a normed kernel
    auto input = [&](int i, float (&v)[V]) {
      xRing.read(i, v);
      if constexpr (Norm == kHeadNorm) {
        if constexpr (kNormedLanes) {
#pragma unroll
          for (int j = 0; j < V; ++j) v[j] = on ? v[j] : 0.f;
          const float rstd = headRstd<kHead>(v, inNorm, norm);
#pragma unroll
          for (int j = 0; j < V; ++j) v[j] *= rstd;
        }
      }
    };
    float zs[4][V];  // z of row r0 + i in zs[i & 3]
#pragma unroll 1
    for (int i = kFirst; i < kPassRingRows - kPass; ++i) fetch(i);
    waitAsync<kPending>();  // rows r0 − 3 … r0 − 1 have landed
#pragma unroll
    for (int i = kFirst; i < 0; ++i) input(i, zs[i & 3]);
    auto pass = [&](int m, auto checked) {
      constexpr bool kChecked = decltype(checked)::value;
      if constexpr (Output::kSharesSlots) {
        // the stores read other lanes' slots: the pass's rows landed in every lane, and every lane done with the pass
        // before (one sync for both), before the copies go into the slots that pass read
        waitAsync<0>();
        __syncwarp();
      }
#pragma unroll
      for (int p = 0; p < kPass; ++p) fetch(m + p + kPassRingRows - kPass);
      if constexpr (!Output::kSharesSlots) waitAsync<kPending>();
#pragma unroll
      for (int p = 0; p < kPass; ++p) {
        const int i = m + p, bit = i + 4, r = r0 + i;
        input(i, zs[p]);
        float y[V];
        forwardTaps<kChecked>(zs, p, k, starts, bit, y);
        if constexpr (Relu2) {  // the MLP's relu(h)² after Canon D
#pragma unroll
          for (int j = 0; j < V; ++j) y[j] = y[j] > 0.f ? __fmul_rn(y[j], y[j]) : 0.f;
        }
        out.store(i, r, y, on && (!kChecked || r < rows));
      }
    };
    forEachPass<kRowsPerThread, kPass, 0>(starts, pass);
  });
}

// canonConvGradKernel's dynamic shared memory: x's ring and the Dy's, which writeBlockPartials reuses.
template <typename Dy, typename In, int V>
constexpr size_t canonGradRingBytes() {
  constexpr size_t rings = PassRing<In, V>::kBytes + Dy::kRingBytes;
  return rings > kBlockSumsBytes<V> ? rings : kBlockSumsBytes<V>;
}

// dz of each row (the gradient of the taps' input) from dy of it and the three rows after, and the row's products with
// the input of it and the three rows before for dw. dx = dz, or in a normed head rstd·(dz − z·mean(dz·z)) (rms_norm.cu's
// backward), rstd made again from the row (the row norm has its own kernel, canonRowNormGradKernel). A thread walks its
// kRowsPerThread rows with z of rows r − 3 … r and dy of rows r … r + 3 in registers, four rows a pass of the unrolled loop
// so that each row's register is fixed; x and dy come through rings (x's a PassRing, dy's the Dy's: RowDy reads a [rows,
// C] tensor), copied at a pass's start: x a pass ahead, dy kLead rows more. A pass whose rows all see each other (forEachPass) runs without
// the taps' conditions. The block sums its row groups' dw in order in shared memory and writes one partial [4] per
// channel: partials[blockIdx.y][c].
template <int V, int Norm, typename Dy, typename In, typename OutDx>
__global__ void __launch_bounds__(kGridThreads, Dy::kMinBlocks)
    canonConvGradKernel(Dy dy, const In* __restrict__ x, const float* __restrict__ w, const int32_t* __restrict__ doc,
                        OutDx* __restrict__ dx, float* __restrict__ partials, int rows, int T, int C, NormArgs norm) {
  extern __shared__ __align__(16) unsigned char ringMemory[];
  // rows read, relative to the thread's first: x of r0 − 3 … r0 + 31, dy of r0 … r0 + 34; row r reads x of r and dy of
  // r + 3. A pass from row i copies x of rows i + 4 … i + 7 (and the Dy's copies ahead) in one commit group and dy of rows
  // i + 12 … i + 15 in a second (into the slots of rows i − 4 … i − 1, read before), and waits for the rows it reads: x
  // up to i + 3 (the pass before's first group) and dy up to i + 6 (two passes before), so that its four rows' norms (a
  // normed head's chains of shuffles) overlap
  constexpr int kFirst = -3, kLastX = kRowsPerThread - 1, kLast = kRowsPerThread + 2, kLead = kGradLead, kPass = 4;
  constexpr int kXAhead = kPassRingRows - kPass, kDyAhead = kRingRows - kPass;  // the rows ahead a pass copies
  constexpr int kPending = 3;  // groups after the pass before's x: its dy, and this pass's two
  constexpr bool Heads = Norm == kHeadNorm, Shuffles = Heads || Dy::kShuffles;  // Shuffles: every lane must take part
  const int c0 = (int(blockIdx.x) * kChannelThreads + int(threadIdx.x)) * V, r0 = firstRow();
  const bool active = c0 < C, normed = Heads && c0 < norm.channels;
  const uint64_t starts = runStarts(doc, r0 - 4, rows, T);  // bit i + 4: row r0 + i
  float sum[V][4] = {};  // sum[j][k]: tap k (the token 3 − k back) of channel c0 + j
  typename Dy::Sums sideSums{};  // the Dy's own sums over the thread's rows
  if (r0 < rows && (Shuffles || active)) {  // r0: the same across the warp
    const int cl = active ? c0 : C - V;  // an inactive lane reads the last channels
    CanonTaps k[V];
#pragma unroll
    for (int j = 0; j < V; ++j) k[j] = canonTaps(w, cl + j);
    PassRing<In, V> xRing(ringMemory);
    // the walk, once for each reader the Dy gives a block (AttentionDy: one a head kind where a block's channels are one
    // head's): what the reader knows of its lanes at compile time leaves no branch on it in the rows
    dy.withReader(ringMemory + PassRing<In, V>::kBytes, cl, C, [&](auto dyRows) {
      // a reader whose lanes are never normed (the v heads) skips the head norm and its shuffles; tested only inside
      // `if constexpr (Heads)`, since a condition on dyRows' type alone would compile the head norm for every Norm
      [[maybe_unused]] constexpr bool kNormedLanes = !decltype(dyRows)::kNeverNormed;
      // a block of one head (kBlockHeadChannels): the head norm's group known and every lane active, so no select on it (the
      // normed lanes' branch stays: without it too the speedrun's instance spilled 4 bytes at its 128 registers)
      [[maybe_unused]] constexpr int kHead = decltype(dyRows)::kBlockHeadChannels;
      const bool on = kHead > 0 || active;
      // the row of r0 + i that is read: rows outside the tensor are read from its first or last row and never counted
      auto clamped = [&](int i) { return min(max(r0 + i, 0), rows - 1); };
      auto fetchX = [&](int i) {  // x of row r0 + i and the Dy's copies ahead into their slots (none past the last row read)
        if (i > kLastX) return;
        xRing.copy(i, x + int64_t(clamped(i)) * C + cl);
        dyRows.copyAhead(i, clamped(i), clamped(i + kLead));
      };
      auto fetchDy = [&](int i) {  // dy of row r0 + i into its slot
        if (i <= kLast) dyRows.copy(i, clamped(i));
      };
      // x of row r0 + i (v), and its z: x, or x·rstd in a normed head (rstd returned); 0 in an inactive lane, dy too
      auto readX = [&](int i, float (&v)[V]) {
        xRing.read(i, v);
        if constexpr (Shuffles) {
#pragma unroll
          for (int j = 0; j < V; ++j) v[j] = on ? v[j] : 0.f;
        }
      };
      auto readDy = [&](int i, float (&v)[V]) {
        dyRows.read(i, v);
        if constexpr (Shuffles) {
#pragma unroll
          for (int j = 0; j < V; ++j) v[j] = on ? v[j] : 0.f;
        }
      };
      float zs[4][V], gs[4][V];  // z of row r0 + i in zs[i & 3], dy of it in gs[i & 3]
#pragma unroll 1
      for (int i = kFirst; i < kXAhead; ++i) fetchX(i);
#pragma unroll 1
      for (int i = 0; i < kDyAhead; ++i) fetchDy(i);
      commitAsync();
      waitAsync<0>();  // x of rows r0 − 3 … r0 + 3, dy of r0 … r0 + 11
      if constexpr (Dy::kSharesSlots) __syncwarp();  // every lane's (the reader reads other lanes' slots)
#pragma unroll
      for (int i = kFirst; i < 0; ++i) {
        readX(i, zs[i & 3]);
        if constexpr (Heads) {
          if constexpr (kNormedLanes) {
            const float rstd = headRstd<kHead>(zs[i & 3], normed, norm);
#pragma unroll
            for (int j = 0; j < V; ++j) zs[i & 3][j] *= rstd;
          }
        }
      }
#pragma unroll
      for (int i = 0; i < kLead; ++i) readDy(i, gs[i]);
      // Four rows from row r0 + m; checked: the taps count where sameRun, and rows past the last are not stored or summed
      auto pass = [&](int m, auto checked) {
        constexpr bool kChecked = decltype(checked)::value;
        if constexpr (Dy::kSharesSlots) {
          // the reader reads other lanes' slots: the pass's rows landed in every lane, and every lane done with the
          // pass before (one sync for both), before the copies go into the slots that pass read
          waitAsync<kPending - 2>();
          __syncwarp();
        }
#pragma unroll
        for (int p = 0; p < kPass; ++p) fetchX(m + p + kXAhead);
        commitAsync();
#pragma unroll
        for (int p = 0; p < kPass; ++p) fetchDy(m + p + kDyAhead);
        commitAsync();
        if constexpr (!Dy::kSharesSlots) waitAsync<kPending>();
#pragma unroll
        for (int p = 0; p < kPass; ++p) {
          const int i = m + p, bit = i + 4, r = r0 + i;
          float cur[V], out[V];
          readX(i, cur);
          readDy(i + kLead, gs[(p + kLead) & 3]);
          const bool inside = !kChecked || r < rows;
#pragma unroll
          for (int j = 0; j < V; ++j) {
            float acc = gs[p][j] * k[j].self;
#pragma unroll
            for (int s = 1; s <= 3; ++s)
              if (!kChecked || sameRun(starts, bit + s, s)) acc += gs[(p + s) & 3][j] * k[j].taps[s - 1];
            out[j] = acc * dyRows.scale();  // dz: no norm in it
          }
          dyRows.atRow(i, r, on && inside, gs[p], sideSums);
          // A normed head: z = x·rstd, and dx = rstd·(dz − z·mean(dz·z)) with mean(dz·z) = rstd·Σdz·x / group, so the
          // head's Σx² and Σdz·x are two independent shuffle chains, run side by side (z first and Σdz·z after it made them
          // one chain twice as long: the normed kernel ran at half the plain one's bandwidth)
          [[maybe_unused]] float rstd = 1.f, dzx = 0.f;  // read by the normed head only
          if constexpr (Heads) {
            if constexpr (kNormedLanes) {
              float ss = 0.f;
#pragma unroll
              for (int j = 0; j < V; ++j) {
                ss += cur[j] * cur[j];
                dzx += out[j] * cur[j];
              }
              headSums<kHead>(ss, dzx, norm.group);
              if (normed) rstd = rsqrtf(norm.perChannel<kHead>(ss) + norm.eps);
#pragma unroll
              for (int j = 0; j < V; ++j) cur[j] *= rstd;
            }
          }
#pragma unroll
          for (int j = 0; j < V; ++j) {  // dw: dy of the row times z of it and of the three before
            const float g = inside ? gs[p][j] : 0.f;
            sum[j][3] += g * cur[j];
#pragma unroll
            for (int s = 1; s <= 3; ++s)
              if (!kChecked || sameRun(starts, bit, s)) sum[j][3 - s] += g * zs[(p - s) & 3][j];
          }
          if constexpr (Heads) {  // through the head's norm
            if (kNormedLanes && normed) {
              const float mean = norm.perChannel<kHead>(rstd * dzx);
#pragma unroll
              for (int j = 0; j < V; ++j) out[j] = rstd * (out[j] - cur[j] * mean);
            }
          }
          if (on && inside) storeVec<V>(dx + int64_t(r) * C + c0, out);
#pragma unroll
          for (int j = 0; j < V; ++j) zs[p][j] = cur[j];
        }
      };
      forEachPass<kRowsPerThread, kPass, kLead>(starts, pass);  // dz reads dy of the 3 rows after
      dyRows.endWalk(sum, k, sideSums);
    });
  }
  writeBlockPartials<V>(sum, partials, C, ringMemory);
  dy.writeSums(sideSums);
}

// dw = the partials summed in a fixed order, plus dwAcc (w's gradient so far: a gradient accumulation's earlier
// micro-steps) where not null, added as the Add it replaces would. A block sums 32 values (a warp's lanes, one 128-byte
// row of each partial): each of its warps the values' sums over its share of the chunks in order, then warp 0 those
// shares' sums in order. A thread a value over every chunk (128 a call at the speedrun) was 36 blocks for C = 2304, each
// thread's loads one after another. launchCanonConvGradWSum launches it.
constexpr int kWSumWarps = kThreads / 32;
__global__ void __launch_bounds__(kThreads) canonConvGradWSumKernel(const float* __restrict__ partials, float* __restrict__ dw,
                                                                    int64_t chunks, int64_t C, const float* __restrict__ dwAcc) {
  __shared__ float shareSums[kWSumWarps][32];
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int64_t n = C * 4, i = int64_t(blockIdx.x) * 32 + lane, share = (chunks + kWSumWarps - 1) / kWSumWarps;
  const int64_t first = warp * share, last = min(first + share, chunks);
  float acc = 0.f;
  if (i < n)
    for (int64_t k = first; k < last; ++k) acc += partials[k * n + i];
  shareSums[warp][lane] = acc;
  __syncthreads();
  if (warp != 0 || i >= n) return;
  float total = shareSums[0][lane];
  for (int w = 1; w < kWSumWarps; ++w) total += shareSums[w][lane];
  dw[i] = dwAcc ? dwAcc[i] + total : total;
}
inline void launchCanonConvGradWSum(cudaStream_t s, const float* partials, float* dw, int64_t chunks, int64_t C, const float* dwAcc) {
  canonConvGradWSumKernel<<<unsigned((C * 4 + 31) / 32), kThreads, 0, s>>>(partials, dw, chunks, C, dwAcc);
}

// The grid of both kernels: blocks of 32 channel vectors × 8 row groups of kRowsPerThread rows.
dim3 canonGrid(int64_t rows, int64_t C, int V) {
  const int64_t vectors = (C + V - 1) / V;
  return dim3(unsigned((vectors + kChannelThreads - 1) / kChannelThreads), unsigned((rows + kCanonRowsPerPartial - 1) / kCanonRowsPerPartial));
}

}  // namespace
}  // namespace tsgpt
