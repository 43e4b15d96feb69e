// The one list of the cuda backend's kernels: the generic ones (kernels/) and every fused op's (ops/index.ts). Registration wraps each kernel so that any error
// (a CUDA error, an unsupported case, a bad shape) names the kernel and its input shapes.
import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { CudaKernel, CudaKernelArgs } from './kernels/types.ts';
import { addNConfig } from './kernels/AddN.ts';
import { batchMatMulConfig } from './kernels/BatchMatMul.ts';
import { binaryKernels } from './kernels/binary.ts';
import { broadcastToConfig } from './kernels/BroadcastTo.ts';
import { castConfig } from './kernels/Cast.ts';
import { concatConfig } from './kernels/Concat.ts';
import { expandDimsConfig } from './kernels/ExpandDims.ts';
import { fillConfig } from './kernels/Fill.ts';
import { gatherV2Config } from './kernels/GatherV2.ts';
import { identityConfig } from './kernels/Identity.ts';
import { oneHotConfig } from './kernels/OneHot.ts';
import { packConfig } from './kernels/Pack.ts';
import { padV2Config } from './kernels/PadV2.ts';
import { rangeConfig } from './kernels/Range.ts';
import { reduceKernels } from './kernels/reduce.ts';
import { reshapeConfig } from './kernels/Reshape.ts';
import { reverseConfig } from './kernels/Reverse.ts';
import { selectConfig } from './kernels/Select.ts';
import { sliceConfig } from './kernels/Slice.ts';
import { softmaxConfig } from './kernels/Softmax.ts';
import { splitVConfig } from './kernels/SplitV.ts';
import { stridedSliceConfig } from './kernels/StridedSlice.ts';
import { tileConfig } from './kernels/Tile.ts';
import { transposeConfig } from './kernels/Transpose.ts';
import { unaryKernels } from './kernels/unary.ts';
import { unpackConfig } from './kernels/Unpack.ts';
import { unsortedSegmentSumConfig } from './kernels/UnsortedSegmentSum.ts';
import { onesLikeConfig, zerosLikeConfig } from './kernels/ZerosLike.ts';
import { fusedOps } from './ops/index.ts';

export const cudaKernels: CudaKernel[] = [
  ...unaryKernels,
  ...binaryKernels,
  ...reduceKernels,
  ...fusedOps.flatMap(op => op.kernels),
  addNConfig,
  batchMatMulConfig,
  broadcastToConfig,
  castConfig,
  concatConfig,
  expandDimsConfig,
  fillConfig,
  gatherV2Config,
  identityConfig,
  oneHotConfig,
  onesLikeConfig,
  packConfig,
  padV2Config,
  rangeConfig,
  reshapeConfig,
  reverseConfig,
  selectConfig,
  sliceConfig,
  softmaxConfig,
  splitVConfig,
  stridedSliceConfig,
  tileConfig,
  transposeConfig,
  unpackConfig,
  unsortedSegmentSumConfig,
  zerosLikeConfig,
];

function describeInputs(inputs: CudaKernelArgs['inputs']): string {
  return Object.entries(inputs)
    .filter(([, t]) => t != null)
    .map(([name, t]) => `${name}: ${(t as TensorInfo).dtype}[${(t as TensorInfo).shape}]`)
    .join(', ');
}

export function registerAllKernels(backendName: string): void {
  for (const k of cudaKernels) {
    tf.registerKernel({
      kernelName: k.kernelName,
      backendName,
      kernelFunc: (args => {
        try {
          return k.kernelFunc(args as unknown as CudaKernelArgs);
        } catch (e) {
          const msg = e instanceof Error ? e.message : String(e);
          throw new Error(`${backendName} backend: kernel ${k.kernelName}(${describeInputs(args.inputs as CudaKernelArgs['inputs'])}) failed: ${msg}`);
        }
      }) as tf.KernelFunc,
    });
  }
}
