import type { BackendId, EngineConfig, EngineConfigInput } from '../../src-shared/engine-config';
import { parseEngineConfig } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import { queryGpus } from '../hardware/nvidia-smi';
import { assertPrecisionSupported, selectBackend, type BackendSelection, type GpuSituation } from './backends';
import { encodeCheckpoint, type CheckpointContents, type EncodeOptions } from './checkpoint';
import { initialFieldState, initialParameters } from './init';
import type { ForwardResult, LossParts, MaybePromise, ModelKernel, OptimizerState, SyncModelKernel } from './kernel';
import { buildLayout, type ParamLayout } from './layout';
import { Rng } from './random';
import { SimdKernel } from './simd/simd-kernel';
import { TfjsKernel } from './tfjs-kernel';

export interface EngineOptions {
  config?: EngineConfigInput;
  /** 'auto' (default) walks the backend chain; a named backend must start or creation fails. */
  backend?: BackendId | 'auto';
  /** GPUs already detected by the caller; detected here (nvidia-smi) when absent. */
  gpu?: GpuSituation;
  /** Data-parallel rank: dropout masks differ per rank, so shards see independent masks. */
  rank?: number;
}

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
function after<T, U>(value: MaybePromise<T>, next: (value: T) => MaybePromise<U>): MaybePromise<U> {
  return value instanceof Promise ? value.then(next) : next(value);
}

/**
 * The Quadra Matrix oscillator engine (DESIGN.md §4): a neural-field autoencoder and a LIF spiking
 * network trained together with two AdamW optimisers, on whichever backend the kernel runs. Over a
 * CPU kernel (the default, `create`) every method answers at once; over a GPU kernel
 * (`createForWorker`) they answer with promises, which the training worker awaits.
 */
export class OscillatorEngine<K extends ModelKernel = SyncModelKernel> {
  readonly config: EngineConfig;
  readonly backend: BackendSelection;
  readonly layout: ParamLayout;
  readonly rank: number;
  #kernel: K;
  #fieldState: Float32Array;
  #step = 0;

  private constructor(config: EngineConfig, backend: BackendSelection, kernel: K, rank: number) {
    this.config = config;
    this.backend = backend;
    this.layout = kernel.layout;
    this.rank = rank;
    this.#kernel = kernel;
    this.#fieldState = initialFieldState(config.model.fieldSize, config.seed);
  }

  /** An engine on a CPU backend (or the tfjs GPU one): every method answers at once. */
  static async create(options: EngineOptions = {}): Promise<OscillatorEngine> {
    return OscillatorEngine.#withSyncKernel(await prepare(options), options.rank ?? 0);
  }

  static #withSyncKernel({ config, backend, layout, parameters }: Prepared, rank: number): OscillatorEngine {
    if (backend.id === 'webgpu') {
      throw new QuadraError('UNSUPPORTED', 'the webgpu backend answers asynchronously; it trains in workers (quadra train, quadra bench --workers N)', { backend: 'webgpu' });
    }
    const kernel: SyncModelKernel =
      backend.id === 'simd'
        ? new SimdKernel(config.model, layout, parameters, { capacity: config.batchSize })
        : new TfjsKernel(backend.id, config.model, layout, parameters);
    return new OscillatorEngine(config, backend, kernel, rank);
  }

  /** An engine on any backend, the webgpu one included, for callers that await every answer (the worker). */
  static async createForWorker(options: EngineOptions = {}): Promise<OscillatorEngine<ModelKernel>> {
    const prepared = await prepare(options);
    const { config, backend, layout, parameters } = prepared;
    if (backend.id !== 'webgpu') return OscillatorEngine.#withSyncKernel(prepared, options.rank ?? 0) as OscillatorEngine<ModelKernel>;
    const { createWebGpuKernel } = await import('./webgpu/webgpu-kernel');
    const { nodeGpuDevice } = await import('./webgpu-node');
    const device = await nodeGpuDevice();
    if (!device) throw new QuadraError('BACKEND_UNAVAILABLE', 'webgpu: no WebGPU adapter found');
    const kernel = await createWebGpuKernel(device, config.model, layout, parameters, { capacity: config.batchSize });
    return new OscillatorEngine<ModelKernel>(config, backend, kernel, options.rank ?? 0);
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
  computeGradients(batch: Float32Array, rows = this.#rowsOf(batch)): Answer<K, LossParts> {
    return after(this.#kernel.computeGradients(batch, rows, this.#dropoutSeed()), (parts) => this.#finite(parts)) as Answer<K, LossParts>;
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
    return after(this.#kernel.getParameters(), (parameters) =>
      after(this.#kernel.getOptimizerState(), (optimizer) => ({ parameters, optimizer, fieldState, step })),
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
    return after(state.parameters ? this.#kernel.setParameters(state.parameters) : undefined, () =>
      state.optimizer ? this.#kernel.setOptimizerState(state.optimizer) : undefined,
    ) as Answer<K, void>;
  }

  /**
   * Loads a decoded (already fully validated) checkpoint. Only the architecture must match; a
   * weights-only file (e.g. from PyTorch) keeps the current optimiser state, field state and step.
   */
  loadCheckpoint(contents: CheckpointContents): Answer<K, void> {
    const mine = this.config.model;
    for (const key of ['fieldSize', 'hiddenSize', 'spikingHiddenSize'] as const) {
      if (contents.model[key] !== mine[key]) {
        throw new QuadraError('SHAPE_MISMATCH', `checkpoint has ${key} ${contents.model[key]}, this engine has ${mine[key]}`, {
          field: key,
          expected: mine[key],
          found: contents.model[key],
        });
      }
    }
    return this.setState({
      parameters: contents.parameters,
      ...(contents.optimizer ? { optimizer: contents.optimizer } : {}),
      ...(contents.fieldState ? { fieldState: contents.fieldState } : {}),
      ...(contents.step !== null ? { step: contents.step } : {}),
    });
  }

  /** The engine's full state as a safetensors checkpoint (PyTorch state_dict names). */
  toCheckpoint(options: EncodeOptions = {}): Answer<K, Uint8Array> {
    return after(this.getState() as MaybePromise<EngineState>, (state) =>
      encodeCheckpoint({ config: this.config, ...state, backend: this.backend.id }, options),
    ) as Answer<K, Uint8Array>;
  }

  memoryStats(): MemoryStats {
    const kernelMemory = this.#kernel.memory();
    const usage = process.memoryUsage();
    return {
      backend: this.backend.id,
      tensors: kernelMemory.tensors,
      tensorBytes: kernelMemory.bytes,
      rssBytes: usage.rss,
      heapUsedBytes: usage.heapUsed,
    };
  }

  /** The reference benchmark: 10 warm-up processBatch calls, then `iterations` timed trainSteps on N(0,1) data. */
  benchmark(this: OscillatorEngine, iterations = 100): BenchmarkResult {
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

interface Prepared {
  config: EngineConfig;
  backend: BackendSelection;
  layout: ParamLayout;
  parameters: Float32Array;
}

/** Config, backend and first parameters, the same for every kind of kernel. */
async function prepare(options: EngineOptions): Promise<Prepared> {
  const config = parseEngineConfig(options.config ?? {});
  const requested = options.backend ?? 'auto';
  if (requested !== 'auto') assertPrecisionSupported(config.precision, requested);
  const layout = buildLayout(config.model);
  const gpu = options.gpu ?? (await detectGpus(requested));
  const backend = await selectBackend(requested, gpu, config.model);
  assertPrecisionSupported(config.precision, backend.id);
  return { config, backend, layout, parameters: initialParameters(layout, config.seed) };
}

async function detectGpus(requested: BackendId | 'auto'): Promise<GpuSituation> {
  // Only the GPU backend needs to know; skip the nvidia-smi call when it cannot be chosen.
  if (requested !== 'auto' && requested !== 'tensorflow-gpu') {
    return { gpus: [], nvidiaSmi: { available: false, reason: 'not checked (a non-GPU backend was requested)' } };
  }
  const { status, gpus } = await queryGpus();
  return { gpus, nvidiaSmi: status };
}
