// The one list of the fused ops, a folder each (README.md: how to add one). Each brings its cuda kernels and
// the CPU reference of its native launchers; the backend registers the kernels (register_all_kernels.ts), the
// host reference device implements the launchers from the references (host_device.ts), and the device
// interface's fused part is derived from them (FusedNative below, used by device.ts).
import type { CudaKernel } from '../kernels/types.ts';
import type { HostDevice } from '../host_device.ts';
import { attentionInputsHost } from './attention_inputs/host.ts';
import { attentionInputsKernels } from './attention_inputs/kernel.ts';
import { canonAttentionInputsHost } from './canon_attention_inputs/host.ts';
import { canonAttentionInputsKernels } from './canon_attention_inputs/kernel.ts';
import { canonConvHost } from './canon_conv/host.ts';
import { canonConvKernels } from './canon_conv/kernel.ts';
import { causalAttentionHost } from './causal_attention/host.ts';
import { causalAttentionKernels } from './causal_attention/kernel.ts';
import { embeddingHost } from './embedding/host.ts';
import { embeddingKernels } from './embedding/kernel.ts';
import { fp8HeadLossHost } from './fp8_head_loss/host.ts';
import { fp8HeadLossKernels } from './fp8_head_loss/kernel.ts';
import { fp8MatmulHost } from './fp8_matmul/host.ts';
import { fp8MatmulKernels } from './fp8_matmul/kernel.ts';
import { headGateHost } from './head_gate/host.ts';
import { headGateKernels } from './head_gate/kernel.ts';
import { linearKernels } from './linear/kernel.ts';
import { matMulAddKernels } from './matmul_add/kernel.ts';
import { muonBlocksHost } from './muon_blocks/host.ts';
import { muonBlocksKernels } from './muon_blocks/kernel.ts';
import { optimizerHost } from './optimizer/host.ts';
import { optimizerKernels } from './optimizer/kernel.ts';
import { reluSquaredHost } from './relu_squared/host.ts';
import { reluSquaredKernels } from './relu_squared/kernel.ts';
import { rmsNormHost } from './rms_norm/host.ts';
import { rmsNormKernels } from './rms_norm/kernel.ts';
import { rotaryHost } from './rotary/host.ts';
import { rotaryKernels } from './rotary/kernel.ts';
import { roundBf16Kernels } from './round_bf16/kernel.ts';
import { scaledAddHost } from './scaled_add/host.ts';
import { scaledAddKernels } from './scaled_add/kernel.ts';
import { shapedMixHost } from './shaped_mix/host.ts';
import { shapedMixKernels } from './shaped_mix/kernel.ts';
import { smearHost } from './smear/host.ts';
import { smearKernels } from './smear/kernel.ts';
import { swigluHost } from './swiglu/host.ts';
import { swigluKernels } from './swiglu/kernel.ts';
import { softcapCrossEntropyHost } from './softcap_cross_entropy/host.ts';
import { softcapCrossEntropyKernels } from './softcap_cross_entropy/kernel.ts';

export interface FusedOp<Native extends object = object> {
  kernels: CudaKernel[];
  /** The CPU reference of the op's native launchers over the host device's memory; none where the op's
   * kernels call only the device's core functions (Linear, MatMulAdd: cuBLASLt; RoundBf16: toBf16). */
  host?: (mem: HostDevice) => Native;
}

export const fusedOps = [
  { kernels: attentionInputsKernels, host: attentionInputsHost },
  { kernels: canonAttentionInputsKernels, host: canonAttentionInputsHost },
  { kernels: canonConvKernels, host: canonConvHost },
  { kernels: causalAttentionKernels, host: causalAttentionHost },
  { kernels: embeddingKernels, host: embeddingHost },
  { kernels: fp8HeadLossKernels, host: fp8HeadLossHost },
  { kernels: fp8MatmulKernels, host: fp8MatmulHost },
  { kernels: headGateKernels, host: headGateHost },
  { kernels: linearKernels },
  { kernels: matMulAddKernels },
  { kernels: muonBlocksKernels, host: muonBlocksHost },
  { kernels: optimizerKernels, host: optimizerHost },
  { kernels: reluSquaredKernels, host: reluSquaredHost },
  { kernels: rmsNormKernels, host: rmsNormHost },
  { kernels: rotaryKernels, host: rotaryHost },
  { kernels: roundBf16Kernels },
  { kernels: scaledAddKernels, host: scaledAddHost },
  { kernels: shapedMixKernels, host: shapedMixHost },
  { kernels: smearKernels, host: smearHost },
  { kernels: softcapCrossEntropyKernels, host: softcapCrossEntropyHost },
  { kernels: swigluKernels, host: swigluHost },
] as const satisfies readonly FusedOp[];

type HostOf<Op> = Op extends { host: (mem: HostDevice) => infer N } ? N : never;
type Intersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;
/** Every fused op's native launchers (the addon exports them, registered by each op's .cu). */
export type FusedNative = Intersection<HostOf<(typeof fusedOps)[number]>>;
