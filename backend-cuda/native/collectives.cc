#include "collectives.h"

#include <nccl.h>

#include <cstring>

namespace tsgpt {
namespace {

ncclComm_t gComm = nullptr;
int gCommDevice = -1;

void checkNccl(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return;
  std::string msg = std::string(what) + " failed: " + ncclGetErrorString(r) + " (ncclResult_t " + std::to_string(int(r)) + ")";
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && *last != '\0') msg += ": " + std::string(last);
  throw CudaError(msg);
}

// collective(i) for each buffer with values, inside one ncclGroupStart/End on the open communicator (the group always
// closed, even after a failed call inside it).
template <typename Collective>
void grouped(Device& dev, const std::string& name, const std::vector<int64_t>& count, Collective collective) {
  if (gComm == nullptr) throw CudaError(name + ": no communicator (call ncclInit first)");
  if (gCommDevice != dev.ordinal()) throw CudaError(name + ": the communicator belongs to another device");
  checkNccl(ncclGroupStart(), "ncclGroupStart");
  ncclResult_t first = ncclSuccess;
  for (size_t i = 0; i < count.size() && first == ncclSuccess; ++i)
    if (count[i] != 0) first = collective(i);
  const ncclResult_t end = ncclGroupEnd();
  checkNccl(first, name.c_str());
  checkNccl(end, ("ncclGroupEnd (" + name + ")").c_str());
}

}  // namespace

std::string ncclNewUniqueId() {
  static_assert(sizeof(ncclUniqueId) == kNcclUniqueIdBytes, "NCCL_UNIQUE_ID_BYTES changed");
  ncclUniqueId id;
  checkNccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  return std::string(id.internal, sizeof id.internal);
}

void ncclOpen(Device& dev, const std::string& uniqueId, int worldSize, int rank) {
  if (gComm != nullptr) throw CudaError("ncclCommInitRank: a communicator is already open (call ncclDestroy first)");
  if (uniqueId.size() != sizeof(ncclUniqueId)) throw CudaError("ncclCommInitRank: the unique id must be 128 bytes");
  if (worldSize < 1 || rank < 0 || rank >= worldSize) throw CudaError("ncclCommInitRank: rank outside [0, worldSize)");
  ncclUniqueId id;
  std::memcpy(id.internal, uniqueId.data(), sizeof id.internal);
  check(cudaSetDevice(dev.ordinal()), "ncclCommInitRank (cudaSetDevice)");
  ncclComm_t comm = nullptr;
  checkNccl(ncclCommInitRank(&comm, worldSize, id, rank), "ncclCommInitRank");
  gComm = comm;
  gCommDevice = dev.ordinal();
}

void ncclAllReduceFloat32(Device& dev, const std::vector<const float*>& in, const std::vector<float*>& out,
                          const std::vector<int64_t>& count, bool average) {
  grouped(dev, "ncclAllReduce", count, [&](size_t i) {
    return ncclAllReduce(in[i], out[i], size_t(count[i]), ncclFloat32, average ? ncclAvg : ncclSum, gComm, dev.stream());
  });
}

void ncclAllGatherFloat32(Device& dev, const std::vector<const float*>& in, const std::vector<float*>& out,
                          const std::vector<int64_t>& count) {
  grouped(dev, "ncclAllGather", count, [&](size_t i) {
    return ncclAllGather(in[i], out[i], size_t(count[i]), ncclFloat32, gComm, dev.stream());
  });
}

void ncclClose() {
  if (gComm == nullptr) return;
  ncclComm_t comm = gComm;
  gComm = nullptr;
  gCommDevice = -1;
  const ncclResult_t fin = ncclCommFinalize(comm);  // flushes outstanding collectives
  const ncclResult_t des = ncclCommDestroy(comm);
  checkNccl(fin, "ncclCommFinalize");
  checkNccl(des, "ncclCommDestroy");
}

bool ncclIsOpen() { return gComm != nullptr; }

}  // namespace tsgpt
