// Elementwise kernels: unary ops, binary ops with broadcasting, select, cast, fill, range and the
// float32→bf16 conversion used by bf16 matmul. float32 ops compute in float; int32 and bool ops
// compute integer arithmetic exactly and go through float only for transcendental functions.
#include <cuda_bf16.h>
#include "kernels.h"
#include "launch.h"
#include "launchers.h"
#include "strided.cuh"
#include "vec.cuh"

namespace tsgpt {
namespace {

template <typename T>
__device__ __forceinline__ float unaryF(int op, float x, float a, float b) {
  switch (op) {
    case kAbs: return fabsf(x);
    case kNeg: return -x;
    case kExp: return expf(x);
    case kLog: return logf(x);
    case kLog1p: return log1pf(x);
    case kSqrt: return sqrtf(x);
    case kRsqrt: return rsqrtf(x);
    case kSquare: return x * x;
    case kTanh: return tanhf(x);
    case kSigmoid: return 1.f / (1.f + expf(-x));
    case kRelu: return x > 0.f ? x : 0.f;
    case kStep: return isnan(x) ? x : (x > 0.f ? 1.f : a);  // a = alpha (value for x <= 0)
    case kSin: return sinf(x);
    case kCos: return cosf(x);
    case kReciprocal: return 1.f / x;
    case kFloor: return floorf(x);
    case kCeil: return ceilf(x);
    case kRound: return rintf(x);  // tfjs rounds half to even
    case kSign: return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
    case kLogicalNot: return x == 0.f ? 1.f : 0.f;
    case kErf: return erff(x);
    case kSoftplus: return x > 20.f ? x : log1pf(expf(x));
    case kClip: return fminf(fmaxf(x, a), b);
    case kLeakyRelu: return x < 0.f ? a * x : x;
    case kExpm1: return expm1f(x);
    case kElu: return x >= 0.f ? x : expm1f(x);
    case kRelu6: return fminf(fmaxf(x, 0.f), 6.f);
    case kAtan: return atanf(x);
    case kSelu: return x >= 0.f ? 1.0507009873554805f * x : 1.7580993408473768f * expm1f(x);
    default: return __int_as_float(0x7fc00000);
  }
}

template <typename T>
__device__ __forceinline__ T unaryOp(int op, T x, float a, float b) {
  if constexpr (std::is_same_v<T, float>) {
    return unaryF<T>(op, x, a, b);
  } else {
    switch (op) {  // exact integer versions; the rest go through float
      case kAbs: return x < 0 ? T(-x) : x;
      case kNeg: return T(-x);
      case kSquare: return T(x * x);
      case kRelu: return x > 0 ? x : T(0);
      case kSign: return T(x > 0 ? 1 : (x < 0 ? -1 : 0));
      case kLogicalNot: return T(x == 0 ? 1 : 0);
      case kClip: return x < T(a) ? T(a) : (x > T(b) ? T(b) : x);
      default: return T(unaryF<T>(op, float(x), a, b));
    }
  }
}

template <typename T>
__global__ void unaryKernel(int op, const T* __restrict__ x, T* __restrict__ y, int64_t n, float a,
                            float b) {
  TSGPT_GRID_STRIDE(i, n) { y[i] = unaryOp<T>(op, x[i], a, b); }
}

template <typename T>
__device__ __forceinline__ T floorDiv(T a, T b) {
  if constexpr (std::is_same_v<T, float>) {
    return floorf(a / b);
  } else {
    if (b == 0) return T(0);
    T q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q -= 1;
    return q;
  }
}

template <typename T>
__device__ __forceinline__ T modOp(T a, T b) {  // result has the sign of the divisor (tfjs mod)
  if constexpr (std::is_same_v<T, float>) {
    const float r = fmodf(a, b);
    return (r != 0.f && ((r < 0.f) != (b < 0.f))) ? r + b : r;
  } else {
    if (b == 0) return T(0);
    const T r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? T(r + b) : r;
  }
}

template <typename T>
__device__ __forceinline__ T arith(int op, T a, T b) {
  switch (op) {
    case kAdd: return a + b;
    case kSub: return a - b;
    case kMul: return a * b;
    case kDiv:
      if constexpr (std::is_same_v<T, float>) return a / b;
      else return floorDiv<T>(a, b);
    case kFloorDiv: return floorDiv<T>(a, b);
    case kMaximum:
      if constexpr (std::is_same_v<T, float>) return (isnan(a) || isnan(b)) ? a + b : fmaxf(a, b);
      else return a > b ? a : b;
    case kMinimum:
      if constexpr (std::is_same_v<T, float>) return (isnan(a) || isnan(b)) ? a + b : fminf(a, b);
      else return a < b ? a : b;
    case kPow:
      if constexpr (std::is_same_v<T, float>) return powf(a, b);
      else {
        if (b < 0) return T(a == 1 ? 1 : 0);
        T r = 1, base = a;
        for (T e = b; e > 0; e >>= 1) { if (e & 1) r *= base; base *= base; }
        return r;
      }
    case kSquaredDifference: { const T d = a - b; return d * d; }
    case kMod: return modOp<T>(a, b);
    case kAtan2: return T(atan2f(float(a), float(b)));
    default: return T(0);
  }
}

// Compares in T: exact for int32, IEEE for float32.
template <typename T>
__device__ __forceinline__ bool compareT(int op, T a, T b) {
  switch (op) {
    case kEqual: return a == b;
    case kNotEqual: return a != b;
    case kLess: return a < b;
    case kLessEqual: return a <= b;
    case kGreater: return a > b;
    case kGreaterEqual: return a >= b;
    case kLogicalAnd: return a != 0 && b != 0;
    case kLogicalOr: return a != 0 || b != 0;
    default: return false;
  }
}

// An operand's value as T: a float32 tensor stored in bf16 only (A or B = __nv_bfloat16) is widened exactly as read.
template <typename T, typename S>
__device__ __forceinline__ T operand(S x) {
  if constexpr (std::is_same_v<S, __nv_bfloat16>) return __bfloat162float(x);
  else return x;
}

template <typename T, typename A = T, typename B = T>
__global__ void binaryKernel(int op, const A* __restrict__ a, const B* __restrict__ b,
                             void* __restrict__ out, StridedShape sh, int64_t n) {
  const bool toBool = op >= kEqual;
  TSGPT_GRID_STRIDE(i, n) {
    int64_t offA, offB;
    stridedOffsets(i, sh, offA, offB);
    const T x = operand<T>(a[offA]), y = operand<T>(b[offB]);
    if (toBool) static_cast<uint8_t*>(out)[i] = compareT<T>(op, x, y) ? 1 : 0;
    else static_cast<T*>(out)[i] = arith<T>(op, x, y);
  }
}

template <typename T>
__global__ void selectKernel(const uint8_t* __restrict__ c, const T* __restrict__ a,
                             const T* __restrict__ b, T* __restrict__ out, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) { out[i] = c[i] ? a[i] : b[i]; }
}

template <typename From, typename To>
__global__ void castKernel(const From* __restrict__ x, To* __restrict__ y, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) {
    if constexpr (std::is_same_v<To, uint8_t>) y[i] = x[i] != From(0) ? 1 : 0;
    else if constexpr (std::is_same_v<To, int32_t> && std::is_same_v<From, float>)
      y[i] = isnan(x[i]) ? 0 : static_cast<int32_t>(x[i]);  // truncation, as Int32Array.from
    else y[i] = static_cast<To>(x[i]);
  }
}

template <typename T>
__global__ void fillKernel(T* __restrict__ out, int64_t n, T v) {
  TSGPT_GRID_STRIDE(i, n) { out[i] = v; }
}

template <typename T>
__global__ void rangeKernel(T* __restrict__ out, int64_t n, double start, double step) {
  TSGPT_GRID_STRIDE(i, n) { out[i] = static_cast<T>(start + step * double(i)); }
}

__global__ void f32ToBf16Kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ y,
                                int64_t n) {
  const int64_t n2 = n / 2;
  const float2* x2 = reinterpret_cast<const float2*>(x);
  __nv_bfloat162* y2 = reinterpret_cast<__nv_bfloat162*>(y);
  TSGPT_GRID_STRIDE(i, n2) { y2[i] = __float22bfloat162_rn(x2[i]); }
  if ((n & 1) && blockIdx.x == 0 && threadIdx.x == 0) y[n - 1] = __float2bfloat16_rn(x[n - 1]);
}

__global__ void bf16ToF32Kernel(const __nv_bfloat16* __restrict__ x, float* __restrict__ y, int64_t n) {
  TSGPT_GRID_STRIDE(i, n) { y[i] = __bfloat162float(x[i]); }
}

}  // namespace

cudaError_t launchUnary(cudaStream_t s, int op, int dtype, const void* x, void* y, int64_t n,
                        float alpha, float beta) {
  if (n == 0) return cudaSuccess;
  const unsigned g = gridFor(n);
  switch (dtype) {
    case kFloat32: unaryKernel<float><<<g, kThreads, 0, s>>>(op, (const float*)x, (float*)y, n, alpha, beta); break;
    case kInt32: unaryKernel<int32_t><<<g, kThreads, 0, s>>>(op, (const int32_t*)x, (int32_t*)y, n, alpha, beta); break;
    case kBool: unaryKernel<uint8_t><<<g, kThreads, 0, s>>>(op, (const uint8_t*)x, (uint8_t*)y, n, alpha, beta); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launchBinary(cudaStream_t s, int op, int dtype, const void* a, bool aBf16, const void* b, bool bBf16, void* out,
                         const StridedShape& shape) {
  int64_t n = 1;
  for (int k = 0; k < shape.rank; ++k) n *= shape.dims[k];
  if (n == 0) return cudaSuccess;
  if ((aBf16 || bBf16) && dtype != kFloat32) return cudaErrorInvalidValue;
  const unsigned g = gridFor(n);
  switch (dtype) {
    case kFloat32:
      byInputType(a, aBf16, [&](auto* as) {
        byInputType(b, bBf16, [&](auto* bs) { binaryKernel<float><<<g, kThreads, 0, s>>>(op, as, bs, out, shape, n); });
      });
      break;
    case kInt32: binaryKernel<int32_t><<<g, kThreads, 0, s>>>(op, (const int32_t*)a, (const int32_t*)b, out, shape, n); break;
    case kBool: binaryKernel<uint8_t><<<g, kThreads, 0, s>>>(op, (const uint8_t*)a, (const uint8_t*)b, out, shape, n); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launchSelect(cudaStream_t s, int elemBytes, const uint8_t* cond, const void* a,
                         const void* b, void* out, int64_t n) {
  if (n == 0) return cudaSuccess;
  const unsigned g = gridFor(n);
  if (elemBytes == 4) selectKernel<uint32_t><<<g, kThreads, 0, s>>>(cond, (const uint32_t*)a, (const uint32_t*)b, (uint32_t*)out, n);
  else if (elemBytes == 1) selectKernel<uint8_t><<<g, kThreads, 0, s>>>(cond, (const uint8_t*)a, (const uint8_t*)b, (uint8_t*)out, n);
  else return cudaErrorInvalidValue;
  return cudaGetLastError();
}

template <typename From>
static cudaError_t castFrom(cudaStream_t s, int toDtype, const From* x, void* y, int64_t n) {
  const unsigned g = gridFor(n);
  switch (toDtype) {
    case kFloat32: castKernel<From, float><<<g, kThreads, 0, s>>>(x, (float*)y, n); break;
    case kInt32: castKernel<From, int32_t><<<g, kThreads, 0, s>>>(x, (int32_t*)y, n); break;
    case kBool: castKernel<From, uint8_t><<<g, kThreads, 0, s>>>(x, (uint8_t*)y, n); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launchCast(cudaStream_t s, int fromDtype, int toDtype, const void* x, void* y, int64_t n) {
  if (n == 0) return cudaSuccess;
  switch (fromDtype) {
    case kFloat32: return castFrom<float>(s, toDtype, (const float*)x, y, n);
    case kInt32: return castFrom<int32_t>(s, toDtype, (const int32_t*)x, y, n);
    case kBool: return castFrom<uint8_t>(s, toDtype, (const uint8_t*)x, y, n);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t launchFill(cudaStream_t s, int dtype, void* out, int64_t n, double value) {
  if (n == 0) return cudaSuccess;
  const unsigned g = gridFor(n);
  switch (dtype) {
    case kFloat32: fillKernel<float><<<g, kThreads, 0, s>>>((float*)out, n, (float)value); break;
    case kInt32: fillKernel<int32_t><<<g, kThreads, 0, s>>>((int32_t*)out, n, (int32_t)value); break;
    case kBool: fillKernel<uint8_t><<<g, kThreads, 0, s>>>((uint8_t*)out, n, value != 0 ? 1 : 0); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launchRange(cudaStream_t s, int dtype, void* out, int64_t n, double start, double step) {
  if (n == 0) return cudaSuccess;
  const unsigned g = gridFor(n);
  switch (dtype) {
    case kFloat32: rangeKernel<float><<<g, kThreads, 0, s>>>((float*)out, n, start, step); break;
    case kInt32: rangeKernel<int32_t><<<g, kThreads, 0, s>>>((int32_t*)out, n, start, step); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launchF32ToBf16(cudaStream_t s, const float* x, void* y, int64_t n) {
  if (n == 0) return cudaSuccess;
  f32ToBf16Kernel<<<gridFor((n + 1) / 2), kThreads, 0, s>>>(x, (__nv_bfloat16*)y, n);
  return cudaGetLastError();
}

cudaError_t launchBf16ToF32(cudaStream_t s, const void* x, float* y, int64_t n) {
  if (n == 0) return cudaSuccess;
  bf16ToF32Kernel<<<gridFor(n), kThreads, 0, s>>>(static_cast<const __nv_bfloat16*>(x), y, n);
  return cudaGetLastError();
}

TSGPT_LAUNCHER(unary, launchUnary, "op", "dtype", "x", "y", "n", "alpha", "beta");
TSGPT_LAUNCHER(select, launchSelect, "elemBytes", "cond", "a", "b", "out", "n");
TSGPT_LAUNCHER(cast, launchCast, "fromDtype", "toDtype", "x", "y", "n");
TSGPT_LAUNCHER(fill, launchFill, "dtype", "out", "n", "value");
TSGPT_LAUNCHER(range, launchRange, "dtype", "out", "n", "start", "step");
TSGPT_LAUNCHER(toBf16, launchF32ToBf16, "x", "y", "n");
TSGPT_LAUNCHER(fromBf16, launchBf16ToF32, "x", "y", "n");

}  // namespace tsgpt
