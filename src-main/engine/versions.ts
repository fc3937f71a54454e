import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Software versions recorded in checkpoints and benchmark fingerprints. */
export function versions(): Record<string, string> {
  const pkg = require('../../package.json') as { version: string };
  const out: Record<string, string> = { quadra: pkg.version, tfjs: tf.version.tfjs, node: process.versions.node };
  if (process.versions.electron) out.electron = process.versions.electron;
  return out;
}
