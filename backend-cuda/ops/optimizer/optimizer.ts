// Fused optimiser updates: the kernels train_gpt.ts's adamUpdate() and muonMomentum() hand to a backend
// that registers them (runFused); their composites in train_gpt.ts are the implementation everywhere
// else and the tests' oracle. Each reads every input once and writes every output once, instead of a
// chain of ~6–14 elementwise kernels over whole parameter-sized tensors.
//   'AdamUpdate'   {p, m, v, g, gSum?}, {beta1, beta2, bc1, bc2, eps, lr, roundParam, roundMoments, roundGrad} → [p', m', v']:
//                  m' = β1·m + (1−β1)·g,  v' = β2·v + (1−β2)·g²,  p' = p − lr·(m'/bc1)/(sqrt(v'/bc2) + eps), g this
//                  step's gradient plus gSum (the earlier steps' since the last Adam step) where given
//   'MuonMomentum' {buf, g}, {momentum} → [buf', nesterov]:
//                  buf' = μ·buf + (1−μ)·g,  nesterov = (1−μ)·g + μ·buf'
//   'NorMuonUpdate' {o, v, w, scale}, {beta2, decay} → [u, v']: NorMuon's normalisation, cautious weight decay and
//                  shape scale of a batch of orthogonalised updates (train_gpt.ts's normuonUpdate())
// They run outside any gradient tape (optimiser state is not differentiated), so they register no
// gradient: differentiating through one fails in tfjs with "gradient function not found for AdamUpdate".
import { float32Inputs, type FusedKernelSpec } from '../fused_kernel.ts';

export const ADAM_UPDATE = 'AdamUpdate';
export const MUON_MOMENTUM = 'MuonMomentum';
export const NORMUON_UPDATE = 'NorMuonUpdate';

export const adamUpdate: FusedKernelSpec = { name: ADAM_UPDATE, supports: inputs => float32Inputs(inputs, 'p', 'm', 'v', 'g', 'gSum') };
export const muonMomentum: FusedKernelSpec = { name: MUON_MOMENTUM, supports: inputs => float32Inputs(inputs, 'buf', 'g') };
export const normuonUpdate: FusedKernelSpec = { name: NORMUON_UPDATE, supports: inputs => float32Inputs(inputs, 'o', 'v', 'w', 'scale') };
