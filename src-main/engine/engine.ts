import type { BackendId, EngineConfig, EngineConfigInput } from '../../src-shared/engine-config';
import { parseEngineConfig } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import { queryGpus } from '../hardware/nvidia-smi';
import { assertPrecisionSupported, selectBackend, type BackendSelection, type GpuSituation } from './backends';
import { encodeCheckpoint, type CheckpointContents, type EncodeOptions } from './checkpoint';
import { after, EngineCore, type Answer, type EngineState, type HostMemory } from './engine-core';
import { initialParameters } from './init';
import type { MaybePromise, ModelKernel, SyncModelKernel } from './kernel';
import { buildLayout, type ParamLayout } from './layout';
import { SimdKernel, type SimdMemoryPlacement } from './simd/simd-kernel';
import { TfjsKernel } from './tfjs-kernel';

export interface EngineOptions {
  config?: EngineConfigInput;
  /** 'auto' (default) walks the backend chain; a named backend must start or creation fails. */
  backend?: BackendId | 'auto';
  /** GPUs already detected by the caller; detected here (nvidia-smi) when absent. */
  gpu?: GpuSituation;
  /** Data-parallel rank: dropout masks differ per rank, so shards see independent masks. */
  rank?: number;
  /** simd in worker threads: this worker's place in the memory the workers' kernels share. */
  placement?: SimdMemoryPlacement;
}

export type { Answer, BenchmarkResult, EngineState, HostMemory, MemoryStats, StepResult } from './engine-core';

/** This process's memory, for memoryStats. */
const nodeMemory = (): HostMemory => {
  const usage = process.memoryUsage();
  return { rssBytes: usage.rss, heapUsedBytes: usage.heapUsed };
};

/**
 * The Quadra Matrix oscillator engine in Node: EngineCore (engine-core.ts, the model's training
 * logic, no Node imports) with the backend chosen and started here and checkpoints. Over a CPU
 * kernel (the default, `create`) every method answers at once; over a GPU kernel
 * (`createForWorker`) they answer with promises, which the training worker awaits.
 */
export class OscillatorEngine<K extends ModelKernel = SyncModelKernel> extends EngineCore<K> {
  private constructor(config: EngineConfig, backend: BackendSelection, kernel: K, rank: number) {
    super({ config, backend, kernel, rank, hostMemory: nodeMemory });
  }

  /** An engine on a CPU backend (or the tfjs GPU one): every method answers at once. */
  static async create(options: EngineOptions = {}): Promise<OscillatorEngine> {
    return OscillatorEngine.#withSyncKernel(await prepare(options), options.rank ?? 0, options.placement);
  }

  static #withSyncKernel({ config, backend, layout, parameters }: Prepared, rank: number, placement?: SimdMemoryPlacement): OscillatorEngine {
    if (backend.id === 'webgpu') {
      throw new QuadraError('UNSUPPORTED', 'the webgpu backend answers asynchronously; it trains in workers (quadra train, quadra bench --workers N)', { backend: 'webgpu' });
    }
    const kernel: SyncModelKernel =
      backend.id === 'simd'
        ? new SimdKernel(config.model, layout, parameters, { capacity: config.batchSize, ...(placement ? { placement } : {}) })
        : new TfjsKernel(backend.id, config.model, layout, parameters);
    if (placement && backend.id !== 'simd') {
      kernel.dispose();
      throw new QuadraError('INTERNAL', `a shared-memory placement is for the simd backend, but this worker started '${backend.id}'`, { backend: backend.id });
    }
    return new OscillatorEngine(config, backend, kernel, rank);
  }

  /** An engine on any backend, the webgpu one (dawn.node) included, for callers that await every answer (the worker). */
  static async createForWorker(options: EngineOptions = {}): Promise<OscillatorEngine<ModelKernel>> {
    const prepared = await prepare(options);
    const { config, backend, layout, parameters } = prepared;
    if (backend.id !== 'webgpu') return OscillatorEngine.#withSyncKernel(prepared, options.rank ?? 0, options.placement);
    const { createWebGpuKernel } = await import('./webgpu/webgpu-kernel');
    const { nodeGpuDevice } = await import('./webgpu-node');
    const device = await nodeGpuDevice();
    if (!device) throw new QuadraError('BACKEND_UNAVAILABLE', 'webgpu: no WebGPU adapter found');
    const kernel = await createWebGpuKernel(device, config.model, layout, parameters, { capacity: config.batchSize, precision: config.precision === 'mixed' ? 'mixed' : 'fp32' });
    return new OscillatorEngine<ModelKernel>(config, backend, kernel, options.rank ?? 0);
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
