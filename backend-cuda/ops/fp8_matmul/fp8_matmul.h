// The FP8 head matmul's quantisation launcher (fp8_matmul.cu); its GEMMs are the device's matmulFp8 (native/matmul.cc).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace tsgpt {

// out [rows, cols] and/or outT [cols, rows] (nullptr: not written) = the FP8 codes of x/scale (the float32 quotient),
// e4m3 or (e5m2) e5m2, round to nearest even, non-saturating: beyond the range e4m3 gives NaN, e5m2 ±inf. x float32,
// or bf16 where xBf16. rows and cols multiples of 4, out and outT 4-byte aligned (else cudaErrorInvalidValue).
cudaError_t launchFp8Quantise(cudaStream_t s, const void* x, bool xBf16, int64_t rows, int64_t cols, float scale, bool e5m2,
                              uint8_t* out, uint8_t* outT);

}  // namespace tsgpt
