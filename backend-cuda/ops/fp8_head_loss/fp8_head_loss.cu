// The FP8 head loss's elementwise work on a chunk of logits (ops/fp8_head_loss/kernel.ts's chunk loop): the soft-capped
// cross-entropy's row losses and the gradient dloss/dz quantised to the e5m2 codes the head's two gradient GEMMs read,
// in both layouts.
// - softcapLossGradFp8 (Hopper, rows up to 65,536 columns): one read of the logits. A cluster of 8 CTAs holds a row in
//   registers (a thread's 32 values at most); each value's transcendentals are made once: c = the cap's unit value
//   (ex2, rcp), e = exp(z − ref) (ex2), kept as e·dz/dx; the row's Σ e crosses the cluster through distributed shared
//   memory, and the codes of (e/Σe − one-hot)·dz/dx follow from the registers. The forward and the gradient as two
//   passes (below) read the logits twice and made each transcendental twice (≈ 6 MUFU a value, which bound them).
//   The transposed codes are then a byte transposition of the row-major ones (a row at a time writes them a byte per
//   column). One H200, a 4096 × 50,304 chunk of bf16 logits (bench/head_loss_native.cu): 0.50 ms, the transposition
//   0.12 of it (0.17 in the 64 × 64 byte tiles it had before), against 0.59 for the two passes.
// - Elsewhere (an sm_80 build, longer rows): the cross-entropy's forward (softcap_cross_entropy.cu), then
//   softcapGradFp8: the gradient straight to codes in both layouts from 64×64 tiles, byte for byte the two-op path's
//   (the cross-entropy's gradient stored in bf16, or float32, then fp8_matmul.cu's quantisation).
// The probabilities are e·(1/Σe) in the one-pass kernel and exp(z − lse) in the two passes: the same value to a few
// float32 ulp, so a code next to an e5m2 rounding boundary may differ by one step (bench/head_loss_native.cu counts them).
#include "fp8_head_loss.h"

#include <cuda_bf16.h>

#include <cmath>
#include <type_traits>

#include "../../native/launchers.h"
#include "../../native/vec.cuh"
#include "../fp8_matmul/fp8_codes.cuh"
#include "../softcap_cross_entropy/softcap.cuh"
#include "../softcap_cross_entropy/softcap_cross_entropy.h"

namespace tsgpt {
namespace {

// writeFp8Tiles' source: the gradient of the logits at (r, c … c + 3) over the scale, from the row's target and lse.
template <int kCap, typename In, bool kRoundBf16>
struct SoftcapGradSource {
  using Raw = Packed4<In>;
  const In* logits;
  const int32_t* targets;
  const float* lse;
  int64_t cols;
  float dyw;
  CapParams p;
  Fp8Scale gradScale;
  int32_t target[4];  // the thread's rows'
  SoftcapRow consts[4];
  __device__ void row(int j, int64_t r) {
    target[j] = targets[r];
    consts[j] = softcapRow(lse[r], target[j], cols, dyw, p);
  }
  __device__ Raw load(int, int64_t r, int64_t c) const { return loadPacked4(logits + r * cols + c); }
  __device__ void values(int j, const Raw& raw, int64_t c, float (&v)[4]) const {
    float x[4], d[4];
    widen(raw, x);
#pragma unroll
    for (int k = 0; k < 4; ++k) d[k] = softcapGrad<kCap, false>(x[k], consts[j], p);
    if (static_cast<uint64_t>(target[j] - c) < 4) {  // the target is one of the four: one branch, not a compare a value
#pragma unroll
      for (int k = 0; k < 4; ++k)
        if (c + k == target[j]) d[k] = softcapGrad<kCap, true>(x[k], consts[j], p);
    }
#pragma unroll
    for (int k = 0; k < 4; k += 2) {
      if (kRoundBf16) {  // as the two-op path stores it: two values a conversion
        const float2 pair = __bfloat1622float2(__float22bfloat162_rn(make_float2(d[k], d[k + 1])));
        d[k] = pair.x, d[k + 1] = pair.y;
      }
      v[k] = divided(d[k], gradScale), v[k + 1] = divided(d[k + 1], gradScale);  // the IEEE quotient, as the quantisation's
    }
  }
};

template <int kCap, typename In, bool kRoundBf16>
__global__ void __launch_bounds__(256) softcapGradFp8Kernel(const float* __restrict__ dy, const In* __restrict__ logits,
    const int32_t* __restrict__ targets, const float* __restrict__ lse, int64_t rows, int64_t cols, float w, CapParams p,
    Fp8Scale gradScale, uint8_t* __restrict__ g8, uint8_t* __restrict__ g8t) {
  SoftcapGradSource<kCap, In, kRoundBf16> src{logits, targets, lse, cols, dy[0] * w, p, gradScale};
  writeFp8Tiles<true>(rows, cols, g8, g8t, src);
}

// ---- the one-pass kernel (sm_90: thread block clusters) ----
constexpr int kRowCtas = 8;       // a row's CTAs: one cluster (8, the portable maximum)
constexpr int kRowThreads = 256;  // a CTA's threads (512 and 1024, with fewer values each, were slower: 0.66, 0.91 ms)
constexpr int kRowUnits = 8;      // a thread's units of 4 values at most: 32 values in registers
constexpr int64_t kOnePassMaxCols = int64_t(kRowCtas) * kRowThreads * kRowUnits * 4;  // 65,536

// The cluster's PTX (sm_90): this CTA's rank, a barrier over the cluster's threads in two halves (release: this thread's
// shared-memory writes before the arrive are visible to the other CTAs' reads after their wait; acquire), and a read of
// another CTA's shared float. Never called where __CUDA_ARCH__ < 900 (the launcher checks the kernel's build).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ unsigned clusterRank() {
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
__device__ __forceinline__ void clusterArrive() { asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory"); }
__device__ __forceinline__ void clusterWait() { asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory"); }
__device__ __forceinline__ float clusterShared(const float* p, unsigned rank) {
  uint32_t remote;
  float v;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(p))), "r"(rank));
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
  return v;
}
#else
__device__ __forceinline__ unsigned clusterRank() { __trap(); }
__device__ __forceinline__ void clusterArrive() { __trap(); }
__device__ __forceinline__ void clusterWait() { __trap(); }
__device__ __forceinline__ float clusterShared(const float*, unsigned) { __trap(); }
#endif

// v reduced (kMax: max, else sum) over the cluster's threads, in one order (so every thread of every CTA gets the same
// bits: a fixed tree in each warp, the warps in order, the CTAs in rank order). ctaSlot: this reduction's own shared
// float (a slower CTA may still read the previous reduction's); warpSlots reusable (read before this reduction's
// barrier, which all of the CTA's threads pass).
template <bool kMax>
__device__ __forceinline__ float clusterReduce(float v, float* warpSlots, float* ctaSlot) {
  const auto combine = [](float a, float b) { return kMax ? fmaxf(a, b) : a + b; };
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (threadIdx.x % 32 == 0) warpSlots[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float a = warpSlots[0];
    for (int w = 1; w < kRowThreads / 32; ++w) a = combine(a, warpSlots[w]);
    *ctaSlot = a;
  }
  clusterArrive();
  clusterWait();
  float r = clusterShared(ctaSlot, 0);
  for (unsigned rank = 1; rank < kRowCtas; ++rank) r = combine(r, clusterShared(ctaSlot, rank));
  return r;
}

// A row per cluster of kRowCtas CTAs (blockIdx.x / kRowCtas), each CTA a contiguous span of the row's units of 4
// columns. kFixed: a cap bounding z by scale ≤ 40 is the exponentials' reference (as the forward kernel's); else the
// row's max, one cluster reduction more. rowStats and the codes as the two passes write them (each row's lse and loss;
// g8). (A wave of clusters walking the rows, the next row's loads in flight, was slower: 0.57 against 0.54 ms.)
template <int kCap, bool kFixed, typename In, bool kRoundBf16>
__global__ void __launch_bounds__(kRowThreads) softcapLossGradFp8Kernel(const float* __restrict__ dy, const In* __restrict__ logits,
    const int32_t* __restrict__ targets, float* __restrict__ rowStats, int64_t rows, int64_t cols, float w, CapParams p,
    Fp8Scale gradScale, uint8_t* __restrict__ g8) {
  __shared__ float warpSlots[kRowThreads / 32], ctaSlots[2];  // [max, sum]
  const unsigned rank = clusterRank();
  const int64_t row = blockIdx.x / kRowCtas, units = cols / 4, span = (units + kRowCtas - 1) / kRowCtas;
  const int64_t u0 = rank * span + threadIdx.x, u1 = min(rank * span + span, units);
  const auto inside = [&](int k) { return u0 + int64_t(k) * kRowThreads < u1; };
  const In* xr = logits + row * cols;
  Packed4<In> raw[kRowUnits];
#pragma unroll
  for (int k = 0; k < kRowUnits; ++k)  // every load in flight before the first use
    if (inside(k)) raw[k] = loadPacked4(xr + 4 * (u0 + k * kRowThreads));
  float v[kRowUnits][4];  // the cap's unit values c, then e·h(c) (dz/dx = slope·h(c))
#pragma unroll
  for (int k = 0; k < kRowUnits; ++k) {
    if (!inside(k)) continue;
    float x[4];
    widen(raw[k], x);
#pragma unroll
    for (int j = 0; j < 4; ++j) v[k][j] = capUnit<kCap>(x[j], p);
  }
  float ref = p.scale;  // z = scale·c ≤ scale
  if constexpr (!kFixed) {
    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < kRowUnits; ++k)
      if (inside(k))
#pragma unroll
        for (int j = 0; j < 4; ++j) m = fmaxf(m, p.scale * v[k][j]);
    ref = clusterReduce<true>(m, warpSlots, &ctaSlots[0]);
  }
  const float negRefLog2e = -ref * kLog2e;
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < kRowUnits; ++k) {
    if (!inside(k)) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float e = fastExp2(fmaf(v[k][j], p.scaleLog2e, negRefLog2e));  // exp(z − ref); a NaN z: the sum NaN
      s += e;
      v[k][j] = e * capSlopeUnit<kCap>(v[k][j]);
    }
  }
  const float sum = clusterReduce<false>(s, warpSlots, &ctaSlots[1]);
  clusterArrive();  // this CTA's slots are read no more; it leaves after every CTA has read them (the wait at the end)
  const float lse = ref + logf(sum), invSum = 1.f / sum;
  const int64_t t = targets[row];
  const SoftcapRow rc = softcapRow(lse, t, cols, dy[0] * w, p);  // gSlope NaN for a target outside the row
  const bool inRow = t >= 0 && t < cols;
  const float ct = inRow ? capUnit<kCap>(toFloat(xr[t]), p) : 0.f;
  if (rank == 0 && threadIdx.x == 0) {
    rowStats[row] = lse;
    rowStats[rows + row] = inRow ? lse - p.scale * ct : NAN;  // lse − z_t (scale 1 without a cap: z = x)
  }
  const float scale = rc.gSlope * invSum;
#pragma unroll
  for (int k = 0; k < kRowUnits; ++k) {
    if (!inside(k)) continue;
    const int64_t c = 4 * (u0 + k * kRowThreads);
    float g[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) g[j] = v[k][j] * scale;
    if (static_cast<uint64_t>(t - c) < 4) {  // the target: (e/Σe − 1)·slope·h(c), its e made again from the logit
      const float e = fastExp2(fmaf(ct, p.scaleLog2e, negRefLog2e));
      g[t - c] = (e * invSum - 1.f) * (rc.gSlope * capSlopeUnit<kCap>(ct));
    }
#pragma unroll
    for (int j = 0; j < 4; j += 2) {
      if (kRoundBf16) {  // as the two-op path stores it
        const float2 pair = __bfloat1622float2(__float22bfloat162_rn(make_float2(g[j], g[j + 1])));
        g[j] = pair.x, g[j + 1] = pair.y;
      }
      g[j] = divided(g[j], gradScale), g[j + 1] = divided(g[j + 1], gradScale);
    }
    *reinterpret_cast<uint32_t*>(g8 + row * cols + c) = toFp8x4<true>(g);
  }
  clusterWait();
}

// The transposition of a 4×4 block of bytes: w[k]'s byte j (row k, column j) becomes out[j]'s byte k.
__device__ __forceinline__ void transposeBytes4x4(const uint32_t (&w)[4], uint32_t (&out)[4]) {
  const uint32_t t0 = __byte_perm(w[0], w[1], 0x5140), t1 = __byte_perm(w[0], w[1], 0x7362);  // rows 0 and 1 interleaved
  const uint32_t t2 = __byte_perm(w[2], w[3], 0x5140), t3 = __byte_perm(w[2], w[3], 0x7362);  // rows 2 and 3
  out[0] = __byte_perm(t0, t2, 0x5410), out[1] = __byte_perm(t0, t2, 0x7632);
  out[2] = __byte_perm(t1, t3, 0x5410), out[3] = __byte_perm(t1, t3, 0x7632);
}

// codes [rows, cols] → codesT [cols, rows] (rows and cols multiples of 16) in tiles of 128 × 128 bytes, a block walking
// its strip's tiles along the columns with the next tile's loads in flight. A thread loads 4 rows × 16 columns (four
// 16-byte loads; 8 threads a 128-byte row segment), turns them into 16 columns × 4 rows by byte permutes in registers,
// and stores those 16 words in shared memory as [column][rows / 4]; then it writes 4 × 16 bytes, each 16 rows of one
// column (8 threads a column's 128 bytes). The words of a column are XOR-swizzled by its 16-column group, so that
// both sides are free of bank conflicts. (Tiles of 64 × 64 bytes with a byte per shared-memory access ran at 2.4 TB/s.)
constexpr int kTransposeTile = 128;
// The shared-memory word of tile column c that holds its rows 4g … 4g + 3: g XOR-swizzled by the column's 16-column group.
__device__ __forceinline__ int swizzledWord(int c, int g) { return g ^ (4 * (c / 16 % 8)); }
__global__ void __launch_bounds__(256) transposeCodesKernel(const uint8_t* __restrict__ codes, int64_t rows, int64_t cols,
                                                            uint8_t* __restrict__ codesT) {
  __shared__ uint32_t tile[kTransposeTile][kTransposeTile / 4];  // [column][swizzledWord(column, group of 4 rows)]
  const int lc = 16 * (threadIdx.x % 8), lr = 4 * (threadIdx.x / 8);  // the loads: columns lc … lc + 15, rows lr … lr + 3
  const int64_t tilesC = (cols + kTransposeTile - 1) / kTransposeTile;
  for (int64_t r0 = int64_t(blockIdx.y) * kTransposeTile; r0 < rows; r0 += int64_t(gridDim.y) * kTransposeTile) {
    uint4 next[4];
    const auto load = [&](int64_t tc) {
      const int64_t r = r0 + lr, c = tc * kTransposeTile + lc;
      const bool inside = r < rows && c < cols;  // rows a multiple of 16, so a thread's 4 rows are all in or all out
#pragma unroll
      for (int k = 0; k < 4; ++k) next[k] = inside ? *reinterpret_cast<const uint4*>(codes + (r + k) * cols + c) : make_uint4(0, 0, 0, 0);
    };
    if (blockIdx.x < tilesC) load(blockIdx.x);
    for (int64_t tc = blockIdx.x; tc < tilesC; tc += gridDim.x) {
      uint32_t rowsWords[4][4];  // [row k][word i: columns 4i … 4i + 3]
#pragma unroll
      for (int k = 0; k < 4; ++k) rowsWords[k][0] = next[k].x, rowsWords[k][1] = next[k].y, rowsWords[k][2] = next[k].z, rowsWords[k][3] = next[k].w;
      if (tc + gridDim.x < tilesC) load(tc + gridDim.x);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t block[4] = {rowsWords[0][i], rowsWords[1][i], rowsWords[2][i], rowsWords[3][i]};
        uint32_t out[4];
        transposeBytes4x4(block, out);
#pragma unroll
        for (int j = 0; j < 4; ++j) tile[lc + 4 * i + j][swizzledWord(lc + 4 * i + j, lr / 4)] = out[j];
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < 4; ++k) {  // column sc's rows sr … sr + 15
        const int sc = threadIdx.x / 8 + 32 * k, sr = 16 * (threadIdx.x % 8), word = swizzledWord(sc, sr / 4);
        const int64_t oc = tc * kTransposeTile + sc, orow = r0 + sr;
        if (oc < cols && orow < rows)
          *reinterpret_cast<uint4*>(codesT + oc * rows + orow) = *reinterpret_cast<const uint4*>(&tile[sc][word]);
      }
      __syncthreads();  // before the next tile overwrites it
    }
  }
}

}  // namespace

cudaError_t launchSoftcapGradFp8(cudaStream_t s, const float* dy, const void* logits, bool logitsBf16, const int32_t* targets,
                                 const float* rowStats, bool gBf16, int64_t rows, int64_t cols, int cap, float scale, float temp,
                                 bool mean, float gradScale, uint8_t* g8, uint8_t* g8t) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  const auto misaligned = [](const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes != 0; };
  if (rows < 0 || cols < 0 || rows % 4 || cols % 4 || misaligned(logits, logitsBf16 ? 8 : 16) || misaligned(g8, 4) ||
      misaligned(g8t, 4) || (cap != kLogitCapNone && cap != kLogitCapSigmoid && cap != kLogitCapTanh))
    return cudaErrorInvalidValue;
  const CapParams p = capParams(cap, scale, temp);
  const float w = mean ? 1.f / float(rows) : 1.f;
  const auto launch = [&](auto capC, auto* in, auto roundC) {
    using In = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
    constexpr auto kernel = softcapGradFp8Kernel<decltype(capC)::value, In, decltype(roundC)::value>;
    kernel<<<fp8TileGrid<kernel>(rows, cols), 256, 0, s>>>(dy, in, targets, rowStats, rows, cols, w, p, fp8Scale(gradScale), g8,
                                                            g8t);
  };
  const auto withRound = [&](auto capC, auto* in) {
    if (gBf16) launch(capC, in, std::true_type{});
    else launch(capC, in, std::false_type{});
  };
  const auto withCap = [&](auto* in) {
    if (cap == kLogitCapSigmoid) withRound(std::integral_constant<int, kLogitCapSigmoid>{}, in);
    else if (cap == kLogitCapTanh) withRound(std::integral_constant<int, kLogitCapTanh>{}, in);
    else withRound(std::integral_constant<int, kLogitCapNone>{}, in);
  };
  byInputType(logits, logitsBf16, withCap);
  return cudaGetLastError();
}

namespace {

// The one-pass kernel's launch for the runtime choices: a cluster of kRowCtas CTAs a row; false where the build has no
// sm_90 code for it (its PTX is older: the cluster instructions compiled to traps).
template <int kCap, bool kFixed, typename In, bool kRoundBf16>
bool launchOnePass(cudaStream_t s, const float* dy, const In* logits, const int32_t* targets, float* rowStats, int64_t rows,
                   int64_t cols, float w, const CapParams& p, Fp8Scale gradScale, uint8_t* g8) {
  constexpr auto kernel = softcapLossGradFp8Kernel<kCap, kFixed, In, kRoundBf16>;
  static const bool built = [] {
    cudaFuncAttributes a{};
    return cudaFuncGetAttributes(&a, kernel) == cudaSuccess && a.ptxVersion >= 90;
  }();
  if (!built) return false;
  cudaLaunchAttribute cluster{};
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = kRowCtas, cluster.val.clusterDim.y = 1, cluster.val.clusterDim.z = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(unsigned(rows * kRowCtas));
  config.blockDim = dim3(kRowThreads);
  config.stream = s;
  config.attrs = &cluster;
  config.numAttrs = 1;
  cudaLaunchKernelEx(&config, kernel, dy, logits, targets, rowStats, rows, cols, w, p, gradScale, g8);
  return true;
}

}  // namespace

cudaError_t launchTransposeCodes(cudaStream_t s, const uint8_t* codes, int64_t rows, int64_t cols, uint8_t* codesT) {
  const auto misaligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 != 0; };
  if (rows < 0 || cols < 0 || rows % 16 || cols % 16 || misaligned(codes) || misaligned(codesT)) return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  transposeCodesKernel<<<fp8TileGrid<transposeCodesKernel, kTransposeTile>(rows, cols), 256, 0, s>>>(codes, rows, cols, codesT);
  return cudaGetLastError();
}

cudaError_t launchSoftcapLossGradFp8(cudaStream_t s, const float* dy, const void* logits, bool logitsBf16, const int32_t* targets,
                                     float* rowStats, float* loss, bool gBf16, int64_t rows, int64_t cols, int cap, float scale,
                                     float temp, bool mean, float gradScale, uint8_t* g8, uint8_t* g8t) {
  const auto misaligned = [](const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes != 0; };
  if (rows < 0 || cols < 0 || rows % 4 || cols % 4 || misaligned(logits, logitsBf16 ? 8 : 16) || !g8 || !g8t ||
      misaligned(g8, 4) || misaligned(g8t, 4) || (cap != kLogitCapNone && cap != kLogitCapSigmoid && cap != kLogitCapTanh))
    return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return launchSumRowLosses(s, rowStats + rows, loss, rows, mean);
  bool onePass = false;
  if (cols <= kOnePassMaxCols && rows % 16 == 0 && cols % 16 == 0 && rows * kRowCtas <= 0x7fffffffLL && !misaligned(g8, 16) &&
      !misaligned(g8t, 16)) {
    const CapParams p = capParams(cap, scale, temp);
    const float w = mean ? 1.f / float(rows) : 1.f;
    const auto launch = [&](auto capC, auto fixedC, auto* in, auto roundC) {
      using In = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
      onePass = launchOnePass<decltype(capC)::value, decltype(fixedC)::value, In, decltype(roundC)::value>(
          s, dy, in, targets, rowStats, rows, cols, w, p, fp8Scale(gradScale), g8);
    };
    const auto withRound = [&](auto capC, auto fixedC, auto* in) {
      if (gBf16) launch(capC, fixedC, in, std::true_type{});
      else launch(capC, fixedC, in, std::false_type{});
    };
    const auto withReference = [&](auto capC, auto* in) {  // a bounded cap's fixed reference (no cap has none)
      if (fixedReference(cap, scale)) withRound(capC, std::true_type{}, in);
      else withRound(capC, std::false_type{}, in);
    };
    const auto withCap = [&](auto* in) {
      if (cap == kLogitCapSigmoid) withReference(std::integral_constant<int, kLogitCapSigmoid>{}, in);
      else if (cap == kLogitCapTanh) withReference(std::integral_constant<int, kLogitCapTanh>{}, in);
      else withRound(std::integral_constant<int, kLogitCapNone>{}, std::false_type{}, in);
    };
    byInputType(logits, logitsBf16, withCap);
  }
  if (!onePass) {
    const cudaError_t e = launchSoftcapCrossEntropy(s, logits, logitsBf16, targets, rowStats, loss, rows, cols, cap, scale, temp, mean);
    if (e != cudaSuccess) return e;
    return launchSoftcapGradFp8(s, dy, logits, logitsBf16, targets, rowStats, gBf16, rows, cols, cap, scale, temp, mean, gradScale,
                                g8, g8t);
  }
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = launchTransposeCodes(s, g8, rows, cols, g8t);
  if (e == cudaSuccess) e = launchSumRowLosses(s, rowStats + rows, loss, rows, mean);
  return e;
}

TSGPT_LAUNCHER(softcapLossGradFp8, launchSoftcapLossGradFp8, "dy", "logits", "logitsBf16", "targets", "rowStats", "loss", "gBf16",
               "rows", "cols", "cap", "scale", "temp", "mean", "gradScale", "g8", "g8t");

}  // namespace tsgpt
