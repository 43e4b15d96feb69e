// The fused attention output gate (native/head_gate.cu) behind fused/head_gate.ts: 'HeadGate' ({o, g} →
// o·σ(g)) and its gradient kernel 'HeadGateGrad' ({dy, o, g} → [do, dg]). The gated output only feeds the
// output projection in the model: under bf16 matmul precision it is bf16 (makeMatmulInput).
import * as tf from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { HEAD_GATE, HEAD_GATE_GRAD } from '../fused/head_gate.ts';
import type { CudaKernel, CudaKernelArgs } from './types.ts';

const describe = (t: TensorInfo) => `${t.dtype}[${t.shape}]`;

/** o (or dy) float32 [B,T,H,h] and g float32 [B,T,H]: the rows (B·T·H) and h. */
function checked(kernel: string, inputs: CudaKernelArgs['inputs'], names: string[]): { rows: number; h: number } {
  const ts = names.map(name => {
    const t = inputs[name] as TensorInfo | undefined;
    if (t == null) throw new Error(`${kernel}: input ${name} is missing`);
    if (t.dtype !== 'float32') throw new Error(`${kernel}: ${name} must be float32, got ${describe(t)}`);
    return t;
  });
  const o = ts[ts.length - 2], g = ts[ts.length - 1];
  if (o.shape.length !== 4 || !tf.util.arraysEqual(g.shape, o.shape.slice(0, 3))) {
    throw new Error(`${kernel}: o must be [B,T,H,h] and g [B,T,H], got o ${describe(o)} and g ${describe(g)}`);
  }
  if (ts.length === 3 && !tf.util.arraysEqual(ts[0].shape, o.shape)) throw new Error(`${kernel}: dy ${describe(ts[0])} must have o's shape [${o.shape}]`);
  return { rows: tf.util.sizeFromShape(g.shape), h: o.shape[3] };
}

export const headGateKernels: CudaKernel[] = [
  {
    kernelName: HEAD_GATE,
    kernelFunc: ({ inputs, backend }) => {
      const { rows, h } = checked(HEAD_GATE, inputs, ['o', 'g']);
      const o = inputs.o as TensorInfo, y = backend.makeMatmulInput(o.shape);  // the output projection reads it
      backend.device.headGate(backend.ptr(o), backend.ptr(inputs.g as TensorInfo), y.ptr, y.bf16, rows, h);
      return y.out;
    },
  },
  {
    kernelName: HEAD_GATE_GRAD,
    kernelFunc: ({ inputs, backend }) => {
      const { rows, h } = checked(HEAD_GATE_GRAD, inputs, ['dy', 'o', 'g']);
      const o = inputs.o as TensorInfo, g = inputs.g as TensorInfo;
      const dO = backend.makeOutput(o.shape, 'float32'), dg = backend.makeOutput(g.shape, 'float32');
      backend.device.headGateGrad(backend.ptr(inputs.dy as TensorInfo), backend.ptr(o), backend.ptr(g), backend.ptr(dO), backend.ptr(dg), rows, h);
      return [dO, dg];
    },
  },
];
