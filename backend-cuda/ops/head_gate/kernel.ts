// The fused attention output gate's cuda kernels: 'HeadGate' ({o, g} → o·σ(g)) and its gradient kernel
// 'HeadGateGrad' ({dy, o, g} → [do, dg]), over head_gate.cu's launchers. The gated output only feeds the output
// projection in the model, and do the attention's backward (its tensor-core products): under bf16 matmul precision
// both are bf16 (makeBf16Output). o is read as stored: the attention's tensor-core kernels store it in bf16 only.
import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { describe, input } from '../check.ts';
import type { CudaKernel, CudaKernelArgs } from '../../kernels/types.ts';
import { HEAD_GATE, HEAD_GATE_GRAD } from './head_gate.ts';

/** head_gate.cu's launchers (host.ts is their CPU reference). */
export interface HeadGateNative {
  /** The attention output gate over rows of h values: y = o·σ(g), o in bf16 where oBf16, g one logit per row (y in bf16
   * where yBf16). */
  headGate(o: number, oBf16: boolean, g: number, y: number, yBf16: boolean, rows: number, h: number): void;
  /** Its gradient: dO = dy·σ(g) (dy in bf16 where dyBf16, dO where dOBf16), dg = σ(g)(1 − σ(g))·Σ_h dy·o per row, and
   * where delta is not 0 delta = Σ_h dO·o per row from dO as stored (the attention backward's D: GatedCausalAttentionGrad). */
  headGateGrad(dy: number, dyBf16: boolean, o: number, oBf16: boolean, g: number, dO: number, dOBf16: boolean, dg: number,
    delta: number, rows: number, h: number): void;
}

/** o (and dy) float32 [B,T,H,h] and g float32 [B,T,H]: the rows (B·T·H) and h. */
function checked(kernel: string, inputs: CudaKernelArgs['inputs'], withDy: boolean): { rows: number; h: number } {
  const dy = withDy ? input(kernel, inputs, 'dy') : null, o = input(kernel, inputs, 'o'), g = input(kernel, inputs, 'g');
  if (o.shape.length !== 4 || !tf.util.arraysEqual(g.shape, o.shape.slice(0, 3))) {
    throw new Error(`${kernel}: o must be [B,T,H,h] and g [B,T,H], got o ${describe(o)} and g ${describe(g)}`);
  }
  if (dy && !tf.util.arraysEqual(dy.shape, o.shape)) throw new Error(`${kernel}: dy ${describe(dy)} must have o's shape [${o.shape}]`);
  return { rows: tf.util.sizeFromShape(g.shape), h: o.shape[3] };
}

export const headGateKernels: CudaKernel[] = [
  {
    kernelName: HEAD_GATE,
    kernelFunc: ({ inputs, backend }) => {
      const { rows, h } = checked(HEAD_GATE, inputs, false);
      // o as the attention stored it; y in bf16 for the output projection that reads it
      const o = inputs.o as TensorInfo, os = backend.storedValues(o), y = backend.makeBf16Output(o.shape);
      backend.device.headGate(os.ptr, os.bf16, backend.ptr(inputs.g as TensorInfo), y.ptr, y.bf16, rows, h);
      return y.out;
    },
  },
  {
    kernelName: HEAD_GATE_GRAD,
    kernelFunc: ({ inputs, backend }) => {
      const { rows, h } = checked(HEAD_GATE_GRAD, inputs, true);
      const o = inputs.o as TensorInfo, g = inputs.g as TensorInfo, os = backend.storedValues(o);
      const dys = backend.storedValues(inputs.dy as TensorInfo);  // the output projection's gradient: bf16 under bf16
      // dO feeds the attention's backward, whose tensor-core products read it in bf16 (and D = dO·O too)
      const dO = backend.makeBf16Output(o.shape), dg = backend.makeOutput(g.shape, 'float32');
      backend.device.headGateGrad(dys.ptr, dys.bf16, os.ptr, os.bf16, backend.ptr(g), dO.ptr, dO.bf16, backend.ptr(dg), 0, rows, h);
      return [dO.out, dg];
    },
  },
];
