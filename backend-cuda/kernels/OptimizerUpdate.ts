// The fused optimiser kernels (native/optimizer.cu) behind fused/optimizer.ts: 'AdamUpdate'
// ({p, m, v, g} → [p', m', v']) and 'MuonMomentum' ({buf, g} → [buf', nesterov]), any shape, all
// operands float32 of one shape. Outputs are new buffers (the optimiser assigns them to its variables).
import * as tf from '@tensorflow/tfjs-core';
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { ADAM_UPDATE, MUON_MOMENTUM } from '../fused/optimizer.ts';
import type { CudaKernel } from './types.ts';

/** The named inputs, each present and float32, all of the first one's shape. */
function sameShapeFloat32(kernel: string, inputs: NamedTensorInfoMap, names: string[]): TensorInfo[] {
  const ts = names.map((name) => {
    const t = inputs[name] as TensorInfo | undefined;
    if (t == null) throw new Error(`${kernel}: input ${name} is missing`);
    if (t.dtype !== 'float32') throw new Error(`${kernel}: ${name} must be float32, got ${t.dtype}[${t.shape}]`);
    return t;
  });
  for (let i = 1; i < ts.length; i++) {
    if (!tf.util.arraysEqual(ts[i].shape, ts[0].shape)) {
      throw new Error(`${kernel}: ${names[i]} [${ts[i].shape}] and ${names[0]} [${ts[0].shape}] differ in shape`);
    }
  }
  return ts;
}

function finiteAttr(kernel: string, attrs: NamedAttrMap, name: string): number {
  const a = attrs[name];
  if (typeof a !== 'number' || !Number.isFinite(a)) throw new Error(`${kernel}: attr ${name} must be a finite number, got ${String(a)}`);
  return a;
}

export const optimizerKernels: CudaKernel[] = [
  {
    kernelName: ADAM_UPDATE,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const [p, m, v, g] = sameShapeFloat32(ADAM_UPDATE, inputs, ['p', 'm', 'v', 'g']);
      const [beta1, beta2, bc1, bc2, eps, lr] = ['beta1', 'beta2', 'bc1', 'bc2', 'eps', 'lr'].map((a) => finiteAttr(ADAM_UPDATE, attrs, a));
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
      const momentum = finiteAttr(MUON_MOMENTUM, attrs, 'momentum');
      const outs = [0, 1].map(() => backend.makeOutput(buf.shape, 'float32'));
      backend.device.muonMomentum(backend.ptr(buf), backend.ptr(g), backend.ptr(outs[0]), backend.ptr(outs[1]),
        tf.util.sizeFromShape(buf.shape), momentum);
      return outs;
    },
  },
];
