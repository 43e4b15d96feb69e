// tfjs_node.ts: the one place the project imports TensorFlow.js as a whole. Import it before using tf.
//
// tfjs-core alone has neither gradient functions nor chained ops (x.add(y)); in Node only the union
// package's CommonJS bundle registers them (tfjs-core's own register_all_gradients is ES modules with
// extensionless imports, which Node cannot load), so this imports @tensorflow/tfjs for that.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';

// tfjs-backend-cpu prints "Hi, looks like you are running TensorFlow.js in Node.js..." through tfjs's
// warn() on its first tensor whenever IS_NODE is set; the project picks its backend itself, and warn()
// is silent in PROD mode, which changes nothing else in tfjs-core 4.x (its checks follow DEBUG).
tf.env().set('PROD', true);
