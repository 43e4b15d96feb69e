// Muon's blocks between their parameters and the stacked batches that are orthogonalised (train_gpt.ts's
// gatherBlocks(), momentumBlocks() and applyBlockUpdates()), for any number of parameters in one launch:
//   gather:   stacked[b] = the block b of its parameter, turned wide (q, k and v are column blocks of one [d, 3d]
//             parameter; the MLP's [4d, d] projection and the gates' [12, h] are tall and transposed)
//   momentum: buf' = μ·buf + (1−μ)·g and the Nesterov update (1−μ)·g + μ·buf' of each block's values (g and buf' rounded
//             to bf16 for a bf16 parameter), buf' written in place of the parameter's layout, the update gathered
//   apply:    p'[block] = p[block] + rate·stacked[b]ᵀ?, the update turned back, then rounded to bf16 for a bf16 parameter
// The composites are Slice, Transpose, Pack (gather), MuonMomentum and RoundBf16 a parameter (momentum) and Unpack,
// Transpose, Concat, ScaledAdd, RoundBf16 (apply): a kernel launch per tensor, the transposes by the generic strided
// copy. Here one launch walks 32×32 tiles of every
// block, through shared memory where the block is transposed, so that both sides' loads and stores are coalesced.
// Each value is copied exactly, and the momentum and p + rate·u are the composites' float32 roundings (no FMA
// contraction): the results equal the composites' bit for bit.
#include "muon_blocks.h"

#include <algorithm>

#include "../../native/launch.h"
#include "../../native/vec.cuh"

namespace tsgpt {
namespace {

constexpr int kTile = 32;        // a tile is 32 × 32 values of a block, seen wide
constexpr int kTileRows = 8;     // 256 threads: 32 columns × 8 rows, 4 rows each
constexpr int kMaxBlocks = 56;   // blocks a launch (the table is a kernel parameter: under the 4 KB limit)
constexpr int kTall = 1, kRound = 2;

enum class Mode { kGather, kMomentum, kApply };

struct Block {
  const float* param;   // the parameter [rows, cols] (gather: the source; momentum: the gradient; apply: p)
  const float* buf;     // momentum: the momentum buffer [rows, cols]
  float* out;           // momentum: buf' [rows, cols]; apply: p' [rows, cols]
  float* stacked;       // the block's wide [r, c] slot of the stacked tensor
  int rows, cols, col, width;
  float rate;           // apply: the scale of the update (float32, as tfjs stores a scalar)
  int flags;            // kTall, kRound (apply: p'; momentum: g and buf')
  int firstTile;        // this launch's tiles before this block's
};
struct BlockTable {
  Block blocks[kMaxBlocks];
  int count;
  float mu, oneMinusMu;  // momentum
};
static_assert(sizeof(BlockTable) <= 4000, "the table must fit in a kernel's 4 KB of parameters");

__device__ __forceinline__ int wideRows(const Block& b) { return (b.flags & kTall) ? b.width : b.rows; }
__device__ __forceinline__ int wideCols(const Block& b) { return (b.flags & kTall) ? b.rows : b.width; }

// Tile blockIdx.x of the launch: its block (the last whose firstTile ≤ it) and the tile's wide origin (i0, j0).
__device__ __forceinline__ const Block& tileOf(const BlockTable& t, int& i0, int& j0) {
  int b = 0;
  while (b + 1 < t.count && t.blocks[b + 1].firstTile <= int(blockIdx.x)) ++b;
  const Block& blk = t.blocks[b];
  const int local = int(blockIdx.x) - blk.firstTile, tilesAcross = (wideCols(blk) + kTile - 1) / kTile;
  i0 = (local / tilesAcross) * kTile;
  j0 = (local % tilesAcross) * kTile;
  return blk;
}

__device__ __forceinline__ float applied(const Block& b, float p, float u) {
  const float v = __fadd_rn(p, __fmul_rn(b.rate, u));  // ScaledAdd's 1·p + rate·u: 1·p is p
  return (b.flags & kRound) ? roundedToBf16(v) : v;
}

// Muon's momentum of one value at the parameter's index `at` (MuonMomentum's operations): buf' stored, the Nesterov
// update returned.
__device__ __forceinline__ float momentum(const BlockTable& t, const Block& b, int64_t at) {
  const bool round = b.flags & kRound;
  const float g = round ? roundedToBf16(b.param[at]) : b.param[at], scaledG = __fmul_rn(g, t.oneMinusMu);
  const float next = __fadd_rn(__fmul_rn(b.buf[at], t.mu), scaledG);
  b.out[at] = round ? roundedToBf16(next) : next;
  return __fadd_rn(scaledG, __fmul_rn(next, t.mu));  // from the unrounded buf'
}

template <Mode kMode>
__global__ void __launch_bounds__(kTile * kTileRows) muonBlocksKernel(const __grid_constant__ BlockTable table) {
  __shared__ float tile[kTile][kTile + 1];
  int i0, j0;
  const Block& b = tileOf(table, i0, j0);
  const int r = wideRows(b), c = wideCols(b), tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const int64_t ld = b.cols;
  if (!(b.flags & kTall)) {
    // wide (i, j) is the parameter's (i, col + j): both sides contiguous along j
    const int j = j0 + tx;
    if (j >= c) return;
    for (int k = ty; k < kTile; k += kTileRows) {
      const int i = i0 + k;
      if (i >= r) break;
      const int64_t at = i * ld + b.col + j, slot = int64_t(i) * c + j;
      if constexpr (kMode == Mode::kApply) b.out[at] = applied(b, b.param[at], b.stacked[slot]);
      else if constexpr (kMode == Mode::kMomentum) b.stacked[slot] = momentum(table, b, at);
      else b.stacked[slot] = b.param[at];
    }
    return;
  }
  // tall: wide (i, j) is the parameter's (j, col + i), contiguous along i there and along j in the stacked slot
  if constexpr (kMode != Mode::kApply) {
    for (int k = ty; k < kTile; k += kTileRows) {  // tile[j − j0][i − i0], read along the parameter's rows
      const int i = i0 + tx, j = j0 + k;
      if (i < r && j < c) {
        const int64_t at = j * ld + b.col + i;
        tile[k][tx] = kMode == Mode::kMomentum ? momentum(table, b, at) : b.param[at];
      }
    }
    __syncthreads();
    for (int k = ty; k < kTile; k += kTileRows) {
      const int i = i0 + k, j = j0 + tx;
      if (i < r && j < c) b.stacked[int64_t(i) * c + j] = tile[tx][k];
    }
  } else {
    for (int k = ty; k < kTile; k += kTileRows) {  // tile[i − i0][j − j0], read along the stacked rows
      const int i = i0 + k, j = j0 + tx;
      if (i < r && j < c) tile[k][tx] = b.stacked[int64_t(i) * c + j];
    }
    __syncthreads();
    for (int k = ty; k < kTile; k += kTileRows) {
      const int i = i0 + tx, j = j0 + k;
      if (i < r && j < c) {
        const int64_t at = j * ld + b.col + i;
        b.out[at] = applied(b, b.param[at], tile[tx][k]);
      }
    }
  }
}

// The table's rows (fields numbers each) as Blocks, kMaxBlocks to a launch.
template <Mode kMode>
cudaError_t launchBlocks(cudaStream_t s, NumberTable rows, int fields, double mu = 0) {
  if (rows.size % fields != 0) return cudaErrorInvalidValue;
  const int64_t n = rows.size / fields;
  for (int64_t first = 0; first < n; first += kMaxBlocks) {
    BlockTable t{};
    t.count = int(std::min<int64_t>(kMaxBlocks, n - first));
    t.mu = float(mu);
    t.oneMinusMu = float(1 - mu);  // in double, then rounded: as tfjs rounds the composite's scalar
    int64_t tiles = 0;
    for (int k = 0; k < t.count; ++k) {
      const double* f = rows.values + (first + k) * fields;
      Block& b = t.blocks[k];
      b.param = reinterpret_cast<const float*>(uintptr_t(f[0]));
      b.rows = int(f[1]);
      b.cols = int(f[2]);
      b.col = int(f[3]);
      b.width = int(f[4]);
      b.stacked = reinterpret_cast<float*>(uintptr_t(f[5]));
      b.flags = b.rows > b.width ? kTall : 0;
      if (kMode == Mode::kApply) {
        b.out = reinterpret_cast<float*>(uintptr_t(f[6]));
        b.rate = float(f[7]);
        if (f[8] != 0) b.flags |= kRound;
      } else if (kMode == Mode::kMomentum) {
        b.buf = reinterpret_cast<const float*>(uintptr_t(f[6]));
        b.out = reinterpret_cast<float*>(uintptr_t(f[7]));
        if (f[8] != 0) b.flags |= kRound;
      }
      if (b.rows <= 0 || b.width <= 0 || b.col < 0 || b.col + b.width > b.cols) return cudaErrorInvalidValue;
      b.firstTile = int(tiles);
      const int64_t r = b.flags & kTall ? b.width : b.rows, c = b.flags & kTall ? b.rows : b.width;
      tiles += ((r + kTile - 1) / kTile) * ((c + kTile - 1) / kTile);
    }
    if (tiles > INT32_MAX) return cudaErrorInvalidValue;
    muonBlocksKernel<kMode><<<unsigned(tiles), kTile * kTileRows, 0, s>>>(t);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace

cudaError_t launchMuonGather(cudaStream_t s, NumberTable table) { return launchBlocks<Mode::kGather>(s, table, kMuonGatherFields); }
cudaError_t launchMuonMomentumGather(cudaStream_t s, NumberTable table, double momentum) {
  return launchBlocks<Mode::kMomentum>(s, table, kMuonMomentumFields, momentum);
}
cudaError_t launchMuonApply(cudaStream_t s, NumberTable table) { return launchBlocks<Mode::kApply>(s, table, kMuonApplyFields); }

TSGPT_LAUNCHER(muonGather, launchMuonGather, "table");
TSGPT_LAUNCHER(muonMomentumGather, launchMuonMomentumGather, "table", "momentum");
TSGPT_LAUNCHER(muonApply, launchMuonApply, "table");

}  // namespace tsgpt
