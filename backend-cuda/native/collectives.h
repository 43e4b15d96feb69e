// NCCL collectives of the cuda backend (collectives.cc): one communicator per process, on the
// backend's device; collectives enqueue on the backend's stream, so they are ordered with every
// kernel before and after them without extra events.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "device.h"

namespace tsgpt {

constexpr int kNcclUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES

/** ncclGetUniqueId: the bytes rank 0 shares with every rank (needs no device). */
std::string ncclNewUniqueId();
/** ncclCommInitRank on `dev`'s device; throws if a communicator is already open. */
void ncclOpen(Device& dev, const std::string& uniqueId, int worldSize, int rank);
/** Out-of-place float32 all-reduce of each (in[i] → out[i], count[i]) in one ncclGroupStart/End. */
void ncclAllReduceFloat32(Device& dev, const std::vector<const float*>& in, const std::vector<float*>& out,
                          const std::vector<int64_t>& count, bool average);
/** Out-of-place float32 all-gather of each (in[i], count[i] values → out[i], worldSize·count[i], rank r's at r·count[i]),
 * in one ncclGroupStart/End. */
void ncclAllGatherFloat32(Device& dev, const std::vector<const float*>& in, const std::vector<float*>& out,
                          const std::vector<int64_t>& count);
/** ncclCommFinalize + ncclCommDestroy; a no-op without a communicator. */
void ncclClose();
bool ncclIsOpen();

}  // namespace tsgpt
