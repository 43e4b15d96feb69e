// Fused causal attention on bf16 tensor cores (FlashAttention-2: arXiv 2307.08691), forward and
// backward side by side. Same problem, statistics and formulas as the exact fp32 kernels in
// causal_attention.cu (read its header comment first); what changes is how the products are computed:
// - q, k, v and dO arrive in bf16 (the backend keeps bf16 copies, or AttentionInputs writes q, k, v in bf16 only:
//   backend.ts's matmulOperand / makeBf16Output), so a tile is a plain 16-byte cp.async copy into shared memory,
//   double-buffered: the next tile loads while this one is used. The products run on mma.sync.m16n8k16 (bf16 in,
//   fp32 accumulate); m, den, D, p, ds and all accumulators stay fp32, and P and dS are rounded to bf16 only as
//   operands of the next product. o is stored in float32 or, as FlashAttention-3's output is (the model's: record-2025-11.md
//   §5), in bf16; D = dO·O is computed from the bf16 dO the products take and o as stored.
// - Tiles of 64 queries × 64 keys; 4 warps, each owning 16 rows (queries in the forward and dq,
//   keys in dk/dv). Shared-memory rows are padded by 8 bf16 so that ldmatrix reads are free of bank
//   conflicts; ldmatrix.trans gives the operands stored the other way round (V in P·V, K in dS·K, Q
//   and dO in dSᵀ·Q and Pᵀ·dO), so every tile is stored once, row-major.
// - Masks are applied per element only on tiles that the causal edge, the window, a document
//   boundary or T cuts for the warp; a warp skips tiles it cannot see; blocks skip the tiles the
//   fp32 kernels skip. Query blocks run last-first (the long ones start first).
// - Backward: a pre-pass D = dO·O per row (delta), then one kernel by key tiles over the group's query heads and
//   query tiles: dk and dv in registers, dq added to global memory by float4 atomics, or on Hopper by one bulk
//   reduction a row from shared memory (FlashAttention-2's and -3's scheme: dq is not bit-reproducible). dk and dv are
//   stored in bf16 where kvBf16 (FlashAttention-3's, the model's under bf16: their reader, AttentionInputsGrad, takes
//   them so), else float32 (and there with dv's sum so far added: shaped attention's values).
// - On Hopper (built for sm_90a, compute capability 9.0), head dim 128: the products run on wgmma instead, forward and
//   backward (WgmmaProducts, WgmmaGradProducts: the same kernels, blocks, masks and softmax; the tiles in wgmma's
//   swizzled layout), and dq's rows go to global memory by cp.reduce.async.bulk. useWgmma() decides.
// - The exponentials are exp2 of one FMA: the forward keeps softmax's and softmax1's running max in log2 units, the
//   backward scales each column's m by log2(e) once a stage (softpick keeps natural units and its own formulas).
// Register fragment layouts follow the PTX ISA's mma.m16n8k16 section: thread (g = lane/4,
// t = lane%4) holds accumulator rows g and g+8, columns 2t and 2t+1 of each 8-wide n-tile.
#include <cuda_bf16.h>
#include <cstdint>
#include <initializer_list>
#include "causal_attention.cuh"
#include "../../native/activations.cuh"
#include "../../native/async_copy.cuh"
#include "../../native/fast_math.cuh"
#include "../../native/launchers.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

constexpr int kThreads = 128;  // 4 warps
constexpr int kTile = 64;      // queries and keys per tile
using bf16 = __nv_bfloat16;

__device__ __forceinline__ uint32_t packBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // lo in the low half: the lower column
  return *reinterpret_cast<const uint32_t*>(&v);
}

// d += a·b, a 16×16 (row), b 16×8 (col), bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Shared-memory tiles: kTile rows of kHead bf16, row stride kHead + 8 (16-byte rows for ldmatrix;
// the 16-byte skew puts the 8 rows of each 8×8 matrix in distinct banks).
template <int kHead>
struct Tile {
  static constexpr int kStride = kHead + 8;
  static constexpr int kElems = kTile * kStride;
};

// Four 8×8 bf16 matrices from shared memory into the mma fragment layout (ldmatrix.x4: lanes 8i..8i+7
// give the row addresses of matrix i; .trans transposes each matrix).
template <bool kTranspose>
__device__ __forceinline__ void ldmatrix4(uint32_t (&r)[4], const bf16* p) {
  if constexpr (kTranspose)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(sharedAddress(p)));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(sharedAddress(p)));
}

// This lane's row address for a 16×16 block at (row0, col0) of tile `s`: rows 0–15 from lanes 0–15
// at col0, again from lanes 16–31 at col0 + 8.
template <int kHead>
__device__ __forceinline__ const bf16* blockRow(const bf16* s, int row0, int col0) {
  const int lane = threadIdx.x & 31;
  return s + (row0 + (lane & 15)) * Tile<kHead>::kStride + col0 + (lane >> 4) * 8;
}

// The A operand (16×16, row-major: rows row0.., columns col0..) of tile `s`.
template <int kHead>
__device__ __forceinline__ void loadA(uint32_t (&a)[4], const bf16* s, int row0, int col0) {
  ldmatrix4<false>(a, blockRow<kHead>(s, row0, col0));
}

// B operands (16×8) of two n-tiles, n0.. and n0+8.., k0..k0+15, from a tile stored [n][k] (b[0..1]
// for n0, b[2..3] for n0+8): K in Q·Kᵀ, V in dO·Vᵀ, Q in K·Qᵀ, dO in V·dOᵀ.
template <int kHead>
__device__ __forceinline__ void loadB(uint32_t (&b)[4], const bf16* s, int n0, int k0) {
  const int lane = threadIdx.x & 31;
  ldmatrix4<false>(b, s + (n0 + (lane & 7) + (lane >> 4) * 8) * Tile<kHead>::kStride + k0 + ((lane >> 3) & 1) * 8);
}

// The same from a tile stored [k][n] (transposed by ldmatrix): V in P·V, K in dS·K, dO in Pᵀ·dO, Q in dSᵀ·Q.
template <int kHead>
__device__ __forceinline__ void loadBTransposed(uint32_t (&b)[4], const bf16* s, int k0, int n0) {
  ldmatrix4<true>(b, blockRow<kHead>(s, k0, n0));
}

// Starts copying rows [t0, t0 + kTile) of one head of x ([B,T,heads,kHead] bf16) into a tile whose 16-byte chunk c of
// row r sits at element offset(r, c); zeros past T. Each thread copies the same chunk of every kRowsPerPass-th row, so
// that its addresses are one base and constant steps (the loop unrolled: the copies and little else).
template <int kHead, typename Offset>
__device__ __forceinline__ void loadTileAt(bf16* dst, const bf16* x, int64_t row0, int heads, int t0, int T, Offset offset) {
  constexpr int kChunks = kHead / 8;  // 16-byte pieces per row
  constexpr int kRowsPerPass = kThreads / kChunks;
  static_assert(kThreads % kChunks == 0 && kTile % kRowsPerPass == 0, "whole rows a pass");
  const int c = threadIdx.x % kChunks, r0 = threadIdx.x / kChunks;
  const bf16* const first = x + row0 * kHead + c * 8;  // the tile's first row (inside T): a valid address for rows past T
  const int64_t rowStride = (int64_t)heads * kHead;
#pragma unroll
  for (int pass = 0; pass < kTile / kRowsPerPass; pass++) {
    const int r = r0 + pass * kRowsPerPass;
    const bool valid = t0 + r < T;
    copyAsync16(dst + offset(r, c), valid ? first + r * rowStride : first, valid);
  }
}

// The same into a tile of padded rows (Tile<kHead>).
template <int kHead>
__device__ __forceinline__ void loadTile(bf16* dst, const bf16* x, int64_t row0, int heads, int t0, int T) {
  loadTileAt<kHead>(dst, x, row0, heads, t0, T, [](int r, int c) { return r * Tile<kHead>::kStride + c * 8; });
}

// The A operand of a product with a score-shaped accumulator (16 rows × 16 columns 16kk..): the
// accumulator layout of two n-tiles is the A layout (FlashAttention-2 keeps P in registers so).
__device__ __forceinline__ void scoresAsA(uint32_t (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
  a[0] = packBf16(lo[0], lo[1]);
  a[1] = packBf16(lo[2], lo[3]);
  a[2] = packBf16(hi[0], hi[1]);
  a[3] = packBf16(hi[2], hi[3]);
}

// acc[16 rows × kHead] += scores[16 rows × kTile] · tile `s` (stored [k][n], k over the scores' columns).
template <int kHead>
__device__ __forceinline__ void accumulate(float (&acc)[kHead / 8][4], const float (&scores)[kTile / 8][4], const bf16* s) {
#pragma unroll
  for (int kk = 0; kk < kTile / 16; kk++) {
    uint32_t a[4];
    scoresAsA(a, scores[2 * kk], scores[2 * kk + 1]);
#pragma unroll
    for (int n = 0; n < kHead / 16; n++) {
      uint32_t b[4];
      loadBTransposed<kHead>(b, s, kk * 16, n * 16);
      mma(acc[2 * n], a, b[0], b[1]);
      mma(acc[2 * n + 1], a, b[2], b[3]);
    }
  }
}

// One of this thread's two accumulator rows (r: row g or g + 8), times `mul`, to a row of kHead floats, or of kHead
// bf16 (the forward's o in bf16: FlashAttention-3's output, record-2025-11.md §5) (plus: a row added first, as an Add
// of it and the product would: dv's sum so far).
template <int kHead, typename Out>
__device__ __forceinline__ void storeRow(Out* dst, const float (&acc)[kHead / 8][4], int r, float mul,
                                         const float* plus = nullptr) {
  const int t4 = threadIdx.x & 3;
#pragma unroll
  for (int n = 0; n < kHead / 8; n++) {
    float2 out = make_float2(acc[n][2 * r] * mul, acc[n][2 * r + 1] * mul);
    if (plus) {
      const float2 sum = *reinterpret_cast<const float2*>(plus + n * 8 + 2 * t4);
      out = make_float2(__fadd_rn(sum.x, out.x), __fadd_rn(sum.y, out.y));
    }
    if constexpr (std::is_same_v<Out, bf16>)
      *reinterpret_cast<uint32_t*>(dst + n * 8 + 2 * t4) = packBf16(out.x, out.y);
    else
      *reinterpret_cast<float2*>(dst + n * 8 + 2 * t4) = out;
  }
}

// scores[16 rows × kTile] = A rows (from `a` fragments or a tile) · tile `s` rows (stored [n][k]).
template <int kHead>
__device__ __forceinline__ void product(float (&out)[kTile / 8][4], const uint32_t (&a)[kHead / 16][4], const bf16* s) {
#pragma unroll
  for (int n = 0; n < kTile / 8; n++) out[n][0] = out[n][1] = out[n][2] = out[n][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < kHead / 16; kk++) {
#pragma unroll
    for (int n = 0; n < kTile / 16; n++) {
      uint32_t b[4];
      loadB<kHead>(b, s, n * 16, kk * 16);
      mma(out[2 * n], a[kk], b[0], b[1]);
      mma(out[2 * n + 1], a[kk], b[2], b[3]);
    }
  }
}

template <int kHead>
__device__ __forceinline__ void loadFragments(uint32_t (&a)[kHead / 16][4], const bf16* s, int row0) {
#pragma unroll
  for (int kk = 0; kk < kHead / 16; kk++) loadA<kHead>(a[kk], s, row0, kk * 16);
}

// The first key tile a query block [q0, ..) needs (tiles are kTile-aligned): the window's first, or later where
// whole tiles lie in earlier documents (a prefix of the range, since document ids never decrease).
__device__ __forceinline__ int firstKeyTile(int q0, int q1, int window, int T, const int* doc) {
  int k0 = max(0, q0 - window + 1) / kTile * kTile;
  while (k0 < q1 && doc[min(k0 + kTile, T) - 1] < doc[q0]) k0 += kTile;
  return k0;
}

// Whether the 16 rows [r0, r0 + 16) of a warp see every (row, column) pair of the 16 × kTile (or
// kTile × 16 for dk/dv) block of queries [i0, i1] × keys [j0, j1]: no mask needed.
// docJ0, docI1: the documents of key j0 and query i1 (positions past T: the last token's).
__device__ __forceinline__ bool allVisible(int i0, int i1, int j0, int j1, int T, int window, int docJ0, int docI1) {
  return i1 < T && j1 <= i0 && i1 - j0 < window && docJ0 == docI1;  // docs nondecreasing
}
__device__ __forceinline__ bool allVisible(int i0, int i1, int j0, int j1, int T, int window, const int* doc) {
  return allVisible(i0, i1, j0, j1, T, window, doc[min(j0, T - 1)], doc[min(i1, T - 1)]);
}
// Whether no pair is visible (the warp skips the tile). docJ1, docI0: the documents of key j1 and query i0.
__device__ __forceinline__ bool noneVisible(int i0, int i1, int j0, int j1, int T, int window, int docJ1, int docI0) {
  return i0 >= T || j0 >= T || j0 > i1 || i0 - j1 >= window || docJ1 < docI0;
}
__device__ __forceinline__ bool noneVisible(int i0, int i1, int j0, int j1, int T, int window, const int* doc) {
  return noneVisible(i0, i1, j0, j1, T, window, doc[min(j1, T - 1)], doc[min(i0, T - 1)]);
}

// ---- forward ----
// What both forward kernels (mma.sync below, wgmma on Hopper after it) do per key tile and at the end, for one warp's
// 16 query rows: FlashAttention's online softmax over the tile's scores and the rows' output and statistics.
struct ForwardRows {
  int rows[2], rowDoc[2];  // this thread's two rows (g, g + 8) and their documents
  float m[2], l[2];        // running max and this thread's share of the running sum
  int argmax[2];           // softpick: the first key at the running max
};

template <int kScore>
__device__ __forceinline__ ForwardRows forwardRows(int w0, int T, const int* doc) {
  const int g = (threadIdx.x & 31) >> 2;
  ForwardRows f;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    f.rows[r] = w0 + g + 8 * r;
    f.rowDoc[r] = doc[min(f.rows[r], T - 1)];
    f.m[r] = initialMax<kScore>();
    f.l[r] = 0.f;
    f.argmax[r] = -1;
  }
  return f;
}

// The forward's running max is kept in the exponent's units: log2 units for softmax and softmax1 (a score times
// scale·log2(e), then exp2: one FMA and one MUFU a score), natural ones for softpick (its floor −60 and e^(−m) are).
template <int kScore>
__device__ __forceinline__ float scoreUnits(const Dims& dm) { return kScore == kScoreSoftpick ? dm.scale : dm.scale * kLog2e; }
template <int kScore>
__device__ __forceinline__ float expInUnits(float x) { return kScore == kScoreSoftpick ? __expf(x) : fastExp2(x); }

// Raw scores s (q·k) of keys [k0, k0 + kTile) (k1 = min(k0 + kTile, T)) → unnormalised probabilities, the rows' max
// and sum updated and acc rescaled to the new max. kMasked: some pair of the warp's block is hidden (each tested).
template <int kScore, int kHead, bool kMasked>
__device__ __forceinline__ void softmaxStep(ForwardRows& f, float (&s)[kTile / 8][4], float (&acc)[kHead / 8][4], int k0,
                                            int k1, const Dims& dm, const int* doc) {
  const int t4 = threadIdx.x & 3;
  const float units = scoreUnits<kScore>(dm);
  float tileMax[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int n = 0; n < kTile / 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int r = e >> 1;
      if constexpr (kMasked) {
        const int i = f.rows[r], j = k0 + n * 8 + 2 * t4 + (e & 1);
        if (!(j < k1 && j <= i && i - j < dm.window && doc[j] == f.rowDoc[r])) s[n][e] = -INFINITY;  // hidden from here on
      }
      tileMax[r] = fmaxf(tileMax[r], s[n][e]);
    }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    tileMax[r] = fmaxf(tileMax[r], __shfl_xor_sync(kFull, tileMax[r], 1));
    tileMax[r] = fmaxf(tileMax[r], __shfl_xor_sync(kFull, tileMax[r], 2));
    tileMax[r] *= units;  // −∞ stays −∞
    if (kScore == kScoreSoftpick) {  // the first key at a new maximum (shuffles outside the branch)
      int first = INT32_MAX;
#pragma unroll
      for (int n = 0; n < kTile / 8; n++)
#pragma unroll
        for (int e = 2 * r; e < 2 * r + 2; e++)
          if (s[n][e] * units == tileMax[r]) first = min(first, k0 + n * 8 + 2 * t4 + (e & 1));
      first = min(first, __shfl_xor_sync(kFull, first, 1));
      first = min(first, __shfl_xor_sync(kFull, first, 2));
      if (tileMax[r] > f.m[r]) f.argmax[r] = first;
    }
  }
  float alpha[2], mRef[2], floorTerm[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const float mNew = fmaxf(f.m[r], tileMax[r]);
    alpha[r] = mNew == f.m[r] ? 1.f : expInUnits<kScore>(f.m[r] - mNew);
    mRef[r] = mNew == -INFINITY ? 0.f : mNew;  // softmax rows that have seen nothing yet
    floorTerm[r] = kScore == kScoreSoftpick ? __expf(-mNew) : 0.f;
    f.m[r] = mNew;
  }
  float partial[2] = {0.f, 0.f};
#pragma unroll
  for (int n = 0; n < kTile / 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int r = e >> 1;
      float p;
      if (kScore == kScoreSoftpick) {
        const float d = s[n][e] == -INFINITY ? 0.f : __expf(fmaf(s[n][e], units, -mRef[r])) - floorTerm[r];
        p = fmaxf(d, 0.f);
        partial[r] += fabsf(d);
      } else {
        p = fastExp2(fmaf(s[n][e], units, -mRef[r]));  // a hidden key: exp2(−∞) = 0
        partial[r] += p;
      }
      s[n][e] = p;
    }
#pragma unroll
  for (int r = 0; r < 2; r++) f.l[r] = f.l[r] * alpha[r] + partial[r];  // this thread's columns; summed at the end
#pragma unroll
  for (int n = 0; n < kHead / 8; n++) {
    acc[n][0] *= alpha[0];
    acc[n][1] *= alpha[0];
    acc[n][2] *= alpha[1];
    acc[n][3] *= alpha[1];
  }
}

// A gated row (the gated attention's epilogue): y = o·σ(g) in bf16, from o as stored (rounded where Out is bf16),
// as HeadGate's kernel computes it from that o.
template <int kHead, typename Out>
__device__ __forceinline__ void storeGatedRow(bf16* y, const float (&acc)[kHead / 8][4], int r, float inv, float gate) {
  const int t4 = threadIdx.x & 3;
  const float s = sigmoid(gate);
#pragma unroll
  for (int n = 0; n < kHead / 8; n++) {
    float a = acc[n][2 * r] * inv, b = acc[n][2 * r + 1] * inv;
    if constexpr (std::is_same_v<Out, bf16>) a = roundedToBf16(a), b = roundedToBf16(b);
    *reinterpret_cast<uint32_t*>(y + n * 8 + 2 * t4) = packBf16(a * s, b * s);
  }
}

// The rows' output acc / den and their statistics (m in natural units, den, argmax); where gate is not null, also the
// gated output y = o·σ(gate[row]) (GatedCausalAttention: HeadGate in the epilogue, no pass over o).
template <int kScore, int kHead, typename Out>
__device__ __forceinline__ void storeForwardRows(ForwardRows& f, const float (&acc)[kHead / 8][4], Out* o, float* stats,
                                                 const float* gate, bf16* y, int b, int head, const Dims& dm) {
  const int t4 = threadIdx.x & 3;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    f.l[r] += __shfl_xor_sync(kFull, f.l[r], 1);
    f.l[r] += __shfl_xor_sync(kFull, f.l[r], 2);
    const int i = f.rows[r];
    if (i >= dm.T) continue;
    const float m = f.m[r], l = f.l[r];
    const float den = kScore == kScoreSoftmax1 ? l + expInUnits<kScore>(-m) : kScore == kScoreSoftpick ? l + kSoftpickEps : l;
    const float inv = den > 0.f ? 1.f / den : 0.f;  // den = 0 only for a row that sees no key
    const int64_t row = qRow(dm, b, i, head);
    if (stats != nullptr && t4 == 0) {
      stats[row * kStats] = kScore == kScoreSoftpick ? m : m / kLog2e;
      stats[row * kStats + 1] = den;
      stats[row * kStats + 2] = float(f.argmax[r]);
    }
    storeRow<kHead>(o + row * kHead, acc, r, inv);
    if (gate != nullptr) storeGatedRow<kHead, Out>(y + row * kHead, acc, r, inv, gate[row]);
  }
}

// How a forward block computes its two products, S = Q·Kᵀ and O += P·V; the kernel below is the same for both.
// mma.sync (Ampere and later): tiles of padded rows, every operand through ldmatrix into registers.
struct MmaSyncProducts {
  static constexpr bool kWarpSkip = true;  // a warp may skip a tile its rows cannot see
  template <int kHead>
  __host__ __device__ static constexpr int tileElems() { return Tile<kHead>::kElems; }
  template <int kHead>
  __device__ static void load(bf16* dst, const bf16* x, int64_t row0, int heads, int t0, int T) {
    loadTile<kHead>(dst, x, row0, heads, t0, T);
  }
  template <int kHead>
  __device__ static void queryFragments(uint32_t (&qf)[kHead / 16][4], const bf16* sQ, int warp) {
    loadFragments<kHead>(qf, sQ, warp * 16);
  }
  __device__ static void tileLanded() {}
  template <int kHead>
  __device__ static void scores(float (&s)[kTile / 8][4], const uint32_t (&qf)[kHead / 16][4], const bf16* sK) {
    product<kHead>(s, qf, sK);
  }
  template <int kHead>
  __device__ static void accumulateValues(float (&acc)[kHead / 8][4], const float (&p)[kTile / 8][4], const bf16* sV) {
    accumulate<kHead>(acc, p, sV);
  }
};

// ---- the products on Hopper (sm_90a): wgmma (FlashAttention-3's instructions, arXiv 2407.08608) ----
// wgmma.mma_async multiplies a 64-row A by a B that the tensor cores read from shared memory themselves (no ldmatrix
// into registers, no B fragments): S = Q·Kᵀ with Q's fragments in registers (the same A layout as mma.sync's, per
// warp) and K as B; O += P·V with P in registers straight from S's accumulator (the wgmma accumulator layout is
// mma.sync's, warp by warp) and V as B stored N-major (the transpose bit: no .trans copy). Tiles are stored in wgmma's
// 128-byte swizzle (below) instead of padded rows; 64 KiB a block as before, so 3 blocks share an SM and one's
// softmax overlaps another's products. Not yet FlashAttention-3's whole design: no TMA, no producer warp, no
// ping-pong between two consumer warpgroups. The instructions are arch-specific: on other targets the helpers below
// are empty and useWgmma() keeps the kernel from being launched.

// A tile's layout in shared memory: kHead / 64 panels of [kTile rows][64 bf16] (128 bytes a row), in each the 16-byte
// chunk c of row r at chunk c ^ (r % 8) (the 128-byte swizzle: 8 consecutive rows' same chunk fall in distinct banks).
// Element offset of chunk `chunk` (0 .. kHead / 8 − 1) of row r. Panels are 1024-byte aligned (the swizzle's period).
__device__ __forceinline__ int swizzled(int r, int chunk) {
  return (chunk >> 3) * (kTile * 64) + r * 64 + (((chunk & 7) ^ (r & 7)) << 3);
}

// A shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"): start address, leading and stride byte
// offsets (each ÷ 16), 128-byte swizzle. K-major (K in Q·Kᵀ): rows 128 bytes apart, 8-row groups `stride` = 1024 bytes
// apart, the leading offset unused. N-major (V in P·V): 64 columns a panel, panels `leading` bytes apart, 8-row (8-key)
// groups `stride` = 1024 bytes apart.
__device__ __forceinline__ uint64_t matrixDescriptor(const bf16* p, uint32_t leading, uint32_t stride) {
  return uint64_t((sharedAddress(p) & 0x3FFFF) >> 4) | uint64_t(leading >> 4) << 16 | uint64_t(stride >> 4) << 32 |
         uint64_t(1) << 62;
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TSGPT_SM90A(statement) statement
#else
#define TSGPT_SM90A(statement)
#endif
// Orders this warpgroup's register accesses before the wgmma that follows (accumulators or A fragments written since).
__device__ __forceinline__ void wgmmaFence() { TSGPT_SM90A(asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory")); }
__device__ __forceinline__ void wgmmaCommit() { TSGPT_SM90A(asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory")); }
__device__ __forceinline__ void wgmmaWait() { TSGPT_SM90A(asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory")); }
// Makes this thread's shared-memory writes (cp.async, generic proxy) visible to the tensor cores' reads (async proxy).
__device__ __forceinline__ void fenceProxyAsync() { TSGPT_SM90A(asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory")); }

// The accumulator's registers in the instruction text: 32 (n64) or 64 (n128) operands from %0.
#define TSGPT_D32 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
                  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define TSGPT_D64 TSGPT_D32 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
                  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define TSGPT_ACC8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
                      "+f"(d[i + 6]), "+f"(d[i + 7])
// d (64 × kN fp32, accumulator layout) = (accumulate ? d : 0) + a (64 × 16 bf16, registers) · B (16 × kN bf16, shared
// memory by descriptor; kNMajor: stored N-major, the transpose bit). Asynchronous: commit, then wait before reading d.
template <int kN, int kNMajor>
__device__ __forceinline__ void wgmma(float (&d)[kN / 2], const uint32_t (&a)[4], uint64_t b, bool accumulate) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (kN == 64)
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
        TSGPT_D32 "},"
        " {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
        : TSGPT_ACC8(0), TSGPT_ACC8(8), TSGPT_ACC8(16), TSGPT_ACC8(24)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(int(accumulate)), "n"(kNMajor));
  else
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
        TSGPT_D64 "},"
        " {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
        : TSGPT_ACC8(0), TSGPT_ACC8(8), TSGPT_ACC8(16), TSGPT_ACC8(24), TSGPT_ACC8(32), TSGPT_ACC8(40), TSGPT_ACC8(48),
          TSGPT_ACC8(56)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(int(accumulate)), "n"(kNMajor));
#endif
}
// The same with A from shared memory by descriptor too, K-major (A's transpose bit clear).
template <int kN, int kNMajor>
__device__ __forceinline__ void wgmma(float (&d)[kN / 2], uint64_t a, uint64_t b, bool accumulate) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (kN == 64)
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
        TSGPT_D32 "},"
        " %32, %33, p, 1, 1, 0, %35;\n}\n"
        : TSGPT_ACC8(0), TSGPT_ACC8(8), TSGPT_ACC8(16), TSGPT_ACC8(24)
        : "l"(a), "l"(b), "r"(int(accumulate)), "n"(kNMajor));
  else
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
        TSGPT_D64 "},"
        " %64, %65, p, 1, 1, 0, %67;\n}\n"
        : TSGPT_ACC8(0), TSGPT_ACC8(8), TSGPT_ACC8(16), TSGPT_ACC8(24), TSGPT_ACC8(32), TSGPT_ACC8(40), TSGPT_ACC8(48),
          TSGPT_ACC8(56)
        : "l"(a), "l"(b), "r"(int(accumulate)), "n"(kNMajor));
#endif
}
#undef TSGPT_ACC8
#undef TSGPT_D32
#undef TSGPT_D64

// Four 8×8 bf16 matrices from registers (mma fragments: lane l holds row l / 4, columns 2(l % 4) and 2(l % 4) + 1) to
// shared memory, each transposed: lanes 8i..8i+7 give the addresses of matrix i's stored rows 0..7, stored row r holding
// the fragment's column r (stmatrix.trans, sm_90).
__device__ __forceinline__ void stmatrix4Transposed(bf16* p, const uint32_t (&r)[4]) {
  TSGPT_SM90A(asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n"
                           ::"r"(sharedAddress(p)), "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3]) : "memory"));
}
// dst[0 .. bytes/4) += src[...] (global += shared, f32), by the copy engine; completes asynchronously in this thread's bulk
// group (the backward's dq rows: one instruction a row instead of a thread's 16 atomics). 16-byte aligned, bytes % 16 = 0.
__device__ __forceinline__ void reduceAddBulk(float* dst, const float* src, uint32_t bytes) {
  TSGPT_SM90A(asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n"
                           ::"l"(dst), "r"(sharedAddress(src)), "r"(bytes) : "memory"));
  TSGPT_SM90A(asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"));
}
// Waits until this thread's bulk reductions have read their shared memory (it may be written again) / have completed.
__device__ __forceinline__ void waitBulkReads() { TSGPT_SM90A(asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory")); }
__device__ __forceinline__ void waitBulk() { TSGPT_SM90A(asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory")); }
#undef TSGPT_SM90A

template <int kRows, int kCols>
__device__ __forceinline__ float (&flat(float (&x)[kRows][kCols]))[kRows * kCols] {
  return reinterpret_cast<float(&)[kRows * kCols]>(x);
}

// Pins registers in place (CUTLASS's warpgroup_fence_operand): the compiler may not move their reads above a
// wgmmaWait() before it, where the accumulator is still being written.
template <int kRows, int kCols>
__device__ __forceinline__ void pinRegisters(float (&x)[kRows][kCols]) {
#pragma unroll
  for (int i = 0; i < kRows; i++)
#pragma unroll
    for (int j = 0; j < kCols; j++) asm volatile("" : "+f"(x[i][j])::"memory");
}

struct WgmmaProducts {
  static constexpr bool kWarpSkip = false;  // wgmma is warpgroup-wide: a warp that sees none of a tile still takes part
  template <int kHead>
  __host__ __device__ static constexpr int tileElems() { return kTile * kHead; }
  template <int kHead>
  __device__ static void load(bf16* dst, const bf16* x, int64_t row0, int heads, int t0, int T) {
    loadTileAt<kHead>(dst, x, row0, heads, t0, T, swizzled);
  }
  template <int kHead>  // Q's A fragments: rows warp·16 + (lane % 16), chunks 2kk + lane / 16
  __device__ static void queryFragments(uint32_t (&qf)[kHead / 16][4], const bf16* sQ, int warp) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int kk = 0; kk < kHead / 16; kk++) ldmatrix4<false>(qf[kk], sQ + swizzled(warp * 16 + (lane & 15), 2 * kk + (lane >> 4)));
  }
  __device__ static void tileLanded() { fenceProxyAsync(); }  // this thread's copies, seen by wgmma after the barrier
  template <int kHead>
  __device__ static void scores(float (&s)[kTile / 8][4], const uint32_t (&qf)[kHead / 16][4], const bf16* sK) {
    wgmmaFence();
#pragma unroll
    for (int kk = 0; kk < kHead / 16; kk++)  // K-major B: 16 columns (32 bytes) a step within a 64-column panel
      wgmma<kTile, 0>(flat(s), qf[kk], matrixDescriptor(sK + swizzled(0, 2 * kk), 16, 1024), kk > 0);
    wgmmaCommit();
    wgmmaWait();
    pinRegisters(s);
  }
  template <int kHead>
  __device__ static void accumulateValues(float (&acc)[kHead / 8][4], const float (&p)[kTile / 8][4], const bf16* sV) {
    uint32_t a[kTile / 16][4];
#pragma unroll
    for (int kk = 0; kk < kTile / 16; kk++) scoresAsA(a[kk], p[2 * kk], p[2 * kk + 1]);
    wgmmaFence();
#pragma unroll
    for (int kk = 0; kk < kTile / 16; kk++)  // N-major B: 16 keys (rows) a step, 64-column panels kTile·128 bytes apart
      wgmma<kHead, 1>(flat(acc), a[kk], matrixDescriptor(sV + kk * 16 * 64, kTile * 128, 1024), true);
    wgmmaCommit();
    wgmmaWait();
    pinRegisters(acc);
  }
};

// The forward: a block of kTile queries of one head, 4 warps of 16 rows, over the key tiles its rows can see.
// Shared memory: two stages of (K, V) tiles; Q passes through stage 1 into registers before the loop. 3 blocks per SM
// (≤ 168 registers): mma.sync ran 20 % faster than at 2 blocks and 189 registers on an H100; wgmma 14 % faster than at
// 2 blocks and 174 registers on an H200, although ptxas serialises its wgmma instructions at 168 (C7512). 1024-byte
// alignment: the swizzle's period.
template <int kScore, int kHead, typename Products, typename Out>
__global__ void __launch_bounds__(kThreads, 3)
forwardKernel(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
              const int* __restrict__ docIds, Out* __restrict__ o, float* __restrict__ stats,
              const float* __restrict__ gate, bf16* __restrict__ y, Dims dm) {
  extern __shared__ __align__(1024) unsigned char forwardTiles[];
  bf16* const tiles = reinterpret_cast<bf16*>(forwardTiles);
  constexpr int kElems = Products::template tileElems<kHead>();
  const auto sK = [&](int stage) { return tiles + (2 * stage) * kElems; };
  const auto sV = [&](int stage) { return tiles + (2 * stage + 1) * kElems; };
  const int b = blockIdx.z, head = blockIdx.y, q0 = (gridDim.x - 1 - blockIdx.x) * kTile;
  const int kvHead = head / (dm.H / dm.Hk), T = dm.T;
  const int warp = threadIdx.x >> 5;
  const int* doc = docIds + (int64_t)b * T;
  const int q1 = min(q0 + kTile, T), w0 = q0 + warp * 16;  // the warp's rows: w0..w0+15
  const int kBegin = firstKeyTile(q0, q1, dm.window, T, doc);
  const auto loadKeys = [&](int k0, int stage) {
    Products::template load<kHead>(sK(stage), k, kRow(dm, b, k0, kvHead), dm.Hk, k0, T);
    Products::template load<kHead>(sV(stage), v, kRow(dm, b, k0, kvHead), dm.Hk, k0, T);
  };

  Products::template load<kHead>(sK(1), q, qRow(dm, b, q0, head), dm.H, q0, T);
  commitAsync();
  if (kBegin < q1) loadKeys(kBegin, 0);
  commitAsync();
  waitAsync<1>();  // Q has landed (the first key tile may still be in flight)
  __syncthreads();
  uint32_t qf[kHead / 16][4];
  Products::template queryFragments<kHead>(qf, sK(1), warp);

  ForwardRows f = forwardRows<kScore>(w0, T, doc);
  float acc[kHead / 8][4];
#pragma unroll
  for (int n = 0; n < kHead / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;

  int stage = 0;
  for (int k0 = kBegin; k0 < q1; k0 += kTile, stage ^= 1) {
    const int k1 = min(k0 + kTile, T);
    __syncthreads();  // every warp is done with the other stage (the previous tile, or Q)
    if (k0 + kTile < q1) loadKeys(k0 + kTile, stage ^ 1);
    commitAsync();
    waitAsync<1>();   // this tile has landed for this thread; the barrier makes that so for all
    Products::tileLanded();
    __syncthreads();
    if (Products::kWarpSkip && noneVisible(w0, w0 + 15, k0, k0 + kTile - 1, T, dm.window, doc)) continue;  // warp-uniform
    const bool full = k1 - k0 == kTile && allVisible(w0, w0 + 15, k0, k0 + kTile - 1, T, dm.window, doc);
    float s[kTile / 8][4];
    Products::template scores<kHead>(s, qf, sK(stage));
    if (full)
      softmaxStep<kScore, kHead, false>(f, s, acc, k0, k1, dm, doc);
    else
      softmaxStep<kScore, kHead, true>(f, s, acc, k0, k1, dm, doc);
    Products::template accumulateValues<kHead>(acc, s, sV(stage));
  }
  storeForwardRows<kScore, kHead>(f, acc, o, stats, gate, y, b, head, dm);
}

// Whether this build holds the wgmma kernels (compiled for sm_90a) and the device runs them (compute capability 9.0),
// asked once per device.
__global__ void wgmmaCompiledKernel(int* out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *out = 1;
#else
  *out = 0;
#endif
}

bool useWgmma() {
  static int cached[64];  // per device: 0 unknown, 1 no, 2 yes
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return false;
  if (cached[device] == 0) {
    cudaDeviceProp prop;
    int answer = 0, *flag = nullptr;
    if (cudaGetDeviceProperties(&prop, device) == cudaSuccess && prop.major == 9 && prop.minor == 0 &&
        cudaMalloc(&flag, sizeof(int)) == cudaSuccess) {
      wgmmaCompiledKernel<<<1, 1>>>(flag);
      if (cudaMemcpy(&answer, flag, sizeof(int), cudaMemcpyDeviceToHost) != cudaSuccess) answer = 0;
      cudaFree(flag);
    }
    cudaGetLastError();  // a failed probe means no
    cached[device] = answer == 1 ? 2 : 1;
  }
  return cached[device] == 2;
}

// ---- backward: D = dO·O per query row (one warp per row), from the bf16 dO the products read and o as the forward
// stored it (bf16: FlashAttention-3's D from its bf16 output) ----
template <int kHead, typename O>
__global__ void __launch_bounds__(kThreads)
rowDotKernel(const bf16* __restrict__ dO, const O* __restrict__ o, float* __restrict__ delta, int64_t rows) {
  const int64_t row = (int64_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  float part = 0.f;
  for (int c = lane * 4; c < kHead; c += 128) {
    float a[4], b[4];
    loadVec<4>(dO + row * kHead + c, a);
    loadVec<4>(o + row * kHead + c, b);
    part += a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3];
  }
  for (int off = 16; off > 0; off >>= 1) part += __shfl_xor_sync(kFull, part, off);
  if (lane == 0) delta[row] = part;
}

// ---- backward: dk, dv and dq, by key tiles over the group's query heads and their query tiles (FlashAttention-2) ----
// Per step (one query tile of one head) the block computes sᵀ and dPᵀ for its keys (each warp 16 rows), adds Pᵀ·dO to dv
// and dSᵀ·Q to dk, and leaves dS in shared memory; then each warp takes 16 of the tile's queries and adds dS·K to their
// dq rows in global memory with atomics (dq zeroed first). The separate dq kernel this replaces recomputed s and
// dP from q, k, v and dO: 7 products a tile pair instead of 5. dq's sums land in whatever order the blocks reach them,
// so dq is not bit-reproducible (FlashAttention-2 and -3 make the same trade); dk and dv are.
// Shared memory: the block's K and V tiles, then two stages of (Q, dO tiles and their rows' m, 1/den, D, argmax and
// document), then the products' dS tile if they keep one apart (GradProducts::kDsElems). A stage's row values arrive by
// cp.async with its tiles, so that no step waits on a global load of its own; 1 KiB-aligned (the tiles' swizzle).
constexpr int kDqStride = 128 + 8;  // floats a row of dq staged for the bulk reduction (WgmmaGradProducts)
template <int kHead, typename Products>
struct GradLayout {
  static constexpr size_t kTileBytes = Products::template tileElems<kHead>() * sizeof(bf16);
  static constexpr size_t kRowBytes = (5 * kTile * sizeof(float) + 1023) / 1024 * 1024;
  static constexpr size_t kStageBytes = 2 * kTileBytes + kRowBytes;
  static constexpr size_t kBytes = 2 * kTileBytes + 2 * kStageBytes + Products::kDsElems * sizeof(bf16);
  static_assert(!Products::kBulkDq || (kHead == 128 && kTile * kDqStride * sizeof(float) <= kStageBytes),
                "the staged dq rows fit in a stage");
};

// This warp's dq rows (queries row0 + g and + 8) += scale · acc (8·kN columns from col0), by atomics. On Hopper, float4
// atomics (compute capability 9.0): lanes t and t ^ 1 of a quad swap halves so that the even one holds 4 columns of row
// g and the odd one the same 4 of row g + 8: a quarter of the scalar atomic operations, which L2 serves one at a time.
template <int kHead, int kN>
__device__ __forceinline__ void addQueryRows(float* dq, const float (&acc)[kN][4], int row0, int col0, int head, int b,
                                             const Dims& dm) {
  const int g = (threadIdx.x & 31) >> 2, t4 = threadIdx.x & 3;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const bool odd = t4 & 1;
  const int i = row0 + g + (odd ? 8 : 0);
  float* const row = dq + qRow(dm, b, min(i, dm.T - 1), head) * kHead + col0 + 2 * (t4 & 2);
#pragma unroll
  for (int n = 0; n < kN; n++) {
    const float give0 = odd ? acc[n][0] : acc[n][2], give1 = odd ? acc[n][1] : acc[n][3];
    const float got0 = __shfl_xor_sync(kFull, give0, 1), got1 = __shfl_xor_sync(kFull, give1, 1);
    const float4 x = odd ? make_float4(got0, got1, acc[n][2], acc[n][3]) : make_float4(acc[n][0], acc[n][1], got0, got1);
    if (i < dm.T)
      atomicAdd(reinterpret_cast<float4*>(row + n * 8), make_float4(x.x * dm.scale, x.y * dm.scale, x.z * dm.scale, x.w * dm.scale));
  }
#else
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int i = row0 + g + 8 * r;
    if (i >= dm.T) continue;
    float* const row = dq + qRow(dm, b, i, head) * kHead + col0 + 2 * t4;
#pragma unroll
    for (int n = 0; n < kN; n++) {  // vector atomics need compute capability 9.0
      atomicAdd(row + n * 8, acc[n][2 * r] * dm.scale);
      atomicAdd(row + n * 8 + 1, acc[n][2 * r + 1] * dm.scale);
    }
  }
#endif
}

// mma.sync: each warp its own 16 keys (it skips a tile its keys cannot see) and, for dq, its own 16 queries. dSᵀ
// overlays the stage's Q tile once every warp is done with it (a separate tile would put two blocks over an SM's
// shared memory); dS is read from it transposed.
constexpr int kScoreStride = kTile + 8;  // dSᵀ rows (keys) of kTile queries, padded as the tiles are

// The A operand (16×16: rows row0.., columns col0..) of a matrix stored the other way round, [col][row] with row
// stride kStride: dS from dSᵀ. The same addresses as loadB, transposed by ldmatrix.
template <int kStride>
__device__ __forceinline__ void loadATransposed(uint32_t (&a)[4], const bf16* s, int row0, int col0) {
  const int lane = threadIdx.x & 31;
  ldmatrix4<true>(a, s + (col0 + (lane & 7) + (lane >> 4) * 8) * kStride + row0 + ((lane >> 3) & 1) * 8);
}

struct MmaSyncGradProducts : MmaSyncProducts {
  static constexpr int kDsElems = 0;
  static constexpr bool kBulkDq = false;  // dq by atomics (queryGrads)
  __device__ static bf16* dsTile(bf16* sQ, bf16*) { return sQ; }
  // sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ for the warp's 16 keys (rows) and the tile's queries (columns).
  template <int kHead>
  __device__ static void keyScores(float (&st)[kTile / 8][4], float (&dpt)[kTile / 8][4], const bf16* sK, const bf16* sV,
                                   const bf16* sQ, const bf16* sDO, int warp) {
#pragma unroll
    for (int n = 0; n < kTile / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) st[n][e] = dpt[n][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kHead / 16; kk++) {
      uint32_t ak[4], av[4];
      loadA<kHead>(ak, sK, warp * 16, kk * 16);
      loadA<kHead>(av, sV, warp * 16, kk * 16);
#pragma unroll
      for (int n = 0; n < kTile / 16; n++) {
        uint32_t bq[4], bo[4];
        loadB<kHead>(bq, sQ, n * 16, kk * 16);
        loadB<kHead>(bo, sDO, n * 16, kk * 16);
        mma(st[2 * n], ak, bq[0], bq[1]);
        mma(st[2 * n + 1], ak, bq[2], bq[3]);
        mma(dpt[2 * n], av, bo[0], bo[1]);
        mma(dpt[2 * n + 1], av, bo[2], bo[3]);
      }
    }
  }
  // dv += Pᵀ·dO and dk += dSᵀ·Q for the warp's keys.
  template <int kHead>
  __device__ static void accumulateKeys(float (&accV)[kHead / 8][4], float (&accK)[kHead / 8][4], const float (&p)[kTile / 8][4],
                                        const float (&ds)[kTile / 8][4], const bf16* sQ, const bf16* sDO) {
    accumulate<kHead>(accV, p, sDO);
    accumulate<kHead>(accK, ds, sQ);
  }
  // dSᵀ (bf16, as the products take it), the warp's 16 rows.
  __device__ static void storeDs(bf16* sDS, const float (&ds)[kTile / 8][4], int warp) {
    const int g = (threadIdx.x & 31) >> 2, t4 = threadIdx.x & 3;
#pragma unroll
    for (int n = 0; n < kTile / 8; n++)
#pragma unroll
      for (int r = 0; r < 2; r++)
        *reinterpret_cast<uint32_t*>(sDS + (warp * 16 + g + 8 * r) * kScoreStride + n * 8 + 2 * t4) =
            packBf16(ds[n][2 * r], ds[n][2 * r + 1]);
  }
  // dS·K for the warp's 16 queries, in two halves of the head dim (fewer live registers), each handed to addRows.
  template <int kHead, typename AddRows>
  __device__ static void queryGrads(const bf16* sDS, const bf16* sK, int warp, bool rowsSee, AddRows addRows) {
    if (!rowsSee) return;  // warp-uniform
    uint32_t af[kTile / 16][4];
#pragma unroll
    for (int kk = 0; kk < kTile / 16; kk++) loadATransposed<kScoreStride>(af[kk], sDS, warp * 16, kk * 16);
#pragma unroll
    for (int part = 0; part < 2; part++) {
      float acc[kHead / 16][4];
#pragma unroll
      for (int n = 0; n < kHead / 16; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < kTile / 16; kk++)
#pragma unroll
        for (int n = 0; n < kHead / 32; n++) {
          uint32_t bk[4];
          loadBTransposed<kHead>(bk, sK, kk * 16, part * (kHead / 2) + n * 16);
          mma(acc[2 * n], af[kk], bk[0], bk[1]);
          mma(acc[2 * n + 1], af[kk], bk[2], bk[3]);
        }
      addRows(acc, part * (kHead / 2));
    }
  }
};

// wgmma (Hopper, FlashAttention-3's instructions): the four warps as one warpgroup, keys as M. Every operand that the
// tensor cores read from shared memory is in a layout the forward already reads: sᵀ and dPᵀ take K and V as K-major A
// and Q and dO as K-major B (the forward's K); dv and dk take Pᵀ and dSᵀ from the accumulators as A in registers and dO
// and Q as N-major B of 128 columns (the forward's V); dq = dS·K takes dS as K-major A from its own tile (stored
// transposed from dSᵀ's accumulator by stmatrix) and K as N-major B. Registers: dk and dv 128 a thread all along,
// sᵀ and dPᵀ 64 or dq's 64 on top.
struct WgmmaGradProducts : WgmmaProducts {
  static constexpr int kDsElems = kTile * kTile;
  // dq by bulk reductions from shared memory (queryGradsToShared): the step's dq rows are written over its stage (Q, dO
  // and the row values, all read by then) in rows of kDqStride floats (136: a warp's float2 stores fill 32 banks twice,
  // no conflict), and one thread a row adds its row to dq in global memory with one cp.reduce.async.bulk. The 16
  // float4 atomics a thread made instead, with their lane swaps, took a fifth of the kernel's stall samples (ncu).
  static constexpr bool kBulkDq = true;
  __device__ static bf16* dsTile(bf16*, bf16* spare) { return spare; }
  template <int kHead>
  __device__ static void keyScores(float (&st)[kTile / 8][4], float (&dpt)[kTile / 8][4], const bf16* sK, const bf16* sV,
                                   const bf16* sQ, const bf16* sDO, int) {
    wgmmaFence();
#pragma unroll
    for (int kk = 0; kk < kHead / 16; kk++)
      wgmma<kTile, 0>(flat(st), matrixDescriptor(sK + swizzled(0, 2 * kk), 16, 1024),
                      matrixDescriptor(sQ + swizzled(0, 2 * kk), 16, 1024), kk > 0);
#pragma unroll
    for (int kk = 0; kk < kHead / 16; kk++)
      wgmma<kTile, 0>(flat(dpt), matrixDescriptor(sV + swizzled(0, 2 * kk), 16, 1024),
                      matrixDescriptor(sDO + swizzled(0, 2 * kk), 16, 1024), kk > 0);
    wgmmaCommit();
    wgmmaWait();
    pinRegisters(st);
    pinRegisters(dpt);
  }
  template <int kHead>
  __device__ static void accumulateKeys(float (&accV)[kHead / 8][4], float (&accK)[kHead / 8][4], const float (&p)[kTile / 8][4],
                                        const float (&ds)[kTile / 8][4], const bf16* sQ, const bf16* sDO) {
    uint32_t ap[kTile / 16][4], ads[kTile / 16][4];
#pragma unroll
    for (int kk = 0; kk < kTile / 16; kk++) {
      scoresAsA(ap[kk], p[2 * kk], p[2 * kk + 1]);
      scoresAsA(ads[kk], ds[2 * kk], ds[2 * kk + 1]);
    }
    wgmmaFence();
#pragma unroll
    for (int kk = 0; kk < kTile / 16; kk++)  // N-major B: 16 queries a step, 64-column panels kTile·128 bytes apart
      wgmma<kHead, 1>(flat(accV), ap[kk], matrixDescriptor(sDO + kk * 16 * 64, kTile * 128, 1024), true);
#pragma unroll
    for (int kk = 0; kk < kTile / 16; kk++)
      wgmma<kHead, 1>(flat(accK), ads[kk], matrixDescriptor(sQ + kk * 16 * 64, kTile * 128, 1024), true);
    wgmmaCommit();
    wgmmaWait();
    pinRegisters(accV);
    pinRegisters(accK);
  }
  // dS = (dSᵀ)ᵀ in bf16, stored [query][key] in the swizzled layout (one 64-key panel): each stmatrix.trans stores
  // the warp's 16 keys of 16 queries.
  __device__ static void storeDs(bf16* sDS, const float (&ds)[kTile / 8][4], int warp) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int j = 0; j < kTile / 16; j++) {
      const uint32_t r[4] = {packBf16(ds[2 * j][0], ds[2 * j][1]), packBf16(ds[2 * j][2], ds[2 * j][3]),
                             packBf16(ds[2 * j + 1][0], ds[2 * j + 1][1]), packBf16(ds[2 * j + 1][2], ds[2 * j + 1][3])};
      // matrix i = lane / 8: queries 16j + 8(i / 2).., keys 16·warp + 8(i % 2)..; this lane's stored row (query) lane % 8
      stmatrix4Transposed(sDS + swizzled(16 * j + 8 * (lane >> 4) + (lane & 7), 2 * warp + ((lane >> 3) & 1)), r);
    }
    fenceProxyAsync();  // seen by the tensor cores after the barrier
  }
  // scale·dS·K, the step's 64 queries × kHead, into rows of kDqStride floats at sDq for gradKernel's bulk reduction.
  template <int kHead>
  __device__ static void queryGradsToShared(const bf16* sDS, const bf16* sK, float* sDq, int warp, float scale) {
    float acc[kHead / 8][4];
    wgmmaFence();
#pragma unroll
    for (int kk = 0; kk < kTile / 16; kk++)  // 16 keys a step: dS K-major, K N-major
      wgmma<kHead, 1>(flat(acc), matrixDescriptor(sDS + swizzled(0, 2 * kk), 16, 1024),
                      matrixDescriptor(sK + kk * 16 * 64, kTile * 128, 1024), kk > 0);
    wgmmaCommit();
    wgmmaWait();
    pinRegisters(acc);
    const int g = (threadIdx.x & 31) >> 2, t4 = threadIdx.x & 3;
#pragma unroll
    for (int n = 0; n < kHead / 8; n++)
#pragma unroll
      for (int r = 0; r < 2; r++)
        *reinterpret_cast<float2*>(sDq + (warp * 16 + g + 8 * r) * kDqStride + n * 8 + 2 * t4) =
            make_float2(acc[n][2 * r] * scale, acc[n][2 * r + 1] * scale);
    fenceProxyAsync();  // read by the copy engine after the barrier
  }
};

// What the backward needs of each query column (the stage's copies of its row statistics): m (times log2(e) for softmax
// and softmax1, as prepareColumns leaves it), 1/den, D = dO·O, the argmax key (softpick) and the document.
struct QueryColumns {
  int q0;  // the tile's first query
  const float *m, *invDen, *D, *argmax;
  const int* doc;
};

// sᵀ and dPᵀ of the warp's keys (rows) and the tile's queries (columns) → P and dS in place. The exponent is one FMA
// from the column's m·log2(e) and dS = P·(dP − D) reuses P (softmax, softmax1; softpick through its own formulas): about
// half the instructions of the general expression, which bound this phase (ncu: 39 % of the kernel's stall samples).
// kMasked: some pair of the warp's block is hidden (the causal edge, the window, a document start, T) or the warp sees
// none of it (seen false): each pair tested, hidden ones 0.
template <int kScore, bool kMasked>
__device__ __forceinline__ void scoreGrads(float (&st)[kTile / 8][4], float (&dpt)[kTile / 8][4], const QueryColumns& qc,
                                           const int (&keys)[2], const int (&keyDoc)[2], int k1, bool seen, const Dims& dm) {
  const int t4 = threadIdx.x & 3;
  const float scaleLog2e = dm.scale * kLog2e;
#pragma unroll
  for (int n = 0; n < kTile / 8; n++) {
    const int c0 = n * 8 + 2 * t4;  // this thread's two columns of the n-tile: c0, c0 + 1
    const float2 m = *reinterpret_cast<const float2*>(qc.m + c0), invDen = *reinterpret_cast<const float2*>(qc.invDen + c0);
    const float2 D = *reinterpret_cast<const float2*>(qc.D + c0);
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int r = e >> 1, odd = e & 1;
      const float mc = odd ? m.y : m.x, ic = odd ? invDen.y : invDen.x, dc = odd ? D.y : D.x;
      float p, ds;
      if constexpr (kScore == kScoreSoftpick) {
        const float s = st[n][e] * dm.scale;
        p = probability<kScore, true>(s, mc, ic);
        ds = scoreGrad<kScore, true>(s, dpt[n][e], mc, ic, dc, float(keys[r]) == qc.argmax[c0 + odd]);
      } else {
        p = fastExp2(fmaf(st[n][e], scaleLog2e, -mc)) * ic;
        ds = p * (dpt[n][e] - dc);
      }
      if constexpr (kMasked) {
        const int i = qc.q0 + c0 + odd, j = keys[r];
        const bool vis = seen && j < k1 && i < dm.T && j <= i && i - j < dm.window && qc.doc[c0 + odd] == keyDoc[r];
        p = vis ? p : 0.f;
        ds = vis ? ds : 0.f;
      }
      st[n][e] = p;
      dpt[n][e] = ds;
    }
  }
}

template <int kScore, int kHead, typename Products>
__global__ void __launch_bounds__(kThreads)
gradKernel(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
           const int* __restrict__ docIds, const bf16* __restrict__ dO, const float* __restrict__ stats,
           const float* __restrict__ delta, float* __restrict__ dq, void* __restrict__ dk, void* __restrict__ dv,
           bool kvBf16, const float* __restrict__ dvAccumulated, Dims dm) {
  using Layout = GradLayout<kHead, Products>;
  extern __shared__ __align__(1024) unsigned char gradTiles[];
  bf16* const sK = reinterpret_cast<bf16*>(gradTiles);
  bf16* const sV = reinterpret_cast<bf16*>(gradTiles + Layout::kTileBytes);
  unsigned char* const stages = gradTiles + 2 * Layout::kTileBytes;
  bf16* const spare = reinterpret_cast<bf16*>(stages + 2 * Layout::kStageBytes);
  const auto sQ = [&](int st) { return reinterpret_cast<bf16*>(stages + st * Layout::kStageBytes); };
  const auto sDO = [&](int st) { return reinterpret_cast<bf16*>(stages + st * Layout::kStageBytes + Layout::kTileBytes); };
  const auto sM = [&](int st) { return reinterpret_cast<float*>(stages + st * Layout::kStageBytes + 2 * Layout::kTileBytes); };
  const auto sInvDen = [&](int st) { return sM(st) + kTile; };
  const auto sD = [&](int st) { return sM(st) + 2 * kTile; };
  const auto sArgmax = [&](int st) { return sM(st) + 3 * kTile; };  // as the statistics hold it: a float
  const auto sDoc = [&](int st) { return reinterpret_cast<int*>(sM(st) + 4 * kTile); };
  const int b = blockIdx.z, kvHead = blockIdx.y, k0 = (gridDim.x - 1 - blockIdx.x) * kTile, T = dm.T;
  const int group = dm.H / dm.Hk;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2;
  const int* doc = docIds + (int64_t)b * T;
  const int k1 = min(k0 + kTile, T), w0 = k0 + warp * 16;  // the warp's keys: w0..w0+15
  const int keys[2] = {w0 + g, w0 + g + 8};
  const int keyDoc[2] = {doc[min(keys[0], T - 1)], doc[min(keys[1], T - 1)]};
  // The documents the step's visibility tests read on the key side, loaded once: the tile's last key, the warp's first
  // and last (the query side's come with each stage)
  const int lastDoc = doc[k1 - 1], warpFirstDoc = doc[min(w0, T - 1)], warpLastDoc = doc[min(w0 + 15, T - 1)];
  // The query tiles that see a key of the tile, per head: from k0 (tile-aligned) while inside the window's reach
  // and not wholly in later documents (a prefix, since document ids never decrease); the same for every head. Each lane
  // tests one tile and a ballot counts the prefix: one round of loads for 32 tiles, not one dependent load a tile.
  const int qEnd = min(T, k1 - 1 + dm.window);
  int queryTiles = 0;
  for (unsigned tilesSeen = kFull; tilesSeen == kFull; queryTiles += __popc(tilesSeen)) {
    const int q = k0 + (queryTiles + lane) * kTile;
    tilesSeen = __ballot_sync(kFull, q < qEnd && doc[min(q, T - 1)] <= lastDoc);
  }
  const int steps = group * queryTiles;  // a step: head kvHead·group + step / queryTiles, query tile step % queryTiles
  const auto loadQueries = [&](int step, int st) {
    const int head = kvHead * group + step / queryTiles, q0 = k0 + (step % queryTiles) * kTile;
    Products::template load<kHead>(sQ(st), q, qRow(dm, b, q0, head), dm.H, q0, T);
    Products::template load<kHead>(sDO(st), dO, qRow(dm, b, q0, head), dm.H, q0, T);
    for (int c = threadIdx.x; c < kTile; c += kThreads) {
      const int i = min(q0 + c, T - 1);
      const int64_t row = qRow(dm, b, i, head);
      copyAsync4(sM(st) + c, stats + row * kStats);
      copyAsync4(sInvDen(st) + c, stats + row * kStats + 1);  // den for now: prepareColumns inverts it
      copyAsync4(sArgmax(st) + c, stats + row * kStats + 2);
      copyAsync4(sD(st) + c, delta + row);
      copyAsync4(sDoc(st) + c, doc + i);
    }
  };
  // 1/den and (softmax, softmax1) m·log2(e) in place, as scoreGrads takes them, by the thread that copied them once its
  // copies have landed (before the barrier that shows them all)
  const auto prepareColumns = [&](int st) {
    for (int c = threadIdx.x; c < kTile; c += kThreads) {
      sInvDen(st)[c] = sInvDen(st)[c] > 0.f ? 1.f / sInvDen(st)[c] : 0.f;
      if (kScore != kScoreSoftpick) sM(st)[c] *= kLog2e;
    }
  };

  Products::template load<kHead>(sK, k, kRow(dm, b, k0, kvHead), dm.Hk, k0, T);
  Products::template load<kHead>(sV, v, kRow(dm, b, k0, kvHead), dm.Hk, k0, T);
  if (steps > 0) loadQueries(0, 0);
  commitAsync();
  float accK[kHead / 8][4], accV[kHead / 8][4];
#pragma unroll
  for (int n = 0; n < kHead / 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) accK[n][e] = accV[n][e] = 0.f;

  int stage = 0;
  for (int step = 0; step < steps; step++, stage ^= 1) {
    const int head = kvHead * group + step / queryTiles, q0 = k0 + (step % queryTiles) * kTile;
    if constexpr (Products::kBulkDq) waitBulkReads();  // the previous step's dq rows, staged over the other stage
    __syncthreads();  // every warp is done with the other stage (its dS too)
    if (step + 1 < steps) loadQueries(step + 1, stage ^ 1);
    commitAsync();
    waitAsync<1>();   // this step's tiles and row values (and, at the first, K and V) have landed
    prepareColumns(stage);
    Products::tileLanded();
    __syncthreads();
    const int qLast = q0 + kTile - 1;
    const int* const qDoc = sDoc(stage);  // the tile's query documents (past T: the last token's)
    if (noneVisible(q0, qLast, k0, k0 + kTile - 1, T, dm.window, lastDoc, qDoc[0])) continue;  // block-uniform
    const bool seen = !noneVisible(q0, qLast, w0, w0 + 15, T, dm.window, warpLastDoc, qDoc[0]);  // warp-uniform
    const bool full = k1 - k0 == kTile && allVisible(q0, qLast, w0, w0 + 15, T, dm.window, warpFirstDoc, qDoc[kTile - 1]);
    // kBulkDq: thread c < kTile reduces query q0 + c's dq row, if inside T and its 16-row group sees a key of the tile
    // (tested here: the stage's documents are overwritten by the staged rows)
    const int group16 = (threadIdx.x & (kTile - 1)) & ~15;
    const bool reducesRow = Products::kBulkDq && threadIdx.x < kTile && q0 + threadIdx.x < T &&
                            !noneVisible(q0 + group16, q0 + group16 + 15, k0, k0 + kTile - 1, T, dm.window, lastDoc, qDoc[group16]);

    // sᵀ and dPᵀ: rows are the warp's keys, columns the tile's queries; then P into st and dS into dpt
    float st[kTile / 8][4], dpt[kTile / 8][4];
    if (Products::kWarpSkip && !seen) {
#pragma unroll
      for (int n = 0; n < kTile / 8; n++) dpt[n][0] = dpt[n][1] = dpt[n][2] = dpt[n][3] = 0.f;
    } else {
      Products::template keyScores<kHead>(st, dpt, sK, sV, sQ(stage), sDO(stage), warp);
      const QueryColumns columns{q0, sM(stage), sInvDen(stage), sD(stage), sArgmax(stage), qDoc};
      if (full)
        scoreGrads<kScore, false>(st, dpt, columns, keys, keyDoc, k1, true, dm);
      else
        scoreGrads<kScore, true>(st, dpt, columns, keys, keyDoc, k1, Products::kWarpSkip || seen, dm);
      Products::template accumulateKeys<kHead>(accV, accK, st, dpt, sQ(stage), sDO(stage));
    }

    // dS, once every warp is done with the Q tile (which it may overlay); zeros for unseen keys
    __syncthreads();
    bf16* const sDS = Products::dsTile(sQ(stage), spare);
    Products::storeDs(sDS, dpt, warp);
    __syncthreads();

    // dq rows of the tile's queries += scale·dS·K
    if constexpr (Products::kBulkDq) {
      Products::template queryGradsToShared<kHead>(sDS, sK, reinterpret_cast<float*>(sQ(stage)), warp, dm.scale);
      __syncthreads();
      if (reducesRow) reduceAddBulk(dq + qRow(dm, b, q0 + threadIdx.x, head) * kHead,
                                    reinterpret_cast<const float*>(sQ(stage)) + threadIdx.x * kDqStride, kHead * sizeof(float));
    } else {
      const int r0 = q0 + warp * 16;  // the warp's 16 queries
      const bool rowsSee = !noneVisible(r0, r0 + 15, k0, k0 + kTile - 1, T, dm.window, lastDoc, qDoc[warp * 16]);  // warp-uniform
      Products::template queryGrads<kHead>(sDS, sK, warp, rowsSee, [&](const auto& acc, int col0) {
        addQueryRows<kHead>(dq, acc, r0, col0, head, b, dm);
      });
    }
  }
  if constexpr (Products::kBulkDq) waitBulk();

#pragma unroll
  for (int r = 0; r < 2; r++) {
    if (keys[r] >= T) continue;
    const int64_t row = kRow(dm, b, keys[r], kvHead);
    if (kvBf16) {  // a uniform branch: FlashAttention-3's dk and dv, bf16 (never with a sum so far: the launcher checks)
      storeRow<kHead>(static_cast<bf16*>(dk) + row * kHead, accK, r, dm.scale);
      storeRow<kHead>(static_cast<bf16*>(dv) + row * kHead, accV, r, 1.f);
    } else {
      storeRow<kHead>(static_cast<float*>(dk) + row * kHead, accK, r, dm.scale);
      storeRow<kHead>(static_cast<float*>(dv) + row * kHead, accV, r, 1.f, dvAccumulated ? dvAccumulated + row * kHead : nullptr);
    }
  }
}

template <int kScore, int kHead, typename Out>
cudaError_t forward(cudaStream_t s, const bf16* q, const bf16* k, const bf16* v, const int* docIds, Out* o,
                    float* stats, const float* gate, bf16* y, const Dims& d) {
  const dim3 grid((d.T + kTile - 1) / kTile, d.H, d.B);
  const auto launch = [&](auto kernel, size_t smem) {
    if (const cudaError_t e = allowSharedMemory(kernel, smem); e != cudaSuccess) return e;
    kernel<<<grid, kThreads, smem, s>>>(q, k, v, docIds, o, stats, gate, y, d);
    return cudaGetLastError();
  };
  // Head dim 128 only: at 64 the wgmma kernel's outputs were wrong on the H200 (relative error 0.8; its one difference
  // is P·V's N = 64, one swizzle panel; a leading byte offset of 0 instead of 8192 did not change it). Not yet found.
  if constexpr (kHead == 128)
    if (useWgmma()) return launch(forwardKernel<kScore, kHead, WgmmaProducts, Out>, 4 * WgmmaProducts::tileElems<kHead>() * sizeof(bf16));
  return launch(forwardKernel<kScore, kHead, MmaSyncProducts, Out>, 4 * MmaSyncProducts::tileElems<kHead>() * sizeof(bf16));
}

template <int kScore, int kHead, typename O>
cudaError_t backward(cudaStream_t s, const bf16* q, const bf16* k, const bf16* v, const int* docIds, const O* o,
                     const bf16* dO16, const float* stats, float* delta, bool deltaReady, float* dq, void* dk, void* dv,
                     bool kvBf16, const float* dvAccumulated, const Dims& d) {
  const int64_t rows = (int64_t)d.B * d.T * d.H;
  if (!deltaReady) {  // else the gate's backward wrote it (launchHeadGateGrad's delta)
    rowDotKernel<kHead, O><<<unsigned((rows + kThreads / 32 - 1) / (kThreads / 32)), kThreads, 0, s>>>(dO16, o, delta, rows);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }

  if (const cudaError_t e = cudaMemsetAsync(dq, 0, sizeof(float) * rows * kHead, s); e != cudaSuccess) return e;  // atomics add into it
  const auto launch = [&](auto kernel, size_t smem) {
    if (const cudaError_t e = allowSharedMemory(kernel, smem); e != cudaSuccess) return e;
    kernel<<<dim3((d.T + kTile - 1) / kTile, d.Hk, d.B), kThreads, smem, s>>>(q, k, v, docIds, dO16, stats, delta, dq, dk, dv,
                                                                          kvBf16, dvAccumulated, d);
    return cudaGetLastError();
  };
  if constexpr (kHead == 128)  // as the forward
    if (useWgmma()) return launch(gradKernel<kScore, kHead, WgmmaGradProducts>, GradLayout<kHead, WgmmaGradProducts>::kBytes);
  return launch(gradKernel<kScore, kHead, MmaSyncGradProducts>, GradLayout<kHead, MmaSyncGradProducts>::kBytes);
}

// Head dims 64 and 128, and every tensor 16-byte aligned (cp.async copies 16 bytes; float4 and float2 stores).
cudaError_t checkSupported(const Dims& d, std::initializer_list<const void*> tensors) {
  if (const cudaError_t e = checkDims(d); e != cudaSuccess) return e;
  if (d.h != 64 && d.h != 128) return cudaErrorInvalidValue;
  for (const void* t : tensors)
    if (reinterpret_cast<uintptr_t>(t) % 16 != 0) return cudaErrorMisalignedAddress;
  return cudaSuccess;
}

}  // namespace

cudaError_t launchAttentionBf16(cudaStream_t s, const void* q, const void* k, const void* v, const int* docIds, void* o,
                                bool oBf16, float* stats, const float* gate, void* y, int B, int T, int H, int Hk, int h,
                                int window, float scale, int score) {
  const Dims d{B, T, H, Hk, h, window < T ? window : T, scale};
  if (B == 0 || T == 0) return cudaSuccess;
  if (const cudaError_t e = checkSupported(d, {q, k, v, o, y}); e != cudaSuccess) return e;
  if ((gate == nullptr) != (y == nullptr)) return cudaErrorInvalidValue;
  const auto *q16 = static_cast<const bf16*>(q), *k16 = static_cast<const bf16*>(k), *v16 = static_cast<const bf16*>(v);
  auto* y16 = static_cast<bf16*>(y);
  cudaError_t result = cudaSuccess;
  byStorage(oBf16, [&](auto* type) {
    auto* out = static_cast<decltype(type)>(o);
    result = d.h == 64
      ? byScore(score, [&](auto c) { return forward<decltype(c)::value, 64>(s, q16, k16, v16, docIds, out, stats, gate, y16, d); })
      : byScore(score, [&](auto c) { return forward<decltype(c)::value, 128>(s, q16, k16, v16, docIds, out, stats, gate, y16, d); });
  });
  return result;
}

cudaError_t launchAttentionGradBf16(cudaStream_t s, const void* q, const void* k, const void* v, const int* docIds,
                                    const void* o, bool oBf16, const void* dO16, const float* stats, float* delta,
                                    bool deltaReady, float* dq, void* dk, void* dv, bool kvBf16,
                                    const float* dvAccumulated, int B, int T, int H, int Hk, int h, int window, float scale,
                                    int score) {
  const Dims d{B, T, H, Hk, h, window < T ? window : T, scale};
  if (B == 0 || T == 0) return cudaSuccess;
  if (const cudaError_t e = checkSupported(d, {q, k, v, o, dO16, dq, dk, dv, dvAccumulated}); e != cudaSuccess) return e;
  if (kvBf16 && dvAccumulated) return cudaErrorInvalidValue;  // a sum of gradients stays float32
  const auto *q16 = static_cast<const bf16*>(q), *k16 = static_cast<const bf16*>(k), *v16 = static_cast<const bf16*>(v);
  const auto* g16 = static_cast<const bf16*>(dO16);
  cudaError_t result = cudaSuccess;
  byInputType(o, oBf16, [&](auto* stored) {
    result = d.h == 64
      ? byScore(score, [&](auto c) {
          return backward<decltype(c)::value, 64>(s, q16, k16, v16, docIds, stored, g16, stats, delta, deltaReady, dq, dk,
                                                  dv, kvBf16, dvAccumulated, d);
        })
      : byScore(score, [&](auto c) {
          return backward<decltype(c)::value, 128>(s, q16, k16, v16, docIds, stored, g16, stats, delta, deltaReady, dq,
                                                   dk, dv, kvBf16, dvAccumulated, d);
        });
  });
  return result;
}

TSGPT_LAUNCHER(attentionBf16, launchAttentionBf16, "q", "k", "v", "docIds", "o", "oBf16", "stats", "gate", "y", "B", "T", "H",
               "Hk", "h", "window", "scale", "score");
TSGPT_LAUNCHER(attentionGradBf16, launchAttentionGradBf16, "q", "k", "v", "docIds", "o", "oBf16", "dO16", "stats", "delta",
               "deltaReady", "dq", "dk", "dv", "kvBf16", "dvAccumulated", "B", "T", "H", "Hk", "h", "window", "scale", "score");

}  // namespace tsgpt
