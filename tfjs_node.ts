// tfjs_node.ts: the one place the project sets up TensorFlow.js in Node. Import it before using tf.
//
// tfjs-core alone has neither gradient functions nor chained ops (x.add(y)); its own modules that register them
// (register_all_gradients, register_all_chained_ops) are ES modules with extensionless imports, which Node cannot
// load. The union package @tensorflow/tfjs ships them in a CommonJS bundle, with webgl, layers, converter and data
// (half of a 474 MB install). Instead esbuild (a dependency already: tsx runs on it) bundles tfjs-core's two
// modules once into build/, keyed by tfjs-core's version; the registries they fill are tfjs's global ones.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// The chained ops' types (x.add(y) on Tensor), declared by tfjs-core's module; erased at run time.
import type {} from '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';
import { buildSync } from 'esbuild';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(fileURLToPath(import.meta.url));
const bundle = join(ROOT, 'build', `tfjs-core-${tf.version_core}-registrations.cjs`);
if (!existsSync(bundle)) {
  mkdirSync(dirname(bundle), { recursive: true });
  const part = `${bundle}.${process.pid}.part`; // processes that start together each write their own, then rename
  buildSync({
    stdin: {
      contents: "import '@tensorflow/tfjs-core/dist/register_all_gradients';\nimport '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';\n",
      resolveDir: ROOT,
    },
    bundle: true, platform: 'node', format: 'cjs', outfile: part, logLevel: 'silent',
  });
  renameSync(part, bundle);
}
createRequire(import.meta.url)(bundle);

// tfjs-backend-cpu prints "Hi, looks like you are running TensorFlow.js in Node.js..." through tfjs's
// warn() on its first tensor whenever IS_NODE is set; the project picks its backend itself, and warn()
// is silent in PROD mode, which changes nothing else in tfjs-core 4.x (its checks follow DEBUG).
tf.env().set('PROD', true);
