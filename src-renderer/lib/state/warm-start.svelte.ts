import type { ModelConfig } from '../../../src-shared/engine-config';

/** A checkpoint to train a new run from, as the Checkpoints view hands it to the wizard. */
export interface WarmStart {
  checkpointId: number;
  runId: number;
  runName: string;
  step: number;
  epoch: number;
  /** The checkpoint's model: the wizard takes its sizes (they must match the weights). */
  model: Partial<ModelConfig>;
}

let pending = $state.raw<WarmStart | null>(null);

/** Asks the wizard to start from `warm` the next time it shows. */
export function requestWarmStart(warm: WarmStart): void {
  pending = warm;
}

/** The pending warm start, handed over once. */
export function takeWarmStart(): WarmStart | null {
  const warm = pending;
  pending = null;
  return warm;
}
