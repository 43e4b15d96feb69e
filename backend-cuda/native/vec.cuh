// V consecutive floats as one load/store: float4 (one 16-byte transaction) for V = 4, a plain float
// for V = 1. The memory-bound fused kernels (rotary.cu, relu_squared.cu) take V = 4 where their
// pointers are 16-byte aligned and their rows a multiple of 4, else V = 1. A store to bf16 rounds to
// nearest even (the outputs that only bf16 products read under bf16 precision: backend.ts's makeBf16Output).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

namespace tsgpt {

// One value of a tensor stored in float32 or bf16, as float (exact), and one float stored as either (bf16: rounded to
// nearest even): for kernels templated on their tensors' storage.
__device__ __forceinline__ float toFloat(float x) { return x; }
__device__ __forceinline__ float toFloat(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

template <int V>
__device__ __forceinline__ void loadVec(const float* __restrict__ p, float (&v)[V]) {
  static_assert(V == 1 || V == 4, "V is 1 or 4");
  if constexpr (V == 4) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
  } else {
    v[0] = toFloat(*p);
  }
}

// Four consecutive values as loaded (16 bytes of float, 8 of bf16), widened later: a load kept in flight across other
// work (fp8_codes.cuh's tiles load the next tile while they store the current one).
template <typename In>
struct Packed4;
template <>
struct Packed4<float> {
  float4 bits;
};
template <>
struct Packed4<__nv_bfloat16> {
  uint2 bits;
};
// kAligned: p is 16-byte (float) or 8-byte (bf16) aligned, one vector load; else four scalar loads.
template <bool kAligned = true>
__device__ __forceinline__ Packed4<float> loadPacked4(const float* __restrict__ p) {
  if constexpr (kAligned) return {*reinterpret_cast<const float4*>(p)};
  else return {make_float4(p[0], p[1], p[2], p[3])};
}
template <bool kAligned = true>
__device__ __forceinline__ Packed4<__nv_bfloat16> loadPacked4(const __nv_bfloat16* __restrict__ p) {
  if constexpr (kAligned) return {*reinterpret_cast<const uint2*>(p)};
  const auto bits = [&](int k) { return uint32_t(__bfloat16_as_ushort(p[k])); };
  return {make_uint2(bits(0) | bits(1) << 16, bits(2) | bits(3) << 16)};
}
__device__ __forceinline__ void widen(const Packed4<float>& q, float (&v)[4]) {
  v[0] = q.bits.x; v[1] = q.bits.y; v[2] = q.bits.z; v[3] = q.bits.w;
}
__device__ __forceinline__ void widen(const Packed4<__nv_bfloat16>& q, float (&v)[4]) {
  const __nv_bfloat162 lo = *reinterpret_cast<const __nv_bfloat162*>(&q.bits.x);
  const __nv_bfloat162 hi = *reinterpret_cast<const __nv_bfloat162*>(&q.bits.y);
  v[0] = __low2float(lo); v[1] = __high2float(lo); v[2] = __low2float(hi); v[3] = __high2float(hi);
}

// The same from a bf16 tensor (a bf16-only activation: backend.ts's storedValues), widened exactly; 8 bytes for V = 4.
template <int V>
__device__ __forceinline__ void loadVec(const __nv_bfloat16* __restrict__ p, float (&v)[V]) {
  static_assert(V == 1 || V == 4, "V is 1 or 4");
  if constexpr (V == 4) widen(loadPacked4(p), v);  // 8-byte aligned where the float32 twin is 16
  else v[0] = toFloat(*p);
}

template <int V>
__device__ __forceinline__ void storeVec(float* __restrict__ p, const float (&v)[V]) {
  static_assert(V == 1 || V == 4, "V is 1 or 4");
  if constexpr (V == 4) *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  else store(p, v[0]);
}

template <int V>
__device__ __forceinline__ void storeVec(__nv_bfloat16* __restrict__ p, const float (&v)[V]) {
  static_assert(V == 1 || V == 4, "V is 1 or 4");
  if constexpr (V == 4) {  // one 8-byte store (8-byte aligned where the float32 twin is 16): as two 4-byte stores, a
    // warp's stores each wrote half of every sector they touched (ncu: 22 % excess sectors in CanonAttentionInputs)
    const __nv_bfloat162 lo = __floats2bfloat162_rn(v[0], v[1]), hi = __floats2bfloat162_rn(v[2], v[3]);
    *reinterpret_cast<uint2*>(p) = make_uint2(*reinterpret_cast<const uint32_t*>(&lo), *reinterpret_cast<const uint32_t*>(&hi));
  } else {
    store(p, v[0]);
  }
}

// x rounded to the nearest bf16 (ties to even), kept in float32: the record's bf16 state in float32 storage.
__device__ __forceinline__ float roundedToBf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

inline bool aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs) if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// Calls f(std::integral_constant<int, V>{}, Out* out) for the vector width (4 where vec4, else 1) and the output's
// type (bf16 where outBf16, else float); returns the launch's error.
template <typename F>
cudaError_t byWidthAndType(bool vec4, void* out, bool outBf16, F f) {
  auto withType = [&](auto width) {
    if (outBf16) f(width, static_cast<__nv_bfloat16*>(out));
    else f(width, static_cast<float*>(out));
  };
  if (vec4) withType(std::integral_constant<int, 4>{});
  else withType(std::integral_constant<int, 1>{});
  return cudaGetLastError();
}

// Calls f with a null pointer of the type a tensor is stored in: bf16* where bf16 (a bf16-only tensor), else float*.
template <typename F>
void byStorage(bool bf16, F f) {
  if (bf16) f(static_cast<__nv_bfloat16*>(nullptr));
  else f(static_cast<float*>(nullptr));
}

// Calls f(x) with x typed as the tensor is stored: const bf16* where xBf16 (a bf16-only tensor), else const float*.
template <typename F>
void byInputType(const void* x, bool xBf16, F f) {
  byStorage(xBf16, [&](auto* type) { f(static_cast<const std::remove_pointer_t<decltype(type)>*>(x)); });
}

}  // namespace tsgpt
