// The architecture options every test of "each option works" goes through (model.md's block variants and the
// model's other switches), as flag overrides: the gradient check of test/model.test.ts and the wasm training
// smoke test of test/wasm_architectures.test.ts both iterate this one list, so a new option is tested by both.
import type { Config } from '../train_gpt.ts';

export const ARCHITECTURES: [string, Partial<Config>][] = [
  ['skip unet', { skip: 'unet' }],
  ['skip none', { skip: 'none' }],
  ['canon ABCD', { canon: 'ABCD' }],
  ['parallel', { parallel: true }],
  ['softpick', { attnScore: 'softpick' }],
  ['softmax1', { attnScore: 'softmax1' }],
  ['sas', { block: 'sas' }],
  ['sas-p', { block: 'sas-p' }],
  ['grouped-query attention', { kvHeads: 1 }],
  ['swiglu', { mlp: 'swiglu' }],
  ['tied embedding', { tieEmbed: true }],
  ['logit cap tanh, no block lambdas', { logitCap: 'tanh', blockLambdas: false }],
];
