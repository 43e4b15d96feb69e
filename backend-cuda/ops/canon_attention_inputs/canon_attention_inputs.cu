// Canon B inside the attention's inputs (train_gpt.ts's canonAttentionInputs()): the Canon layer on the QKV projection's
// output and the attention's inputs from it, one pass each way. Canon B alone wrote its output u [rows, C] (C = 2304 at the
// speedrun), AttentionInputs read it back and wrote q, k and v, and each backward wrote and read u's gradient the same
// way: ≈ 600 MB a layer and micro-step of the speedrun's traffic, and two launches, that these kernels do not make.
// They are Canon's kernels (ops/canon_conv/canon_conv.cuh) with their own Output and Dy. With x a row of the projection's
// output, z its taps' input (each q and k head RMS-normed where qkNorm: the head norm of canon_conv.cu) and u the taps'
// sum with the residual, per head of h channels with (u1, u2) the head's pairs (u[j], u[j + h/2]) (rotary.cu's rotation,
// tables [T, h/2]):
//   q, k heads:  y1 = u1·cos + u2·sin,  y2 = u2·cos − u1·sin
//   v heads:     y = λa·u + λb·ve   (λa·u without value embeddings)
// backward, from dy (dq, dk or dv at the head's place):
//   q, k heads:  g = the transpose rotation of dy (g1 = dy1·cos − dy2·sin, g2 = dy1·sin + dy2·cos)
//   v heads:     g = λa·dv,  dve = λb·dv (+ veAcc),  dλa = Σ dv·u,  dλb = Σ dv·ve
// and g, the gradient of u, goes back through the taps and the head norm as in canon_conv.cu. A lane holds 4 channels of
// one half of a head: its pair's lane is h/8 lanes away (a shuffle), so h is a power of two from 8 to 128.
// The v heads' g is λa·dv: the walk takes dv itself and scales dz and, at its end, dw's sums by λa (AttentionDy::scale),
// and dλa = Σ dv·u comes from those sums before the scale, Σ_k w'[k]·Σ_r dv[r]·z[r − 3 + k] (w' the taps with the
// residual's 1), so u is not made again in the backward. dλ sums a pair a block, summed in order after (no atomics), as
// dw's partials.
#include "canon_attention_inputs.h"

#include "../../native/async_copy.cuh"
#include "../../native/kernels.h"
#include "../../native/launch.h"
#include "../../native/launchers.h"
#include "../../native/rows.cuh"
#include "../../native/vec.cuh"
#include "../canon_conv/canon_conv.cuh"

namespace tsgpt {
namespace {

enum HeadKind : int { kQueryHead = 0, kKeyHead = 1, kValueHead = 2 };
constexpr int kAnyHead = -1;  // a reader whose lanes may be of different kinds (AttentionDy::Reader)

// A lane's place among the heads: its 4 channels in its tensor (q, k or v: [rows, heads·h]) and in a rotary table's row
// (h/2 values: the same for a pair's two lanes).
struct HeadPlace {
  HeadKind kind;
  int first, width;  // the channels' offset in a row of the tensor, and the row's width (heads·h)
  int pair, half;    // the channels' offset in a table's row, and its width (h/2)
  float side;        // 1 in the first half of a head (y1 = u1·cos + u2·sin), −1 in the second (y2 = u2·cos − u1·sin)
  __device__ __forceinline__ int64_t offset(int row) const { return int64_t(row) * width + first; }
  // Where the pair's lane in the head's first half and its lane in the second are, in threads from this lane (0 for its
  // own; lanes: pairLanesOf): their ring slots, which a walk whose rows read both (kSharesSlots) reads by these offsets.
  __device__ __forceinline__ int firstHalfAt(int lanes) const { return side > 0.f ? 0 : -lanes; }
  __device__ __forceinline__ int secondHalfAt(int lanes) const { return side > 0.f ? lanes : 0; }
};

// The heads of a row of x: H q heads, Hk k heads, Hk v heads of h = 1 << shift channels.
struct QkvHeads {
  int H, Hk, shift;
  __device__ __forceinline__ HeadPlace place(int c) const {
    const int head = c >> shift, j = c & ((1 << shift) - 1), half = 1 << (shift - 1);
    const HeadKind kind = head < H ? kQueryHead : head < H + Hk ? kKeyHead : kValueHead;
    const int inKind = kind == kQueryHead ? head : kind == kKeyHead ? head - H : head - H - Hk;
    return {kind, (inKind << shift) + j, (kind == kQueryHead ? H : Hk) << shift, j & (half - 1), half, j < half ? 1.f : -1.f};
  }
  // The lanes between a channel's lane and its pair's (h/2 channels, 4 a lane).
  __device__ __forceinline__ int pairLanes() const { return 1 << (shift - 3); }
  // The channels of a block of canonGrid's (32 lanes of 4), and whether each block lies in one head: h = 128.
  static constexpr int kBlockChannels = 4 * kChannelThreads;
  __host__ __device__ bool headPerBlock() const { return 1 << shift == kBlockChannels; }
};

// Row r's position in its sequence: r itself in the first (all of them in the speedrun's one packed stream a micro-step),
// without the division.
__device__ __forceinline__ int positionOf(int r, int T) { return r < T ? r : r % T; }

// The lanes between a lane and its pair's: a constant where a block is one head (a writer's or reader's
// kBlockHeadChannels), else `lanes`, the heads' (QkvHeads::pairLanes).
template <int kBlockHeadChannels>
__device__ __forceinline__ int pairLanesOf(int lanes) {
  if constexpr (kBlockHeadChannels > 0) return kBlockHeadChannels / 8;
  else return lanes;
}

// The values of the lane's pair lane. Every lane of the warp calls it.
__device__ __forceinline__ void pairValues(const float (&v)[4], int lanes, float (&pair)[4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) pair[i] = __shfl_xor_sync(0xffffffffu, v[i], lanes);
}

// f(std::integral_constant<int, Kind>{}): with the lane's head kind where KindByBlock (the block's: every lane of a block
// takes the same branch), else with kAnyHead (a walk that reads each lane's own kind).
template <bool KindByBlock, typename F>
__device__ __forceinline__ void byHeadKind(HeadKind kind, F&& f) {
  if constexpr (KindByBlock) {
    if (kind == kQueryHead) f(std::integral_constant<int, kQueryHead>{});
    else if (kind == kKeyHead) f(std::integral_constant<int, kKeyHead>{});
    else f(std::integral_constant<int, kValueHead>{});
  } else {
    f(std::integral_constant<int, kAnyHead>{});
  }
}

// A q or k lane's place in the rotary tables' row that it copies into its ring (the forward's and the backward's): 4
// values of cos in the head's first half, of sin in its second, at the pair's offset (the pair's lanes share it), so
// that a lane's own values and its pair lane's are the row's cos and sin at its 4 channels.
__device__ __forceinline__ const float* tableOf(const HeadPlace& at, const float* __restrict__ cosT, const float* __restrict__ sinT) {
  return (at.side > 0.f ? cosT : sinT) + at.pair;
}

// canonConvKernel's Output: q, k and v from u (the taps' sum of the row), rotated or mixed with ve. What a row's store
// reads besides u comes through its ring, 16 bytes a lane, copied with x's row: a q or k head's lane takes its 4 values
// of the row's cos or sin (tableOf), and its pair lane's shuffle gives the other; a v head's lane takes its 4 values of
// ve. Read from global memory at the store,
// the tables (L2, 32 bytes a lane and row) and ve held each pass of the walk for their latency: the fused forward ran at
// 0.250 ms against CanonConv and AttentionInputs' 0.217 (the speedrun's layer with ve, one H200).
// KindByBlock: every block's lanes are of one head kind (QkvHeads::headPerBlock), and each block walks with that kind's
// writer (AttentionDy's choice, for the forward): a v walk makes no rotation, no pair shuffles and no head norm, a q or k
// walk no branch on the kind. The three walks in one kernel took more registers: at 64 (4 blocks an SM) the speedrun's
// instance spilled 228 bytes (the twenty-fourth session), so the kernel by the block's kind asks for 3 blocks (80).
template <typename Out, bool KindByBlock>
struct AttentionOutput {
  static constexpr bool kShuffles = true;     // the pair's values
  static constexpr bool kSharesSlots = true;  // a q or k lane reads its pair lane's table
  static constexpr size_t kRingBytes = PassRing<float, 4>::kBytes;
  static constexpr int kMinBlocks = KindByBlock ? 3 : 4;
  Out* __restrict__ q;
  Out* __restrict__ k;
  Out* __restrict__ v;
  const float* __restrict__ cosT;
  const float* __restrict__ sinT;
  const float* __restrict__ lambdas;
  const float* __restrict__ ve;
  QkvHeads heads;
  int T;
  // A lane's writer. Kind: the head kind of every lane of the block (kQueryHead, kKeyHead, kValueHead), known when
  // compiling its walk, or kAnyHead, each lane's own (at.kind).
  template <int Kind>
  struct Writer {
    static constexpr bool kNeverNormed = Kind == kValueHead;  // the norm's channels are the q and k heads'
    static constexpr int kBlockHeadChannels = Kind == kAnyHead ? 0 : QkvHeads::kBlockChannels;  // KindByBlock: a head a block
    PassRing<float, 4> ring;
    HeadPlace at;
    const float* src;  // what the lane copies from: cos or sin at its pair's offset, or ve (null: a v head without ve)
    Out* dst;          // q, k or v
    float la, lb;      // the v heads' λa and λb (λb 0 without ve)
    int lanes, T;      // the pair's lanes apart; the sequence length
    __device__ __forceinline__ HeadKind kind() const {
      if constexpr (Kind == kAnyHead) return at.kind;
      else return HeadKind(Kind);
    }
    __device__ __forceinline__ void copy(int i, int row) const {
      if (!src) return;  // a v head without ve (a q or k lane always has its table)
      const int64_t offset = kind() == kValueHead ? at.offset(row) : int64_t(positionOf(row, T)) * at.half;
      copyAsyncOwn<16>(ring.at(i), src + offset);
    }
    __device__ __forceinline__ int pairLanes() const { return pairLanesOf<kBlockHeadChannels>(lanes); }
    template <int V>
    __device__ __forceinline__ void store(int i, int r, const float (&u)[V], bool inside) const {
      static_assert(V == 4, "a lane's 4 channels lie in one half of a head");
      float pair[4] = {}, y[4];
      if constexpr (Kind != kValueHead) pairValues(u, pairLanes(), pair);  // the pair lane's u (a v block's walk needs none)
      if (!inside) return;
      if (kind() == kValueHead) {
        float e[4] = {};
        if (src) ring.read(i, e);
#pragma unroll
        for (int j = 0; j < 4; ++j) y[j] = la * u[j] + lb * e[j];
      } else {
        // cos from the slot of the pair's lane in the head's first half, sin from its second's (tableOf): shuffling the
        // pair lane's table and selecting cos and sin by the half took 12 more instructions a row
        float c[4], s[4];
        ring.readOf(i, at.firstHalfAt(pairLanes()), c);
        ring.readOf(i, at.secondHalfAt(pairLanes()), s);
#pragma unroll
        for (int j = 0; j < 4; ++j) y[j] = u[j] * c[j] + at.side * pair[j] * s[j];
      }
      storeVec<4>(dst + at.offset(r), y);
    }
  };
  // walk(the lane's writer): that of the block's head kind where KindByBlock (every lane of the block takes the same
  // branch here), else the writer of a lane of any kind.
  template <typename Walk>
  __device__ __forceinline__ void withWriter(unsigned char* ring, int c, Walk&& walk) const {
    const HeadPlace at = heads.place(c);
    const float* src = at.kind == kValueHead ? ve : tableOf(at, cosT, sinT);  // copy() adds the row's offset
    Out* dst = at.kind == kQueryHead ? q : at.kind == kKeyHead ? k : v;
    const float la = lambdas[0], lb = ve ? lambdas[1] : 0.f;
    auto writerOf = [&](auto kind) {
      return Writer<decltype(kind)::value>{PassRing<float, 4>(ring), at, src, dst, la, lb, heads.pairLanes(), T};
    };
    byHeadKind<KindByBlock>(at.kind, [&](auto kind) { walk(writerOf(kind)); });
  }
};

// canonConvGradKernel's Dy: g from dq, dk and dv (dq float32 as the attention sums it, dk and dv in Kv as its backward
// stores them), with dve and the λ sums on the way (the v heads' rows, once each). What a row reads besides dy comes
// through a PassRing of its own (copyAhead), 16 bytes a lane as the forward's: a q or k lane's 4 values of cos or sin
// (tableOf) at the row whose dy it reads (kLead rows on), a v lane's 4 values of ve at its row. Loaded from global memory
// at each row, behind the kinds' branches, they held the walk: 2.8 of its 7.9 cycles between issues were waits on them,
// and it ran at 0.360 ms against 0.314 through the ring (the speedrun's layer with ve, one H200).
// KindByBlock: every block's lanes are of one head kind (QkvHeads::headPerBlock), and each block walks with that kind's
// reader; else a lane's kind is its own (also with h = 128, where dk, dv, x and dx are not all of one type). Two
// kernels, not one with both: the four walks in one kernel spilled up to 140 bytes at its 128 registers (the
// speedrun's instance 28), each kernel alone at most 36 (the speedrun's none).
template <typename Kv, bool KindByBlock>
struct AttentionDy {
  static constexpr bool kShuffles = true;     // every lane of the warp runs the walk (kSharesSlots)
  static constexpr bool kSharesSlots = true;  // a q or k lane reads its pair lane's dy and table
  // two blocks an SM (its rings take 112 KiB a block at bf16 x): without the bound, up to 156 registers allowed one
  static constexpr int kMinBlocks = 2;
  // dy's ring, slots of 16 bytes: a lane's 4 values of dq (float), or of dk and dv (8 bytes where Kv is bf16); then the
  // ring of the tables and ve
  static constexpr size_t kRingBytes = GridRing<float, 4>::kBytes + PassRing<float, 4>::kBytes;
  struct Sums {
    float a, b;  // this thread's Σ dv·u (λa's gradient) and Σ dv·ve (λb's)
  };
  const float* __restrict__ dq;
  const Kv* __restrict__ dk;
  const Kv* __restrict__ dv;
  const float* __restrict__ cosT;
  const float* __restrict__ sinT;
  const float* __restrict__ lambdas;
  const float* __restrict__ ve;
  const float* __restrict__ veAcc;
  float* __restrict__ dve;
  float* __restrict__ lambdaPartials;  // [blocks][2]
  QkvHeads heads;
  int T;

  // A lane's reader. Kind: the head kind of every lane of the block (kQueryHead, kKeyHead, kValueHead), known when
  // compiling its walk, or kAnyHead, each lane's own (at.kind). Where the kind is known, no row branches on it, on dy's
  // width or on the table, and a v head's walk makes no rotation and no head norm. With a kind a lane, the 817
  // instructions of a pass that every warp ran held 90 branches and their reconvergence (BRA, BSSY, BSYNC), and v lanes
  // made the rotation's 8 shuffles and 8 products a row and the head norm's 10 shuffles, to discard them (the
  // twenty-fourth session's ncu, one H200).
  template <int Kind>
  struct Reader {
    static constexpr bool kNeverNormed = Kind == kValueHead;  // the norm's channels are the q and k heads'
    static constexpr int kBlockHeadChannels = Kind == kAnyHead ? 0 : QkvHeads::kBlockChannels;  // KindByBlock: a head a block
    GridRing<float, 4> ring;
    PassRing<float, 4> ahead;  // the tables' or ve's slots
    HeadPlace at;
    const void* src;    // dq, dk or dv at the lane's first channel
    const float* side;  // what copyAhead copies from: cos or sin at the pair's offset, or ve at the lane's first channel (null: a v head without ve)
    float la, lb;       // λa for the v heads (1 for q and k), λb
    AttentionDy dy;     // its fields as kernel parameters (the ones a lane uses)
    __device__ __forceinline__ HeadKind kind() const {
      if constexpr (Kind == kAnyHead) return at.kind;
      else return HeadKind(Kind);
    }
    __device__ __forceinline__ bool wide() const {  // src holds floats: dq, or dk and dv in float32
      if constexpr (sizeof(Kv) == 4 || Kind == kQueryHead) return true;
      else if constexpr (Kind == kAnyHead) return at.kind == kQueryHead;
      else return false;
    }
    __device__ __forceinline__ float scale() const {  // dv's λa, 1 for dq and dk
      if constexpr (Kind == kQueryHead || Kind == kKeyHead) return 1.f;
      else return la;
    }
    __device__ __forceinline__ void copy(int i, int row) {
      const int64_t offset = int64_t(row) * at.width;  // src is at the lane's first channel
      if (wide()) copyAsyncOwn<16>(ring.at(i), static_cast<const float*>(src) + offset);
      else copyAsyncOwn<8>(ring.at(i), static_cast<const __nv_bfloat16*>(src) + offset);
    }
    __device__ __forceinline__ void copyAhead(int i, int row, int leadRow) {
      if (kind() == kValueHead) {
        if (side) copyAsyncOwn<16>(ahead.at(i), side + int64_t(row) * at.width);
      } else {
        copyAsyncOwn<16>(ahead.at(i + kGradLead), side + int64_t(positionOf(leadRow, dy.T)) * at.half);
      }
    }
    // g: the transpose of rotary.cu's rotation of dq or dk, or dv. With (d1, d2) a pair's dy in the head's first and
    // second half, and (c, s) its table: g1 = d1·c − d2·s, g2 = d1·s + d2·c. Every lane reads d1 and d2 from the pair's
    // two dy slots (HeadPlace::firstHalfAt, secondHalfAt), its own table slot (cos in the first half's lane, sin in the
    // second's: tableOf) and its pair lane's: g = d1·own + side'·d2·theirs with side' = −1 in the first half and 1 in
    // the second (HeadPlace::side, negated), the products and sums rounded as when the lanes exchanged d and d·t by
    // shuffles (8 a row, and 8 selects of which value each half takes, that the slots' offsets now make once).
    __device__ __forceinline__ int pairLanes() const { return pairLanesOf<kBlockHeadChannels>(dy.heads.pairLanes()); }
    __device__ __forceinline__ void readSlot(int i, int delta, float (&d)[4]) const {
      if (wide()) widen(Packed4<float>{ring.at(i)[delta]}, d);
      else widen(Packed4<__nv_bfloat16>{*reinterpret_cast<const uint2*>(ring.at(i) + delta)}, d);
    }
    __device__ __forceinline__ void read(int i, float (&g)[4]) const {
      if (kind() == kValueHead) {  // dv as it is (scaled by λa in dz and dw)
        readSlot(i, 0, g);
        return;
      }
      float d[4], t[4];
      // d2's slot is d1's and lanes on (an offset in the load where lanes is a constant); the pair lane's table is
      // lanes on in the first half, lanes back in the second
      const int d1At = at.firstHalfAt(pairLanes());
      readSlot(i, d1At + pairLanes(), d);
      ahead.readOf(i, d1At + at.secondHalfAt(pairLanes()), t);
      const float sign = -at.side;
#pragma unroll
      for (int j = 0; j < 4; ++j) g[j] = sign * (d[j] * t[j]);  // side'·d2·theirs
      readSlot(i, d1At, d);
      ahead.read(i, t);
#pragma unroll
      for (int j = 0; j < 4; ++j) g[j] += d[j] * t[j];  // d1·own (an FMA where contracted, as the shuffles' form)
    }
    // dve = λb·dv (+ ve's gradient so far, rounded as the Add's) and λb's sum, at the v heads' rows
    __device__ __forceinline__ void atRow(int i, int r, bool inside, const float (&d)[4], Sums& sums) const {
      if (kind() != kValueHead || !dy.ve || !inside) return;
      float e[4], a[4] = {}, out[4];
      ahead.read(i, e);
      if (dy.veAcc) loadVec<4>(dy.veAcc + at.offset(r), a);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        sums.b += d[j] * e[j];
        out[j] = dy.veAcc ? __fadd_rn(a[j], __fmul_rn(lb, d[j])) : lb * d[j];
      }
      storeVec<4>(dy.dve + at.offset(r), out);
    }
    // λa's sum from dw's sums of dv (u = Σ_k w'[k]·z[r − 3 + k]), then those sums scaled by λa into dw's
    __device__ __forceinline__ void endWalk(float (&sum)[4][4], const CanonTaps (&k)[4], Sums& sums) const {
      if (kind() != kValueHead) return;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        sums.a += k[j].self * sum[j][3] + k[j].taps[0] * sum[j][2] + k[j].taps[1] * sum[j][1] + k[j].taps[2] * sum[j][0];
#pragma unroll
        for (int tap = 0; tap < 4; ++tap) sum[j][tap] *= la;
      }
    }
  };
  // walk(the lane's reader): that of the block's head kind where KindByBlock (every lane of the block takes the same
  // branch here), else the reader of a lane of any kind.
  template <typename Walk>
  __device__ __forceinline__ void withReader(unsigned char* ring, int c, int /* C */, Walk&& walk) const {
    const HeadPlace at = heads.place(c);
    const float* side = at.kind == kValueHead ? (ve ? ve + at.first : nullptr) : tableOf(at, cosT, sinT);  // copyAhead adds the row's offset
    const void* src = at.kind == kQueryHead ? static_cast<const void*>(dq + at.first)
                      : static_cast<const void*>((at.kind == kKeyHead ? dk : dv) + at.first);
    const float la = at.kind == kValueHead ? lambdas[0] : 1.f, lb = ve ? lambdas[1] : 0.f;
    auto readerOf = [&](auto kind) {
      return Reader<decltype(kind)::value>{GridRing<float, 4>(ring), PassRing<float, 4>(ring + GridRing<float, 4>::kBytes), at, src, side, la, lb, *this};
    };
    byHeadKind<KindByBlock>(at.kind, [&](auto kind) { walk(readerOf(kind)); });
  }
  // The block's λ sums, its warps' in order, into lambdaPartials[block]. Every thread of the block calls it.
  __device__ __forceinline__ void writeSums(const Sums& sums) const {
    __shared__ float2 warpSums[kRowGroups];
    const float a = warpSum(sums.a), b = warpSum(sums.b);
    if (threadIdx.x == 0) warpSums[threadIdx.y] = make_float2(a, b);
    __syncthreads();
    if (threadIdx.x != 0 || threadIdx.y != 0) return;
    float2 total = warpSums[0];
    for (int i = 1; i < kRowGroups; ++i) total = make_float2(total.x + warpSums[i].x, total.y + warpSums[i].y);
    const int64_t block = int64_t(blockIdx.y) * gridDim.x + blockIdx.x;
    lambdaPartials[2 * block] = total.x;
    lambdaPartials[2 * block + 1] = total.y;
  }
};

// log2(h) where h is a power of two from 8 to 128 (the lanes of a head in one warp, 4 channels a lane in one half), else 0.
int headShift(int64_t h) {
  for (int shift = 3; shift <= 7; ++shift)
    if (h == int64_t(1) << shift) return shift;
  return 0;
}

// The problem's checks: h (headShift), the sizes in int (the tables' T·h/2 too), every pointer 16-byte aligned.
bool problemFits(int64_t rows, int64_t T, int64_t C, int64_t h, std::initializer_list<const void*> ptrs) {
  return headShift(h) != 0 && rows <= INT32_MAX && C <= INT32_MAX && T * h / 2 <= INT32_MAX && aligned16(ptrs);
}

// f(norm) with the norm as a type: the q and k heads' (qkNorm) or none.
template <typename F>
void byNorm(bool qkNorm, F f) {
  if (qkNorm) f(std::integral_constant<int, kHeadNorm>{});
  else f(std::integral_constant<int, kNoNorm>{});
}

}  // namespace

cudaError_t launchCanonAttentionInputs(cudaStream_t s, const void* x, bool xBf16, const float* w, const int32_t* docIds,
                                       const float* cosT, const float* sinT, const float* lambdas, const float* ve, void* q,
                                       void* k, void* v, bool outBf16, int64_t B, int64_t T, int64_t H, int64_t Hk, int64_t h,
                                       bool qkNorm, float eps) {
  const int64_t rows = B * T, C = (H + 2 * Hk) * h;
  if (rows == 0) return cudaSuccess;
  if (!problemFits(rows, T, C, h, {x, cosT, sinT, ve, q, k, v})) return cudaErrorInvalidValue;
  const NormArgs norm{qkNorm ? int((H + Hk) * h) : 0, int(h), eps};
  const QkvHeads heads{int(H), int(Hk), headShift(h)};
  byInputType(x, xBf16, [&](auto* in) {
    using In = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
    auto launch = [&](auto* outType) {
      using Out = std::remove_pointer_t<decltype(outType)>;
      byNorm(qkNorm, [&](auto normKind) {
        auto run = [&](auto kindByBlock) {
          using Output = AttentionOutput<Out, decltype(kindByBlock)::value>;
          const Output output{static_cast<Out*>(q), static_cast<Out*>(k), static_cast<Out*>(v), cosT, sinT, lambdas, ve, heads, int(T)};
          const auto kernel = canonConvKernel<4, decltype(normKind)::value, false, In, Output>;
          const size_t ring = PassRing<In, 4>::kBytes + Output::kRingBytes;
          if (allowSharedMemory(kernel, ring) == cudaSuccess)
            kernel<<<canonGrid(rows, C, 4), dim3(kChannelThreads, kRowGroups), ring, s>>>(in, w, docIds, output, int(rows), int(T), int(C), norm);
        };
        // by the block's kind only in the forms that run, as the backward's: training's (bf16 x, q, k and v) and the
        // benchmark's references' (all float32)
        if constexpr (std::is_same_v<In, Out>) {
          if (heads.headPerBlock()) return run(std::true_type{});
        }
        run(std::false_type{});
      });
    };
    if (outBf16) launch(static_cast<__nv_bfloat16*>(nullptr));
    else launch(static_cast<float*>(nullptr));
  });
  return cudaGetLastError();
}

cudaError_t launchCanonAttentionInputsGrad(cudaStream_t s, const float* dq, const void* dk, const void* dv, bool kvBf16,
                                           const void* x, bool xBf16, const float* w, const int32_t* docIds, const float* cosT,
                                           const float* sinT, const float* lambdas, const float* ve, void* dx, bool dxBf16,
                                           float* dw, const float* dwAcc, float* dlambdas, float* dve, const float* veAcc,
                                           const float* lambdasAcc, float* partials, int64_t B, int64_t T, int64_t H, int64_t Hk,
                                           int64_t h, bool qkNorm, float eps) {
  const int64_t rows = B * T, C = (H + 2 * Hk) * h;
  if (rows == 0) {  // dw and dλ = the sums so far (or 0), no dve
    const cudaError_t e = dwAcc ? cudaMemcpyAsync(dw, dwAcc, C * 4 * sizeof(float), cudaMemcpyDeviceToDevice, s)
                                : cudaMemsetAsync(dw, 0, C * 4 * sizeof(float), s);
    return e != cudaSuccess ? e : launchSumPartialPairs(s, nullptr, 0, dlambdas, dlambdas + 1, lambdasAcc);
  }
  if (!problemFits(rows, T, C, h, {dq, dk, dv, x, cosT, sinT, ve, dx, dve, veAcc})) return cudaErrorInvalidValue;
  const NormArgs norm{qkNorm ? int((H + Hk) * h) : 0, int(h), eps};
  const QkvHeads heads{int(H), int(Hk), headShift(h)};
  const dim3 grid = canonGrid(rows, C, 4);
  float* lambdaPartials = partials + int64_t(grid.y) * C * 4;  // after dw's (canonAttentionInputsPartialFloats)
  static_assert(kCanonRowsPerPartial == kRowGroups * kRowsPerThread && kChannelThreads == 32, "canonAttentionInputsPartialFloats' grid");
  byInputType(dk, kvBf16, [&](auto* dkT) {
    using Kv = std::remove_const_t<std::remove_pointer_t<decltype(dkT)>>;
    byInputType(x, xBf16, [&](auto* in) {
      using In = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
      auto launch = [&](auto* out) {
        using OutDx = std::remove_pointer_t<decltype(out)>;
        byNorm(qkNorm, [&](auto normKind) {
          auto run = [&](auto kindByBlock) {
            using Dy = AttentionDy<Kv, decltype(kindByBlock)::value>;
            const Dy dy{dq, dkT, static_cast<const Kv*>(dv), cosT, sinT, lambdas, ve, veAcc, dve, lambdaPartials, heads, int(T)};
            const auto kernel = canonConvGradKernel<4, decltype(normKind)::value, Dy, In, OutDx>;
            const size_t ring = canonGradRingBytes<Dy, In, 4>();
            if (allowSharedMemory(kernel, ring) == cudaSuccess)
              kernel<<<grid, dim3(kChannelThreads, kRowGroups), ring, s>>>(dy, in, w, docIds, out, partials, int(rows), int(T), int(C), norm);
          };
          // by the block's kind only in the forms that run: training's (bf16 dk, dv, x and dx) and the benchmark's
          // references' (all float32); in every form, its three walks took nvcc 89 s for this file against 37
          if constexpr (std::is_same_v<Kv, In> && std::is_same_v<In, OutDx>) {
            if (heads.headPerBlock()) return run(std::true_type{});
          }
          run(std::false_type{});
        });
      };
      if (dxBf16) launch(static_cast<__nv_bfloat16*>(dx));
      else launch(static_cast<float*>(dx));
    });
  });
  launchCanonConvGradWSum(s, partials, dw, grid.y, C, dwAcc);
  const cudaError_t e = cudaGetLastError();
  return e != cudaSuccess ? e : launchSumPartialPairs(s, lambdaPartials, int(grid.x * grid.y), dlambdas, dlambdas + 1, lambdasAcc);
}

TSGPT_LAUNCHER(canonAttentionInputs, launchCanonAttentionInputs, "x", "xBf16", "w", "docIds", "cos", "sin", "lambdas", "ve", "q", "k", "v",
               "outBf16", "B", "T", "H", "Hk", "h", "qkNorm", "eps");
TSGPT_LAUNCHER(canonAttentionInputsGrad, launchCanonAttentionInputsGrad, "dq", "dk", "dv", "kvBf16", "x", "xBf16", "w", "docIds", "cos",
               "sin", "lambdas", "ve", "dx", "dxBf16", "dw", "dwAcc", "dlambdas", "dve", "veAcc", "lambdasAcc", "partials", "B", "T", "H", "Hk",
               "h", "qkNorm", "eps");

}  // namespace tsgpt
