import type { BackendId, ModelConfig, OptimizerConfig } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import type { ParamLayout } from './layout';

/** Loss of one batch, split into its two terms (DESIGN.md §4). */
export interface LossParts {
  loss: number;
  reconstructionLoss: number;
  spikeLoss: number;
}

export interface ForwardResult extends LossParts {
  /** [rows, fieldSize], row-major. */
  fieldOutput: Float32Array;
  /** Mean of the output spikes over the T steps: [rows, fieldSize]. */
  spikeRates: Float32Array;
}

/** AdamW state in layout order; the two optimisers (field, spiking) keep their own step counts. */
export interface OptimizerState {
  m: Float32Array;
  v: Float32Array;
  fieldStep: number;
  spikeStep: number;
}

/**
 * A mixed-precision kernel's dynamic loss scaler (GradScaler.state_dict's scale and growth tracker),
 * with the count of steps skipped for overflow: saved in checkpoints so a resume continues it.
 */
export interface LossScalerState {
  scale: number;
  /** Steps in a row without overflow since the scale last changed. */
  growthTracker: number;
  skippedSteps: number;
}

export interface KernelMemory {
  tensors: number;
  bytes: number;
}

/** A value now (CPU kernels) or later (GPU kernels, whose readback is asynchronous). */
export type MaybePromise<T> = T | Promise<T>;

/**
 * What a kernel can do beyond the common contract, so callers test abilities, not classes (a
 * kernel they have never heard of, e.g. a GPU one, then takes the general path).
 */
export interface KernelCapabilities {
  /** Every method answers at once, never with a promise (the CPU kernels). */
  readonly synchronous: boolean;
  /**
   * The kernel reduces the shared-memory all-reduce itself: gradientView() gives its pending
   * gradients without a copy (to fill its slot) and allReduce() sums every slot into them. Without
   * it, callers readGradients(), reduce on the host and writeGradients() the mean.
   */
  readonly allReducesInPlace: boolean;
  /**
   * ZeRO-1 over the shared-memory exchange: the kernel reduces, updates and publishes one shard of
   * the layout (setUpdateShard, reduceShard, parameterView, momentViews, parametersChanged).
   */
  readonly shardsOptimizer?: boolean;
  /**
   * The kernel's parameters, moments and Wᵀ copies live once in a memory shared with the other
   * workers' kernels (simd in worker threads): each worker updates chunks of them (updateChunk)
   * straight from every worker's gradients, with no copy.
   */
  readonly sharedMemory?: boolean;
}

/** A piece of the optimiser update that any worker of a shared memory may take (see SimdSharedMemory). */
export interface UpdateChunk {
  /** [start, end) of the flat layout; never across the field/spiking boundary. */
  start: number;
  end: number;
  /** The weight matrix whose Wᵀ rows [rows[0], rows[1]) this chunk covers (simd kernel numbering), or -1. */
  matrix: number;
  rows: readonly [number, number];
}

/** Callbacks from inside computeGradients (the simd kernel calls them; others may ignore them). */
export interface GradientHooks {
  /** The field network's gradients are final (the spiking network's backward may still run); only called for a finite loss. */
  fieldGradientsReady?(): void;
}

/** Where a training step's time goes, in order (quadra bench --profile). */
export const STEP_PHASES = ['betweenSteps', 'forward', 'backward', 'gradientCopy', 'barrier', 'update', 'reduce', 'adamw', 'parameterShare', 'transposes'] as const;
export type StepPhase = (typeof STEP_PHASES)[number];
/** Milliseconds per phase, summed by whoever times them. */
export type StepPhases = Partial<Record<StepPhase, number>>;

/**
 * One compute backend's implementation of the model, reading and writing parameters, moments and
 * gradients as flat Float32Arrays in layout order. CPU kernels (tfjs, simd) answer at once; a GPU
 * kernel answers with promises, since WebGPU has no synchronous readback. Callers that serve every
 * backend (the worker) await each call; SyncModelKernel is the CPU kernels' narrower contract.
 */
export interface ModelKernel {
  readonly backend: BackendId;
  readonly model: ModelConfig;
  readonly layout: ParamLayout;
  readonly capabilities: KernelCapabilities;
  /** Forward and backward in training mode; the gradients wait inside until applyGradients. */
  computeGradients(batch: Float32Array, rows: number, dropoutSeed: number, hooks?: GradientHooks): MaybePromise<LossParts>;
  /** A copy of the pending gradients (spiking part zero when spikeGradient is 'none'). */
  readGradients(): MaybePromise<Float32Array>;
  /**
   * Replaces the pending gradients, e.g. with the all-reduced mean of every worker's. The kernel may
   * keep the array until the next applyGradients, so the caller must not change it before then.
   */
  writeGradients(gradients: Float32Array): MaybePromise<void>;
  /** One AdamW step of both optimisers with the pending gradients, which it consumes. */
  applyGradients(optimizer: OptimizerConfig): MaybePromise<void>;
  /** Evaluation forward: no dropout, no gradients. */
  forward(batch: Float32Array, rows: number): MaybePromise<ForwardResult>;
  getParameters(): MaybePromise<Float32Array>;
  setParameters(parameters: Float32Array): MaybePromise<void>;
  getOptimizerState(): MaybePromise<OptimizerState>;
  setOptimizerState(state: OptimizerState): MaybePromise<void>;
  memory(): KernelMemory;
  dispose(): void;
  /** 'mixed' for a kernel that computes matrix products in f16 (webgpu); CPU kernels are fp32. */
  readonly precision?: 'fp32' | 'mixed';
  /** Mixed precision only: the loss scaler's state (null for an fp32 kernel). */
  scalerState?(): MaybePromise<LossScalerState | null>;
  setScalerState?(state: LossScalerState): MaybePromise<void>;
  /** With capabilities.allReducesInPlace: the pending gradients in place (no copy), to copy into an all-reduce slot. */
  gradientView?(): Float32Array;
  /**
   * With capabilities.allReducesInPlace: replaces the pending gradients by Σ_r weights[r]·slots[r],
   * summed in rank order (every replica gets the same bits); this worker's own term (`rank`) is
   * read in place, not from its slot.
   */
  allReduce?(rank: number, weights: readonly number[], slots: readonly Float32Array[]): MaybePromise<void>;
  /** Profiling: the kernel adds the time of its own phases (forward, backward, adamw, transposes) into `phases`; null stops. */
  profilePhases?(phases: StepPhases | null): void;
  /**
   * With capabilities.shardsOptimizer: from now on applyGradients updates only [start, end) of the
   * layout (its moments and parameters); the other parameters come in through parameterView().
   */
  setUpdateShard?(start: number, end: number): void;
  /** With capabilities.shardsOptimizer: allReduce over [start, end) only, in the same rank order (the same bits). */
  reduceShard?(rank: number, weights: readonly number[], slots: readonly Float32Array[], start: number, end: number): void;
  /** With capabilities.shardsOptimizer: the parameters in place; call parametersChanged() after writing them. */
  parameterView?(): Float32Array;
  /** With capabilities.shardsOptimizer: Adam's moments in place. */
  momentViews?(): { m: Float32Array; v: Float32Array };
  /** With capabilities.shardsOptimizer: parameters were written through parameterView(). */
  parametersChanged?(): void;
  /**
   * With capabilities.sharedMemory: Σ_r weights[r]·(rank r's gradients, at gradientAddresses[r])
   * over the chunk, in rank order (the same bits whoever computes it), then AdamW and the Wᵀ rows
   * there, with the step count the next applyGradients will reach; that applyGradients then only
   * counts the step.
   */
  updateChunk?(chunk: UpdateChunk, weights: readonly number[], gradientAddresses: readonly number[], optimizer: OptimizerConfig): void;
  /** With capabilities.sharedMemory: the byte address of this kernel's gradients in the shared memory. */
  gradientAddress?(): number;
}

/** The CPU kernels' contract: every answer at once. */
export interface SyncModelKernel extends ModelKernel {
  readonly capabilities: KernelCapabilities & { readonly synchronous: true };
  computeGradients(batch: Float32Array, rows: number, dropoutSeed: number, hooks?: GradientHooks): LossParts;
  readGradients(): Float32Array;
  writeGradients(gradients: Float32Array): void;
  applyGradients(optimizer: OptimizerConfig): void;
  forward(batch: Float32Array, rows: number): ForwardResult;
  getParameters(): Float32Array;
  setParameters(parameters: Float32Array): void;
  getOptimizerState(): OptimizerState;
  setOptimizerState(state: OptimizerState): void;
  allReduce?(rank: number, weights: readonly number[], slots: readonly Float32Array[]): void;
}

/** loss = reconstruction + weight·spike loss (DESIGN.md §4), with both terms. */
export function lossParts(reconstructionLoss: number, spikeLoss: number, spikeLossWeight: number): LossParts {
  return { loss: reconstructionLoss + spikeLossWeight * spikeLoss, reconstructionLoss, spikeLoss };
}

/** A batch handed to a kernel: `rows` whole rows of `fieldSize` values. */
export function checkBatch(batch: Float32Array, rows: number, fieldSize: number): void {
  if (!Number.isInteger(rows) || rows < 1) {
    throw new QuadraError('SHAPE_MISMATCH', `batch: rows must be a positive whole number, got ${rows}`);
  }
  if (batch.length !== rows * fieldSize) {
    throw new QuadraError(
      'SHAPE_MISMATCH',
      `batch: expected shape [${rows}, ${fieldSize}] (${rows * fieldSize} values), got ${batch.length} values`,
      { expected: [rows, fieldSize], length: batch.length },
    );
  }
}

/** A flat array in layout order (parameters, moments, gradients) of the expected length. */
/** Both moments of an optimiser state hold one value per parameter. */
export function checkOptimizerState(state: OptimizerState, total: number): void {
  checkLength('optimizer m', state.m, total);
  checkLength('optimizer v', state.v, total);
}

export function checkLength(what: string, values: Float32Array, expected: number): void {
  if (values.length !== expected) {
    throw new QuadraError('SHAPE_MISMATCH', `${what}: expected ${expected} values in layout order, got ${values.length}`, {
      expected,
      length: values.length,
    });
  }
}
