// The fused optimiser updates' cuda kernels: 'AdamUpdate' ({p, m, v, g} → [p', m', v']) and 'MuonMomentum'
// ({buf, g} → [buf', nesterov]), any shape, all operands float32 of one shape, over optimizer.cu's launchers.
// Outputs are new buffers (the optimiser assigns them to its variables).
import * as tf from '@tensorflow/tfjs-core';
import { numberAttr, sameShapeFloat32 } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { ADAM_UPDATE, MUON_MOMENTUM } from './optimizer.ts';

/** optimizer.cu's launchers (host.ts is their CPU reference). */
export interface OptimizerNative {
  /** Fused Adam over n floats into new buffers: m' = β1·m + (1−β1)·g, v' = β2·v + (1−β2)·g²,
   * p' = p − lr·(m'/bc1)/(sqrt(v'/bc2) + eps). */
  adamUpdate(p: number, m: number, v: number, g: number, pOut: number, mOut: number, vOut: number, n: number,
    beta1: number, beta2: number, bc1: number, bc2: number, eps: number, lr: number): void;
  /** Muon's momentum over n floats into new buffers: buf' = μ·buf + (1−μ)·g, nesterov = (1−μ)·g + μ·buf'. */
  muonMomentum(buf: number, g: number, bufOut: number, nesterov: number, n: number, momentum: number): void;
}

export const optimizerKernels: CudaKernel[] = [
  {
    kernelName: ADAM_UPDATE,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const [p, m, v, g] = sameShapeFloat32(ADAM_UPDATE, inputs, ['p', 'm', 'v', 'g']);
      const [beta1, beta2, bc1, bc2, eps, lr] = ['beta1', 'beta2', 'bc1', 'bc2', 'eps', 'lr'].map((a) => numberAttr(ADAM_UPDATE, attrs, a));
      const outs = [0, 1, 2].map(() => backend.makeOutput(p.shape, 'float32'));
      const [pOut, mOut, vOut] = outs.map((t) => backend.ptr(t));
      backend.device.adamUpdate(backend.ptr(p), backend.ptr(m), backend.ptr(v), backend.ptr(g), pOut, mOut, vOut,
        tf.util.sizeFromShape(p.shape), beta1, beta2, bc1, bc2, eps, lr);
      return outs;
    },
  },
  {
    kernelName: MUON_MOMENTUM,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const [buf, g] = sameShapeFloat32(MUON_MOMENTUM, inputs, ['buf', 'g']);
      const momentum = numberAttr(MUON_MOMENTUM, attrs, 'momentum');
      const outs = [0, 1].map(() => backend.makeOutput(buf.shape, 'float32'));
      backend.device.muonMomentum(backend.ptr(buf), backend.ptr(g), backend.ptr(outs[0]), backend.ptr(outs[1]),
        tf.util.sizeFromShape(buf.shape), momentum);
      return outs;
    },
  },
];
