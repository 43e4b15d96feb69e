// The hardware's approximations (MUFU, flushing subnormals; a few ulp, ~5e-7 relative): for kernels whose exps and
// reciprocals would otherwise bound them by their instructions (the softcapped cross-entropy's, the attention
// backward's). A subnormal result is 0 here: exp2 of an argument below −126.
#pragma once

namespace tsgpt {

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float fastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float fastRcp(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace tsgpt
