import type { BackendId, Precision } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';

/** Why no backend computes below float32 (no Node import: the browser worker checks it too). */
export const PRECISION_NOTE =
  'TensorFlow.js computes in float32 only: fp16 and mixed precision are not available on any current tfjs backend';

/**
 * Refuses what a backend cannot compute, with the reason: 'mixed' (f16 matrix products, f32
 * accumulation, loss scaling) runs on webgpu only; pure 'fp16' training nowhere.
 */
export function assertPrecisionSupported(precision: Precision, backend: BackendId): void {
  if (precision === 'mixed' && backend === 'webgpu') return;
  if (precision !== 'fp32') {
    const why =
      backend === 'webgpu'
        ? "pure f16 training loses too much: use 'mixed' (f16 products, f32 master weights and loss scaling)"
        : backend === 'simd'
          ? 'the fused WebAssembly kernel computes in float32 (WebAssembly has no f16 arithmetic); mixed precision runs on the webgpu backend'
          : `${PRECISION_NOTE}; mixed precision runs on the webgpu backend`;
    throw new QuadraError('UNSUPPORTED', `precision '${precision}' is not available on backend '${backend}': ${why}. Use fp32.`, {
      field: 'precision',
    });
  }
}
