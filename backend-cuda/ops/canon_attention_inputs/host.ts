// CPU reference of canon_attention_inputs.cu's launchers, on the host device's memory (tests without a GPU): the two ops
// it fuses, one after the other through a float32 copy of the Canon layer's output u, by their own references
// (canon_conv/host.ts, attention_inputs/host.ts).
import type { HostDevice } from '../../host_device.ts';
import { attentionInputsHost } from '../attention_inputs/host.ts';
import { canonConvHost } from '../canon_conv/host.ts';
import type { CanonAttentionInputsNative } from './kernel.ts';

export function canonAttentionInputsHost(mem: HostDevice): CanonAttentionInputsNative {
  const canon = canonConvHost(mem), attentionInputs = attentionInputsHost(mem);
  /** f(u) with u = the Canon layer of x (the q and k heads normed where qkNorm), in a scratch buffer of B·T·C floats. */
  const withCanonOutput = (x: number, xBf16: boolean, w: number, docIds: number, B: number, T: number, H: number, Hk: number, h: number,
    qkNorm: boolean, eps: number, f: (u: number) => void) => {
    const C = (H + 2 * Hk) * h, u = mem.alloc(B * T * C * 4);
    try {
      canon.canonConv(x, xBf16, w, docIds, u, false, B, T, C, qkNorm ? (H + Hk) * h : 0, h, eps, false, false, 0, 0);
      f(u);
    } finally {
      mem.free(u);
    }
  };
  return {
    canonAttentionInputs(x, xBf16, w, docIds, cos, sin, lambdas, ve, q, k, v, outBf16, B, T, H, Hk, h, qkNorm, eps) {
      withCanonOutput(x, xBf16, w, docIds, B, T, H, Hk, h, qkNorm, eps,
        (u) => attentionInputs.attentionInputs(u, false, cos, sin, lambdas, ve, q, k, v, outBf16, B, T, H, Hk, h, false, eps));
    },
    canonAttentionInputsGrad(dq, dk, dv, kvBf16, x, xBf16, w, docIds, cos, sin, lambdas, ve, dx, dxBf16, dw, dwAcc, dlambdas, dve, veAcc,
      lambdasAcc, _partials, B, T, H, Hk, h, qkNorm, eps) {
      const C = (H + 2 * Hk) * h;
      withCanonOutput(x, xBf16, w, docIds, B, T, H, Hk, h, qkNorm, eps, (u) => {
        const du = mem.alloc(B * T * C * 4);  // u's gradient
        try {
          attentionInputs.attentionInputsGrad(dq, dk, dv, kvBf16, u, false, cos, sin, lambdas, ve, du, false, dlambdas, dve, veAcc,
            B, T, H, Hk, h, false, eps, lambdasAcc);
          canon.canonConvGrad(du, false, x, xBf16, w, docIds, dx, dxBf16, dw, dwAcc, 0, B, T, C, qkNorm ? (H + Hk) * h : 0, h, eps, false, 0, 0,
            false, 0, false, 0);
        } finally {
          mem.free(du);
        }
      });
    },
  };
}
