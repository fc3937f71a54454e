import type { BackendId, EngineConfig } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import type { BackendSelection } from './backends';
import { initialFieldState } from './init';
import type { ForwardResult, GradientHooks, LossParts, LossScalerState, MaybePromise, ModelKernel, OptimizerState, SyncModelKernel } from './kernel';
import type { ParamLayout } from './layout';
import { Rng } from './random';

/**
 * The engine itself, with no Node import: it runs wherever its kernel does (a Node worker, or a
 * Chromium page over the webgpu kernel). engine.ts adds what needs Node — choosing and starting a
 * backend, checkpoints — and keeps OscillatorEngine's API; a browser builds an EngineCore directly.
 */

/** Memory of the process or page the engine runs in; a browser may not know it. */
export interface HostMemory {
  rssBytes: number;
  heapUsedBytes: number;
}

export interface EngineParts<K extends ModelKernel> {
  config: EngineConfig;
  /** The chosen backend and the report of how it was chosen (backends.ts in Node; the page's own in a browser). */
  backend: BackendSelection;
  kernel: K;
  /** Data-parallel rank: dropout masks differ per rank, so shards see independent masks. */
  rank: number;
  hostMemory?: () => HostMemory;
}

const noHostMemory = (): HostMemory => ({ rssBytes: 0, heapUsedBytes: 0 });

export interface StepResult extends LossParts {
  /** Training steps completed, this one included. */
  step: number;
}

/** Everything needed to continue training exactly where it stopped. */
export interface EngineState {
  parameters: Float32Array;
  optimizer: OptimizerState;
  fieldState: Float32Array;
  step: number;
  /** Mixed precision: the loss scaler, continued on resume. */
  lossScaler?: LossScalerState | null;
}

export interface MemoryStats {
  backend: BackendId;
  tensors: number;
  tensorBytes: number;
  rssBytes: number;
  heapUsedBytes: number;
}

export interface BenchmarkResult {
  backend: BackendId;
  iterations: number;
  batchSize: number;
  totalTimeS: number;
  msPerStep: number;
  samplesPerSec: number;
}

/** What the engine answers over kernel K: at once for the CPU kernels, maybe later for a GPU kernel. */
export type Answer<K extends ModelKernel, T> = K extends SyncModelKernel ? T : MaybePromise<T>;

/** `next(value)` now, or once the promise resolves: one code path for both kinds of kernel. */
export function after<T, U>(value: MaybePromise<T>, next: (value: T) => MaybePromise<U>): MaybePromise<U> {
  return value instanceof Promise ? value.then(next) : next(value);
}

/**
 * The Quadra Matrix oscillator engine (DESIGN.md §4): a neural-field autoencoder and a LIF spiking
 * network trained together with two AdamW optimisers, on whichever backend the kernel runs. Over a
 * CPU kernel every method answers at once; over a GPU kernel they answer with promises, which the
 * training worker awaits. Built by OscillatorEngine.create/createForWorker in Node, or directly
 * from its parts (the browser worker).
 */
export class EngineCore<K extends ModelKernel = SyncModelKernel> {
  readonly config: EngineConfig;
  readonly backend: BackendSelection;
  readonly layout: ParamLayout;
  readonly rank: number;
  #kernel: K;
  #hostMemory: () => HostMemory;
  #fieldState: Float32Array;
  #step = 0;

  constructor({ config, backend, kernel, rank, hostMemory = noHostMemory }: EngineParts<K>) {
    this.config = config;
    this.backend = backend;
    this.layout = kernel.layout;
    this.rank = rank;
    this.#kernel = kernel;
    this.#hostMemory = hostMemory;
    this.#fieldState = initialFieldState(config.model.fieldSize, config.seed);
  }

  get step(): number {
    return this.#step;
  }

  get kernel(): K {
    return this.#kernel;
  }

  /** Forward, backward and one AdamW step. A non-finite loss stops before the update: DIVERGED. */
  trainStep(batch: Float32Array, rows = this.#rowsOf(batch)): Answer<K, StepResult> {
    return after(this.computeGradients(batch, rows) as MaybePromise<LossParts>, (parts) =>
      after(this.applyGradients() as MaybePromise<void>, () => ({ ...parts, step: this.#step })),
    ) as Answer<K, StepResult>;
  }

  /** First half of a step, for data-parallel training: gradients stay pending in the kernel. */
  computeGradients(batch: Float32Array, rows = this.#rowsOf(batch), hooks?: GradientHooks): Answer<K, LossParts> {
    return after(this.#kernel.computeGradients(batch, rows, this.#dropoutSeed(), hooks), (parts) => this.#finite(parts)) as Answer<K, LossParts>;
  }

  /** A non-finite loss stops the step before any update. */
  #finite(parts: LossParts): LossParts {
    if (!Number.isFinite(parts.loss)) {
      throw new QuadraError('DIVERGED', `loss became ${parts.loss} at step ${this.#step + 1}; parameters were left as they were before this step`, {
        step: this.#step + 1,
        reconstructionLoss: parts.reconstructionLoss,
        spikeLoss: parts.spikeLoss,
      });
    }
    return parts;
  }

  applyGradients(): Answer<K, void> {
    return after(this.#kernel.applyGradients(this.config.optimizer), () => {
      this.#step += 1;
    }) as Answer<K, void>;
  }

  /** Evaluation forward (no dropout, no gradients). */
  processBatch(batch: Float32Array, rows = this.#rowsOf(batch)): Answer<K, ForwardResult> {
    return this.#kernel.forward(batch, rows) as Answer<K, ForwardResult>;
  }

  /**
   * field ← field + rate·(f(x) − field), with f(x) the eval-mode field output averaged over the
   * rows of x (the reference broadcast a batch into the state's shape; a mean keeps it a vector).
   */
  updateField(x: Float32Array, rows = this.#rowsOf(x), rate = this.config.fieldUpdateRate): Answer<K, Float32Array> {
    const F = this.config.model.fieldSize;
    return after(this.#kernel.forward(x, rows), ({ fieldOutput }) => {
      for (let j = 0; j < F; j++) {
        let mean = 0;
        for (let i = 0; i < rows; i++) mean += fieldOutput[i * F + j]!;
        mean /= rows;
        this.#fieldState[j] = this.#fieldState[j]! + rate * (mean - this.#fieldState[j]!);
      }
      return Float32Array.from(this.#fieldState);
    }) as Answer<K, Float32Array>;
  }

  get fieldState(): Float32Array {
    return Float32Array.from(this.#fieldState);
  }

  getState(): Answer<K, EngineState> {
    const fieldState = Float32Array.from(this.#fieldState);
    const step = this.#step;
    const kernel = this.#kernel;
    return after(kernel.getParameters(), (parameters) =>
      after(kernel.getOptimizerState(), (optimizer) =>
        after(kernel.scalerState ? kernel.scalerState() : null, (lossScaler) => ({ parameters, optimizer, fieldState, step, ...(lossScaler ? { lossScaler } : {}) })),
      ),
    ) as Answer<K, EngineState>;
  }

  /** Restores a full state; partial states (e.g. weights only, from PyTorch) leave the rest as is. */
  setState(state: Partial<EngineState>): Answer<K, void> {
    // Check everything first: a state that fails part-way must change nothing.
    const total = this.layout.total;
    const expectLength = (what: string, values: Float32Array | undefined, expected: number) => {
      if (values && values.length !== expected) {
        throw new QuadraError('SHAPE_MISMATCH', `${what}: expected ${expected} values, got ${values.length}`, { field: what, expected, length: values.length });
      }
    };
    expectLength('parameters', state.parameters, total);
    expectLength('optimizer.m', state.optimizer?.m, total);
    expectLength('optimizer.v', state.optimizer?.v, total);
    expectLength('field_state', state.fieldState, this.config.model.fieldSize);
    for (const [what, value] of [['step', state.step], ['optimizer.fieldStep', state.optimizer?.fieldStep], ['optimizer.spikeStep', state.optimizer?.spikeStep]] as const) {
      if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
        throw new QuadraError('INVALID_ARGUMENT', `${what}: expected a whole number ≥ 0, got ${value}`, { field: what });
      }
    }
    if (state.fieldState) this.#fieldState = Float32Array.from(state.fieldState);
    if (state.step !== undefined) this.#step = state.step;
    const kernel = this.#kernel;
    return after(state.parameters ? kernel.setParameters(state.parameters) : undefined, () =>
      after(state.optimizer ? kernel.setOptimizerState(state.optimizer) : undefined, () =>
        // A scaler restores only onto a mixed-precision kernel; an fp32 one has none to continue.
        state.lossScaler && kernel.setScalerState && kernel.precision === 'mixed' ? kernel.setScalerState(state.lossScaler) : undefined,
      ),
    ) as Answer<K, void>;
  }

  memoryStats(): MemoryStats {
    const kernelMemory = this.#kernel.memory();
    return { backend: this.backend.id, tensors: kernelMemory.tensors, tensorBytes: kernelMemory.bytes, ...this.#hostMemory() };
  }

  /** The reference benchmark: 10 warm-up processBatch calls, then `iterations` timed trainSteps on N(0,1) data. */
  benchmark(this: EngineCore<SyncModelKernel>, iterations = 100): BenchmarkResult {
    if (!Number.isInteger(iterations) || iterations < 1) {
      throw new QuadraError('INVALID_ARGUMENT', `iterations must be a positive whole number, got ${iterations}`);
    }
    const batchSize = this.config.batchSize;
    const batch = new Rng(this.config.seed + 1).fillNormal(new Float32Array(batchSize * this.config.model.fieldSize), 1);
    for (let i = 0; i < 10; i++) this.processBatch(batch, batchSize);
    const start = performance.now();
    for (let i = 0; i < iterations; i++) this.trainStep(batch, batchSize);
    const totalTimeS = (performance.now() - start) / 1000;
    return {
      backend: this.backend.id,
      iterations,
      batchSize,
      totalTimeS,
      msPerStep: (totalTimeS * 1000) / iterations,
      samplesPerSec: (iterations * batchSize) / totalTimeS,
    };
  }

  dispose(): void {
    this.#kernel.dispose();
  }

  #dropoutSeed(): number {
    return Rng.derive(this.config.seed, this.rank, this.#step).nextUint32();
  }

  #rowsOf(batch: Float32Array): number {
    const F = this.config.model.fieldSize;
    if (batch.length === 0 || batch.length % F !== 0) {
      throw new QuadraError('SHAPE_MISMATCH', `batch: expected a multiple of fieldSize ${F} values ([rows, ${F}]), got ${batch.length}`);
    }
    return batch.length / F;
  }
}

