// The fused optimiser updates' cuda kernels: 'AdamUpdate' ({p, m, v, g, gSum?} → [p', m', v']) and 'MuonMomentum'
// ({buf, g} → [buf', nesterov]), any shape, all operands float32 of one shape, over optimizer.cu's launchers.
// Outputs are new buffers (the optimiser assigns them to its variables); Adam's rounded outputs are stored in bf16.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { booleanAttr, describe, input, numberAttr, sameShapeFloat32 } from '../check.ts';
import type { CudaKernel } from '../../kernels/types.ts';
import { ADAM_UPDATE, MUON_MOMENTUM, NORMUON_UPDATE } from './optimizer.ts';

/** Elements per partial sum of a matrix's norms in norMuonUpdate (kNorMuonChunkElements in optimizer.h). */
export const NORMUON_CHUNK_ELEMENTS = 16384;
/** Floats of norMuonUpdate's scratch for n matrices of `size` elements (norMuonScratchFloats in optimizer.h). */
export const norMuonScratchFloats = (n: number, size: number) => n * Math.ceil(size / NORMUON_CHUNK_ELEMENTS) * 2 + n;

/** optimizer.cu's launchers (host.ts is their CPU reference). */
export interface OptimizerNative {
  /** Fused Adam over n values into new buffers: m' = β1·m + (1−β1)·g, v' = β2·v + (1−β2)·g²,
   * p' = p − lr·(m'/bc1)/(sqrt(v'/bc2) + eps); g is this step's gradient plus gSum (the earlier steps' sum) where gSum is
   * not 0, each rounded to bf16 before the sum and the sum after it where roundGrad. p is stored in bf16 where pBf16, m
   * and v where momentsBf16, else in float32; p' is stored in bf16 (rounded to nearest even) where roundParam, m' and v'
   * where roundMoments, else in float32. */
  adamUpdate(p: number, pBf16: boolean, m: number, v: number, momentsBf16: boolean, g: number, gSum: number, pOut: number,
    mOut: number, vOut: number, n: number, beta1: number, beta2: number, bc1: number, bc2: number, eps: number, lr: number,
    roundParam: boolean, roundMoments: boolean, roundGrad: boolean): void;
  /** Muon's momentum over n floats into new buffers: buf' = μ·buf + (1−μ)·g, nesterov = (1−μ)·g + μ·buf'; buf' stored
   * rounded to bf16 where roundBuf (nesterov from the unrounded buf'). */
  muonMomentum(buf: number, g: number, bufOut: number, nesterov: number, n: number, momentum: number, roundBuf: boolean): void;
  /** NorMuon's update of n wide orthogonalised updates o [n, r, c] (r ≤ c) with per-neuron mean squares v ([n, r] for a
   * square matrix, else [n, c]), weights w [n, r, c] and per-matrix scales [n], into new buffers u [n, r, c] and vOut:
   * vOut = β2·v + (1−β2)·mean(o²) per neuron; u = scale·(o/√max(vOut, 1e-10)·‖o‖/max(‖o/√max(vOut, 1e-10)‖, 1e-10)
   * + decay·w where that and w agree in sign). `scratch` holds norMuonScratchFloats(n, r·c) floats. */
  norMuonUpdate(o: number, v: number, w: number, scale: number, u: number, vOut: number, scratch: number, n: number, r: number,
    c: number, beta2: number, decay: number): void;
}

/** NorMuonUpdate's inputs: o and w float32 [n, r, c] with r ≤ c, v [n, r, 1] (square) or [n, 1, c], scale [n]. */
function norMuonInputs(inputs: NamedTensorInfoMap): { o: TensorInfo; v: TensorInfo; w: TensorInfo; scale: TensorInfo; dims: [number, number, number] } {
  const [o, w] = sameShapeFloat32(NORMUON_UPDATE, inputs, ['o', 'w']);
  const v = input(NORMUON_UPDATE, inputs, 'v'), scale = input(NORMUON_UPDATE, inputs, 'scale');
  if (o.shape.length !== 3 || o.shape[1] > o.shape[2]) throw new Error(`${NORMUON_UPDATE}: o must be [n, r, c] with r ≤ c (wide), got ${describe(o)}`);
  const [n, r, c] = o.shape;
  const neurons = r === c ? [n, r, 1] : [n, 1, c];
  if (v.shape.join() !== neurons.join()) throw new Error(`${NORMUON_UPDATE}: v must be [${neurons}] for o ${describe(o)}, got ${describe(v)}`);
  if (scale.shape.join() !== String(n)) throw new Error(`${NORMUON_UPDATE}: scale must be [${n}], got ${describe(scale)}`);
  return { o, v, w, scale, dims: [n, r, c] };
}

export const optimizerKernels: CudaKernel[] = [
  {
    kernelName: ADAM_UPDATE,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const [p, m, v, g, gSum] = sameShapeFloat32(ADAM_UPDATE, inputs, ['p', 'm', 'v', 'g', ...(inputs.gSum ? ['gSum'] : [])]);
      const [beta1, beta2, bc1, bc2, eps, lr] = ['beta1', 'beta2', 'bc1', 'bc2', 'eps', 'lr'].map((a) => numberAttr(ADAM_UPDATE, attrs, a));
      const [roundParam, roundMoments, roundGrad] = ['roundParam', 'roundMoments', 'roundGrad'].map((a) => booleanAttr(ADAM_UPDATE, attrs, a));
      // p, m and v read as stored (bf16 only: the state §5 keeps in bf16, as this kernel wrote it); what is rounded is
      // stored in bf16 only (half the bytes; a reader that needs float32 gets it widened)
      const ps = backend.storedValues(p), [ms, vs] = [m, v].map((t) => backend.storedValues(t)), momentsBf16 = ms.bf16 && vs.bf16;
      const [pOut, mOut, vOut] = [roundParam, roundMoments, roundMoments].map((bf16) => backend.makeStoredOutput(p.shape, bf16));
      backend.device.adamUpdate(ps.ptr, ps.bf16, momentsBf16 ? ms.ptr : backend.ptr(m), momentsBf16 ? vs.ptr : backend.ptr(v), momentsBf16,
        backend.ptr(g), gSum ? backend.ptr(gSum) : 0, pOut.ptr, mOut.ptr, vOut.ptr, tf.util.sizeFromShape(p.shape), beta1, beta2, bc1, bc2,
        eps, lr, roundParam, roundMoments, roundGrad);
      return [pOut.out, mOut.out, vOut.out];
    },
  },
  {
    kernelName: MUON_MOMENTUM,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const [buf, g] = sameShapeFloat32(MUON_MOMENTUM, inputs, ['buf', 'g']);
      const momentum = numberAttr(MUON_MOMENTUM, attrs, 'momentum'), roundBuf = booleanAttr(MUON_MOMENTUM, attrs, 'roundBuf');
      const outs = [0, 1].map(() => backend.makeOutput(buf.shape, 'float32'));
      backend.device.muonMomentum(backend.ptr(buf), backend.ptr(g), backend.ptr(outs[0]), backend.ptr(outs[1]),
        tf.util.sizeFromShape(buf.shape), momentum, roundBuf);
      return outs;
    },
  },
  {
    kernelName: NORMUON_UPDATE,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { o, v, w, scale, dims: [n, r, c] } = norMuonInputs(inputs);
      const [beta2, decay] = ['beta2', 'decay'].map((a) => numberAttr(NORMUON_UPDATE, attrs, a));
      const u = backend.makeOutput(o.shape, 'float32'), vOut = backend.makeOutput(v.shape, 'float32');
      const scratch = backend.makeOutput([norMuonScratchFloats(n, r * c)], 'float32');
      backend.device.norMuonUpdate(backend.ptr(o), backend.ptr(v), backend.ptr(w), backend.ptr(scale), backend.ptr(u), backend.ptr(vOut),
        backend.ptr(scratch), n, r, c, beta2, decay);
      backend.disposeIntermediateTensorInfo(scratch);
      return [u, vOut];
    },
  },
];
