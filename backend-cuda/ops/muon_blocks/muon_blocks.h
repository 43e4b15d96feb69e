// The Muon blocks' launchers (muon_blocks.cu).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "../../native/launchers.h"

namespace tsgpt {

// A block is the columns [col, col + width) of a float32 parameter [rows, cols], seen wide: transposed where it is tall
// (rows > width), so that Muon orthogonalises every block as an [r, c] matrix with r ≤ c.
// Gather: one row of kMuonGatherFields numbers a block, {source, rows, cols, col, width, stacked}: the block, turned
// wide, is written to `stacked` (its [r, c] slot of the stacked tensor).
// Apply: one row of kMuonApplyFields numbers a block, {p, rows, cols, col, width, stacked, out, rate, roundBf16}:
// out[block] = p[block] + rate·(stacked, turned back), in float32 as tfjs's Multiply and Add round it, then rounded to
// bf16 where roundBf16 ≠ 0. Every block is copied exactly once; out may not be p.
// Momentum: one row of kMuonMomentumFields numbers a block, {g, rows, cols, col, width, stacked, buf, bufOut, roundBf16}:
// buf' = μ·buf + (1−μ)·g into bufOut's block, and the Nesterov update (1−μ)·g + μ·buf' turned wide into `stacked` (g
// and buf' rounded to bf16 where roundBf16 ≠ 0; the update from the unrounded buf'), in MuonMomentum's float32 operations.
constexpr int kMuonGatherFields = 6;
constexpr int kMuonMomentumFields = 9;
constexpr int kMuonApplyFields = 9;
cudaError_t launchMuonGather(cudaStream_t s, NumberTable table);
cudaError_t launchMuonMomentumGather(cudaStream_t s, NumberTable table, double momentum);
cudaError_t launchMuonApply(cudaStream_t s, NumberTable table);

}  // namespace tsgpt
