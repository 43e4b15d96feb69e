// Rounding to bf16: the kernel train_gpt.ts's roundToBf16() hands to a backend that registers
// 'RoundBf16' (runFused), where the record keeps a tensor in bf16 (record-2025-11.md §5: the embeddings, the head and
// the gates as parameters, every Adam moment). The composite (roundTo() with the bf16 format: a dozen float32 ops)
// is the implementation everywhere else and the oracle.
//   input x float32 (any shape); output y: x rounded to the nearest bf16 value, ties to even (NaN stays NaN, ±inf
//   and values past bf16's largest become ±inf); on cuda y is stored in bf16 only (half the bytes; kernel.ts).
// It runs on optimiser state, outside any gradient tape: no gradient is registered.
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const ROUND_BF16 = 'RoundBf16';

export const roundBf16: FusedKernelSpec = { name: ROUND_BF16, supports: inputs => float32Inputs(inputs, 'x') };
