import type { BackendId, Precision } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';

/** Why no backend computes below float32 (no Node import: the browser worker checks it too). */
export const PRECISION_NOTE =
  'TensorFlow.js computes in float32 only: fp16 and mixed precision are not available on any current tfjs backend';

/** Refuses fp16/mixed with the reason: tfjs has no reduced-precision compute, our WGSL kernels none yet. */
export function assertPrecisionSupported(precision: Precision, backend: BackendId): void {
  if (precision !== 'fp32') {
    const why = backend === 'webgpu' ? 'the fused WGSL kernels compute in float32 for now (mixed precision is not built yet)' : PRECISION_NOTE;
    throw new QuadraError('UNSUPPORTED', `precision '${precision}' is not available on backend '${backend}': ${why}. Use fp32.`, {
      field: 'precision',
    });
  }
}
