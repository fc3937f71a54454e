/// <reference types="@webgpu/types" />
import type { BackendId, ModelConfig, OptimizerConfig } from '../../../src-shared/engine-config';
import { QuadraError } from '../../../src-shared/errors';
import { checkBatch, checkLength, checkOptimizerState, lossParts, type ForwardResult, type KernelMemory, type LossParts, type ModelKernel, type OptimizerState, type LossScalerState } from '../kernel';
import { entry, type ParamLayout } from '../layout';
import { spikeLossHost } from '../lif-host';
import { Rng } from '../random';
import { planRegions, type Regions } from './regions';
import { ENTRY_POINTS, kernelSource, MIXED_ENTRY_POINTS, NONE, PARAM_STRIDE, PARAM_WORDS, SCALER, TILE, WORKGROUP, type EntryPoint, type HalfPath } from './shaders';

// WebGPU's flag values, fixed by the spec; spelled out so the kernel needs no GPUBufferUsage global.
const BUFFER_MAP_READ = 0x0001;
const BUFFER_COPY_SRC = 0x0004;
const BUFFER_COPY_DST = 0x0008;
const BUFFER_UNIFORM = 0x0040;
const BUFFER_STORAGE = 0x0080;
const MAP_READ = 0x0001;
const STAGE_COMPUTE = 0x4;

/** Dispatches' parameter slots in the first uniform buffer; it grows when a program needs more. */
const INITIAL_SLOTS = 64;
/** Most workgroups along one dispatch dimension (WebGPU's default limit). */
const MAX_GROUPS = 65535;

export type WebGpuPrecision = 'fp32' | 'mixed';

/** PyTorch GradScaler's defaults; growth ×2 and backoff ×0.5 are fixed. */
export const DEFAULT_INITIAL_LOSS_SCALE = 2 ** 16;
export const DEFAULT_GROWTH_INTERVAL = 2000;

export interface WebGpuKernelOptions {
  /** Most rows one computeGradients may take; forward runs bigger batches in chunks of this many. */
  capacity: number;
  /**
   * 'fp32' [default]: everything in float32. 'mixed' (torch.cuda.amp): matrix products with f16
   * operands and f32 accumulation; LayerNorm, GELU, the losses, the spiking recurrences and AdamW
   * in f32 on f32 master weights; dynamic loss scaling.
   */
  precision?: WebGpuPrecision;
  /** How 'mixed' holds f16: 'native' needs a device with 'shader-f16'; default native when it has it, else 'packed'. */
  halfPath?: HalfPath;
  /** The loss scaler of 'mixed' (GradScaler's init_scale [2^16] and growth_interval [2000]). */
  lossScaling?: { initialScale?: number; growthInterval?: number };
}

export type { LossScalerState } from '../kernel';

/** The features to request on a device for `adapter` so the mixed kernel can use native f16. */
export function mixedPrecisionFeatures(adapter: { features: ReadonlySet<string> }): GPUFeatureName[] {
  return adapter.features.has('shader-f16') ? ['shader-f16'] : [];
}

/**
 * How to request the kernel's device on `adapter`: its largest buffer limits (so big batches fit)
 * and 'shader-f16' where the adapter has it (native f16 for precision 'mixed'; without it the
 * mixed kernel packs f16 into u32, same numbers).
 */
export function kernelDeviceDescriptor(adapter: Pick<GPUAdapter, 'features' | 'limits'>, label = 'quadra'): GPUDeviceDescriptor {
  const { maxStorageBufferBindingSize, maxBufferSize } = adapter.limits;
  return { label, requiredLimits: { maxStorageBufferBindingSize, maxBufferSize }, requiredFeatures: mixedPrecisionFeatures(adapter) };
}

interface Dispatch {
  entry: EntryPoint;
  params: number[];
  groups: [number, number];
}

interface Copy {
  /** Word offset in the arena (or `source`), and how many words. */
  from: number;
  length: number;
  source?: GPUBuffer;
}

/** An operand of a GEMM: element (i, k) is at arena[offset + i·rowStride + k·colStride]. */
interface Operand {
  offset: number;
  rowStride: number;
  colStride: number;
  /** A parameter tensor: the mixed kernel reads its f16 copy. */
  weights?: boolean;
}

function checkScale(scale: number): void {
  if (!(scale > 0) || !Number.isFinite(Math.fround(scale))) {
    throw new QuadraError('INVALID_ARGUMENT', `backend 'webgpu': a loss scale must be a positive float32, got ${scale}`, { field: 'lossScale' });
  }
}

/** The unbiased variance of one value is undefined (NaN, as in PyTorch). */
const spikeLossOf = (fromKernel: number, count: number): number => (count > 1 ? fromKernel : Number.NaN);

const f32Bits = (() => {
  const f = new Float32Array(1);
  const bits = new Uint32Array(f.buffer);
  return (value: number): number => {
    f[0] = value;
    return bits[0]!;
  };
})();

/**
 * The Quadra Matrix model as fused WGSL compute kernels on a GPUDevice (standard WebGPU only, so it
 * runs on dawn.node and in Chromium alike). With precision 'mixed' (torch.cuda.amp's recipe) the
 * matrix products take f16 operands: weights from an f16 copy of the f32 master parameters
 * refreshed after every update, activations and gradients rounded as the GEMM loads them (they
 * feed f32 LayerNorm, GELU and BPTT kernels too, so a stored f16 copy would only add a write); the
 * loss is scaled, the gradients unscaled, and an overflowing step skipped, all on the GPU. Parameters, Adam moments, gradients and activations
 * stay in one storage buffer in layout order; a training step is ~40 dispatches in one submit and
 * one 8-byte readback (the two loss terms). Every method encodes and submits its GPU work before
 * its first await, so the GPU runs calls in the order they were made. Arithmetic follows the simd
 * kernel's, so both agree to float rounding (dropout masks bit for bit).
 */
export class WebGpuKernel implements ModelKernel {
  readonly backend: BackendId = 'webgpu';
  readonly model: ModelConfig;
  readonly layout: ParamLayout;
  readonly capacity: number;
  /** Asynchronous (WebGPU readback); gradients cross to the host for the all-reduce. */
  readonly capabilities = { synchronous: false, allReducesInPlace: false } as const;
  readonly precision: WebGpuPrecision;
  /** How the mixed kernel holds f16 values; null in fp32. */
  readonly halfPath: HalfPath | null;
  /** For tests only: 'smooth' replaces the spike step by its smooth twin (see TfjsKernel). */
  spikeForward: 'heaviside' | 'smooth' = 'heaviside';

  #device: GPUDevice;
  #regions: Regions;
  #arena: GPUBuffer;
  #uniforms: GPUBuffer;
  #slots: number;
  #bindGroupLayout: GPUBindGroupLayout;
  #bindGroup: GPUBindGroup;
  #pipelines: Map<EntryPoint, GPUComputePipeline>;
  #offsets: Record<'W0' | 'B0' | 'G1' | 'Be1' | 'W4' | 'B4' | 'G5' | 'Be5' | 'Wd0' | 'Bd0' | 'Gd1' | 'Bed1' | 'Wd4' | 'Bd4' | 'F1w' | 'F1b' | 'F2w' | 'F2b' | 'F3w' | 'F3b', number>;
  /** The mixed kernel's loss scaler state (SCALER words) and f16 parameter copy; null in fp32. */
  #scaler: GPUBuffer | null;
  #halfWeights: GPUBuffer | null;
  #growthInterval: number;
  /** fp32's step counts (the mixed kernel's live on the GPU, in #scaler). */
  #fieldStep = 0;
  #spikeStep = 0;
  #pending = false;
  #disposed = false;
  #lostError: QuadraError | null = null;
  #lost: Promise<never>;

  /** Use createWebGpuKernel: pipeline creation is asynchronous (its errors arrive through error scopes). */
  private constructor(
    device: GPUDevice,
    model: ModelConfig,
    layout: ParamLayout,
    capacity: number,
    regions: Regions,
    arena: GPUBuffer,
    bindGroupLayout: GPUBindGroupLayout,
    pipelines: Map<EntryPoint, GPUComputePipeline>,
    mixed: { halfPath: HalfPath; scaler: GPUBuffer; halfWeights: GPUBuffer; growthInterval: number } | null,
  ) {
    this.#device = device;
    this.precision = mixed ? 'mixed' : 'fp32';
    this.halfPath = mixed?.halfPath ?? null;
    this.#scaler = mixed?.scaler ?? null;
    this.#halfWeights = mixed?.halfWeights ?? null;
    this.#growthInterval = mixed?.growthInterval ?? DEFAULT_GROWTH_INTERVAL;
    this.model = model;
    this.layout = layout;
    this.capacity = capacity;
    this.#regions = regions;
    this.#arena = arena;
    this.#bindGroupLayout = bindGroupLayout;
    this.#pipelines = pipelines;
    this.#slots = INITIAL_SLOTS;
    this.#uniforms = this.#createUniforms(this.#slots);
    this.#bindGroup = this.#createBindGroup();
    const at = (name: string) => entry(layout, name).offset;
    this.#offsets = {
      W0: at('field_network.encoder.0.weight'),
      B0: at('field_network.encoder.0.bias'),
      G1: at('field_network.encoder.1.weight'),
      Be1: at('field_network.encoder.1.bias'),
      W4: at('field_network.encoder.4.weight'),
      B4: at('field_network.encoder.4.bias'),
      G5: at('field_network.encoder.5.weight'),
      Be5: at('field_network.encoder.5.bias'),
      Wd0: at('field_network.decoder.0.weight'),
      Bd0: at('field_network.decoder.0.bias'),
      Gd1: at('field_network.decoder.1.weight'),
      Bed1: at('field_network.decoder.1.bias'),
      Wd4: at('field_network.decoder.4.weight'),
      Bd4: at('field_network.decoder.4.bias'),
      F1w: at('spike_network.fc1.weight'),
      F1b: at('spike_network.fc1.bias'),
      F2w: at('spike_network.fc2.weight'),
      F2b: at('spike_network.fc2.bias'),
      F3w: at('spike_network.fc3.weight'),
      F3b: at('spike_network.fc3.bias'),
    };
    this.#lost = device.lost.then((info) => {
      this.#lostError = new QuadraError('BACKEND_UNAVAILABLE', `backend 'webgpu': the GPU device was lost (${info.reason}): ${info.message || 'no message'}`, {
        reason: info.reason,
      });
      throw this.#lostError;
    });
    this.#lost.catch(() => {});
  }

  /** Builds the kernel; see createWebGpuKernel. */
  static async create(device: GPUDevice, model: ModelConfig, layout: ParamLayout, parameters: Float32Array, options: WebGpuKernelOptions): Promise<WebGpuKernel> {
    checkLength('parameters', parameters, layout.total);
    const capacity = options.capacity;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_GROUPS) {
      throw new QuadraError('INVALID_ARGUMENT', `backend 'webgpu': capacity must be a whole number of rows from 1 to ${MAX_GROUPS}, got ${capacity}`, { capacity });
    }
    const precision = options.precision ?? 'fp32';
    if (precision !== 'fp32' && precision !== 'mixed') {
      throw new QuadraError('INVALID_ARGUMENT', `backend 'webgpu': precision must be 'fp32' or 'mixed', got ${String(precision)}`, { field: 'precision' });
    }
    const mixed = precision === 'mixed';
    const nativeHalf = device.features.has('shader-f16');
    const halfPath: HalfPath | null = mixed ? (options.halfPath ?? (nativeHalf ? 'native' : 'packed')) : null;
    if (halfPath === 'native' && !nativeHalf) {
      throw new QuadraError('UNSUPPORTED', "backend 'webgpu': native f16 needs a device created with the 'shader-f16' feature (see mixedPrecisionFeatures)", { field: 'halfPath' });
    }
    const initialScale = options.lossScaling?.initialScale ?? DEFAULT_INITIAL_LOSS_SCALE;
    const growthInterval = options.lossScaling?.growthInterval ?? DEFAULT_GROWTH_INTERVAL;
    checkScale(initialScale);
    if (!Number.isInteger(growthInterval) || growthInterval < 1 || growthInterval > 0xffffffff) {
      throw new QuadraError('INVALID_ARGUMENT', `backend 'webgpu': the loss scaler's growthInterval must be a whole number of steps ≥ 1, got ${growthInterval}`, { field: 'growthInterval' });
    }
    const { fieldSize: F, hiddenSize: H, spikingHiddenSize: S, spikingSteps: T } = model;
    const regions = planRegions({ F, H, S, T, parameters: layout.total, capacity });
    const bytes = regions.total * 4;
    const limits = device.limits;
    if (bytes > limits.maxStorageBufferBindingSize || bytes > limits.maxBufferSize) {
      throw new QuadraError(
        'UNSUPPORTED',
        `backend 'webgpu': ${capacity} rows of this model need a ${Math.ceil(bytes / 2 ** 20)} MiB buffer; the device allows ${Math.floor(Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize) / 2 ** 20)} MiB (use a smaller batch)`,
        { field: 'batchSize', rows: capacity, bytes },
      );
    }
    const sharedBytes = (2 * S + WORKGROUP) * 4;
    if (sharedBytes > limits.maxComputeWorkgroupStorageSize) {
      throw new QuadraError(
        'UNSUPPORTED',
        `backend 'webgpu': spikingHiddenSize ${S} needs ${sharedBytes} bytes of workgroup memory; the device allows ${limits.maxComputeWorkgroupStorageSize}`,
        { field: 'spikingHiddenSize' },
      );
    }
    const at = (name: string) => entry(layout, name).offset;
    const code = kernelSource(
      {
        F,
        S,
        T,
        fc1b: at('spike_network.fc1.bias'),
        fc2w: at('spike_network.fc2.weight'),
        fc2b: at('spike_network.fc2.bias'),
        fc3w: at('spike_network.fc3.weight'),
        fc3b: at('spike_network.fc3.bias'),
        threshold: at('spike_network.threshold'),
        decay: at('spike_network.decay'),
      },
      regions,
      halfPath,
    );

    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ label: 'quadra kernel', code });
    const bindGroupLayout = device.createBindGroupLayout({
      label: 'quadra arena + params',
      entries: [
        { binding: 0, visibility: STAGE_COMPUTE, buffer: { type: 'storage' } },
        { binding: 1, visibility: STAGE_COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true, minBindingSize: PARAM_WORDS * 4 } },
        ...(mixed
          ? [
              { binding: 2, visibility: STAGE_COMPUTE, buffer: { type: 'storage' as const } },
              { binding: 3, visibility: STAGE_COMPUTE, buffer: { type: 'storage' as const } },
            ]
          : []),
      ],
    });
    const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout] });
    const pipelines = new Map<EntryPoint, GPUComputePipeline>();
    for (const name of mixed ? [...ENTRY_POINTS, ...MIXED_ENTRY_POINTS] : ENTRY_POINTS) {
      pipelines.set(name, device.createComputePipeline({ label: `quadra ${name}`, layout: pipelineLayout, compute: { module, entryPoint: name } }));
    }
    const arena = device.createBuffer({ label: 'quadra arena', size: bytes, usage: BUFFER_STORAGE | BUFFER_COPY_SRC | BUFFER_COPY_DST });
    const buffers = [arena];
    let mixedState: { halfPath: HalfPath; scaler: GPUBuffer; halfWeights: GPUBuffer; growthInterval: number } | null = null;
    if (halfPath) {
      const scaler = device.createBuffer({ label: 'quadra loss scaler', size: SCALER.words * 4, usage: BUFFER_STORAGE | BUFFER_COPY_SRC | BUFFER_COPY_DST });
      // Two f16 per word either way (one f16 each natively; pairs packed in a u32 otherwise).
      const halfWeights = device.createBuffer({ label: 'quadra f16 parameters', size: Math.ceil(layout.total / 2) * 4, usage: BUFFER_STORAGE });
      buffers.push(scaler, halfWeights);
      mixedState = { halfPath, scaler, halfWeights, growthInterval };
    }
    const validation = await device.popErrorScope();
    const memory = await device.popErrorScope();
    if (validation) {
      const info = await module.getCompilationInfo();
      const messages = info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
      for (const buffer of buffers) buffer.destroy();
      throw new QuadraError('INTERNAL', `backend 'webgpu': building the kernels failed: ${validation.message}${messages.length ? ` (${messages.join('; ')})` : ''}`);
    }
    if (memory) {
      for (const buffer of buffers) buffer.destroy();
      throw new QuadraError('UNSUPPORTED', `backend 'webgpu': the GPU is out of memory for ${capacity} rows of this model: ${memory.message}`, { field: 'batchSize', rows: capacity });
    }
    const kernel = new WebGpuKernel(device, model, layout, capacity, regions, arena, bindGroupLayout, pipelines, mixedState);
    device.queue.writeBuffer(arena, 0, parameters);
    if (mixedState) {
      kernel.#writeScaler({ scale: initialScale, growthTracker: 0, skippedSteps: 0 }, 0, 0);
      await kernel.#submit(kernel.#refreshHalfWeights([]), []);
    }
    return kernel;
  }

  async computeGradients(batch: Float32Array, rows: number, dropoutSeed: number): Promise<LossParts> {
    this.#assertAlive();
    checkBatch(batch, rows, this.model.fieldSize);
    this.#assertFits(rows);
    const surrogate = this.model.spikeGradient === 'surrogate';
    const p = this.model.dropout;
    const dropout = {
      threshold: p > 0 ? Math.floor(p * 4294967296) : 0,
      keep: p > 0 ? Math.fround(1 / (1 - p)) : 1,
      state1: Rng.deriveState(dropoutSeed, 1),
      state3: Rng.deriveState(dropoutSeed, 3),
    };
    const d: Dispatch[] = [];
    this.#fieldForward(d, rows, dropout);
    this.#dispatch(d, 'reconstruction', [rows * this.model.fieldSize, 1, f32Bits(2 / (rows * this.model.fieldSize))], 1);
    this.#spiking(d, rows, surrogate);
    this.#dispatch(d, 'spikeLoss', [rows * this.model.fieldSize, surrogate ? 1 : 0, f32Bits(this.model.spikeLossWeight)], 1);
    this.#fieldBackward(d, rows, dropout);
    if (surrogate) this.#spikingBackward(d, rows);
    // The mixed kernel hands out unscaled gradients (readGradients, the all-reduce, AdamW all see those).
    if (this.#scaler) this.#flat(d, 'unscale', [this.#gradientEnd()], this.#gradientEnd());
    const done = this.#submit(d, [{ from: this.#regions.RES, length: 2 }], batch);
    this.#pending = true;
    const results = await done;
    return lossParts(results[0]!, spikeLossOf(results[1]!, rows * this.model.fieldSize), this.model.spikeLossWeight);
  }

  async readGradients(): Promise<Float32Array> {
    this.#assertAlive();
    if (!this.#pending) throw new QuadraError('INTERNAL', 'readGradients: no gradients computed since the last update');
    const grads = await this.#submit([], [{ from: this.#regions.G, length: this.layout.total }]);
    // In 'none' mode the spiking parameters have no gradient (PyTorch: None): read as zeros.
    if (this.model.spikeGradient !== 'surrogate') grads.fill(0, this.layout.fieldCount);
    return grads;
  }

  async writeGradients(gradients: Float32Array): Promise<void> {
    this.#assertAlive();
    checkLength('gradients', gradients, this.layout.total);
    const done = this.#write(this.#regions.G, gradients);
    this.#pending = true;
    await done;
  }

  async applyGradients(opt: OptimizerConfig): Promise<void> {
    this.#assertAlive();
    if (!this.#pending) throw new QuadraError('INTERNAL', 'applyGradients: no gradients computed since the last update');
    if (this.#scaler) return this.#applyMixed(opt);
    const fieldStep = this.#fieldStep + 1;
    const updateSpike = this.model.spikeGradient === 'surrogate';
    const spikeStep = updateSpike ? this.#spikeStep + 1 : this.#spikeStep;
    const d: Dispatch[] = [];
    this.#adamw(d, 0, this.layout.fieldCount, fieldStep, opt);
    // Like PyTorch, parameters without a gradient ('none' mode: the spiking ones) are not touched.
    if (updateSpike) this.#adamw(d, this.layout.fieldCount, this.layout.total, spikeStep, opt);
    const done = this.#submit(d, []);
    this.#fieldStep = fieldStep;
    this.#spikeStep = spikeStep;
    this.#pending = false;
    await done;
  }

  /**
   * The mixed kernel's step, decided on the GPU with no readback: findInf raises the overflow flag
   * if a gradient (computed or written) is inf or NaN; scalerUpdate applies GradScaler's rules and
   * counts the step; AdamW does nothing when the flag is up; the f16 weights are refreshed.
   */
  async #applyMixed(opt: OptimizerConfig): Promise<void> {
    const end = this.#gradientEnd();
    const updateSpike = this.model.spikeGradient === 'surrogate';
    this.#device.queue.writeBuffer(this.#scaler!, SCALER.found * 4, new Uint32Array([0]));
    const d: Dispatch[] = [];
    this.#flat(d, 'findInf', [end], end);
    this.#dispatch(d, 'scalerUpdate', [this.#growthInterval, updateSpike ? 1 : 0], 1);
    this.#adamwMixed(d, 0, this.layout.fieldCount, opt, SCALER.fieldStep);
    if (updateSpike) this.#adamwMixed(d, this.layout.fieldCount, this.layout.total, opt, SCALER.spikeStep);
    const done = this.#submit(this.#refreshHalfWeights(d), []);
    this.#pending = false;
    await done;
  }

  /** The loss scale the next computeGradients multiplies the loss by (1 in fp32). */
  async lossScale(): Promise<number> {
    return (await this.scalerState())?.scale ?? 1;
  }

  /** How many steps the mixed kernel skipped for inf/NaN gradients (0 in fp32). */
  async skippedSteps(): Promise<number> {
    return (await this.scalerState())?.skippedSteps ?? 0;
  }

  /** The loss scaler's state, for a checkpoint; null in fp32 (no scaler). */
  async scalerState(): Promise<LossScalerState | null> {
    this.#assertAlive();
    if (!this.#scaler) return null;
    const words = await this.#readScaler();
    return { scale: new Float32Array(words.buffer, words.byteOffset + SCALER.scale * 4, 1)[0]!, growthTracker: words[SCALER.growthTracker]!, skippedSteps: words[SCALER.skipped]! };
  }

  /** Restores the loss scaler's state (from scalerState) when resuming a mixed-precision run. */
  async setScalerState(state: LossScalerState): Promise<void> {
    this.#assertAlive();
    if (!this.#scaler) throw new QuadraError('INVALID_ARGUMENT', "backend 'webgpu': an fp32 kernel has no loss scaler to restore", { field: 'precision' });
    checkScale(state.scale);
    for (const key of ['growthTracker', 'skippedSteps'] as const) {
      const value = state[key];
      if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
        throw new QuadraError('INVALID_ARGUMENT', `backend 'webgpu': the loss scaler's ${key} must be a whole number ≥ 0, got ${value}`, { field: key });
      }
    }
    const words = new Uint32Array([f32Bits(state.scale), state.growthTracker]);
    this.#device.queue.writeBuffer(this.#scaler, SCALER.scale * 4, words);
    await this.#writeWords(this.#scaler, SCALER.skipped, new Uint32Array([state.skippedSteps]));
  }

  async forward(batch: Float32Array, rows: number): Promise<ForwardResult> {
    this.#assertAlive();
    const F = this.model.fieldSize;
    checkBatch(batch, rows, F);
    const chunk = this.capacity;
    const parts: Array<Promise<Float32Array>> = [];
    for (let start = 0; start < rows; start += chunk) {
      const n = Math.min(chunk, rows - start);
      const d: Dispatch[] = [];
      this.#fieldForward(d, n, null);
      this.#dispatch(d, 'reconstruction', [n * F, 0, 0], 1);
      this.#spiking(d, n, false);
      this.#dispatch(d, 'spikeLoss', [n * F, 0, 0], 1);
      const r = this.#regions;
      parts.push(
        this.#submit(
          d,
          [
            { from: r.RES, length: 2 },
            { from: r.Y, length: n * F },
            { from: r.RATES, length: n * F },
          ],
          batch.subarray(start * F, (start + n) * F),
        ),
      );
    }
    const fieldOutput = new Float32Array(rows * F);
    const spikeRates = new Float32Array(rows * F);
    let squares = 0;
    let spikeLoss = 0;
    const results = await Promise.all(parts);
    results.forEach((result, i) => {
      const n = Math.min(chunk, rows - i * chunk);
      fieldOutput.set(result.subarray(2, 2 + n * F), i * chunk * F);
      spikeRates.set(result.subarray(2 + n * F), i * chunk * F);
      squares += result[0]! * n * F;
      spikeLoss = spikeLossOf(result[1]!, n * F);
    });
    // The spike loss couples every row (one variance over all of them): over chunks, on the host.
    if (results.length > 1) spikeLoss = spikeLossHost(spikeRates, null).loss;
    return { ...lossParts(squares / (rows * F), spikeLoss, this.model.spikeLossWeight), fieldOutput, spikeRates };
  }

  async getParameters(): Promise<Float32Array> {
    this.#assertAlive();
    return this.#submit([], [{ from: this.#regions.P, length: this.layout.total }]);
  }

  async setParameters(parameters: Float32Array): Promise<void> {
    this.#assertAlive();
    checkLength('parameters', parameters, this.layout.total);
    const done = this.#write(this.#regions.P, parameters);
    if (this.#scaler) await this.#submit(this.#refreshHalfWeights([]), []);
    await done;
  }

  async getOptimizerState(): Promise<OptimizerState> {
    this.#assertAlive();
    const n = this.layout.total;
    const [fieldStep, spikeStep] = [this.#fieldStep, this.#spikeStep];
    const both = await this.#submit(
      [],
      [
        { from: this.#regions.MOM, length: n },
        { from: this.#regions.VEL, length: n },
        ...(this.#scaler ? [{ from: 0, length: SCALER.words, source: this.#scaler }] : []),
      ],
    );
    if (this.#scaler) {
      const words = new Uint32Array(both.buffer, both.byteOffset + 2 * n * 4, SCALER.words);
      return { m: both.slice(0, n), v: both.slice(n, 2 * n), fieldStep: words[SCALER.fieldStep]!, spikeStep: words[SCALER.spikeStep]! };
    }
    return { m: both.slice(0, n), v: both.slice(n), fieldStep, spikeStep };
  }

  async setOptimizerState(state: OptimizerState): Promise<void> {
    this.#assertAlive();
    checkOptimizerState(state, this.layout.total);
    const m = this.#write(this.#regions.MOM, state.m);
    const v = this.#write(this.#regions.VEL, state.v);
    this.#fieldStep = state.fieldStep;
    this.#spikeStep = state.spikeStep;
    const steps = this.#scaler ? this.#writeWords(this.#scaler, SCALER.fieldStep, new Uint32Array([state.fieldStep, state.spikeStep])) : null;
    await Promise.all([m, v, steps]);
  }

  memory(): KernelMemory {
    return { tensors: 0, bytes: this.#disposed ? 0 : this.#arena.size + this.#uniforms.size + (this.#scaler?.size ?? 0) + (this.#halfWeights?.size ?? 0) };
  }

  /** Frees the kernel's buffers; the device stays the caller's. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#arena.destroy();
    this.#uniforms.destroy();
    this.#scaler?.destroy();
    this.#halfWeights?.destroy();
  }

  // ---- programs --------------------------------------------------------------------------------

  #fieldForward(d: Dispatch[], rows: number, dropout: { threshold: number; keep: number; state1: number; state3: number } | null): void {
    const { fieldSize: F, hiddenSize: H } = this.model;
    const H2 = 2 * H;
    const r = this.#regions;
    const o = this.#offsets;
    const train = dropout !== null;
    const mask = (state: number) => (dropout ? [state, dropout.threshold, f32Bits(dropout.keep)] : [0, 0, 0]);
    this.#linear(d, rows, H, F, r.X, o.W0, o.B0, r.XH1);
    this.#dispatch(d, 'lnGelu', [H, r.XH1, o.G1, o.Be1, r.R1, r.D1, train ? r.GG1 : NONE, ...mask(dropout?.state1 ?? 0)], rows);
    this.#linear(d, rows, H2, H, r.D1, o.W4, o.B4, r.XH2);
    this.#dispatch(d, 'lnGelu', [H2, r.XH2, o.G5, o.Be5, r.R2, r.A2, train ? r.GG2 : NONE, 0, 0, 0], rows);
    this.#linear(d, rows, H, H2, r.A2, o.Wd0, o.Bd0, r.XH3);
    this.#dispatch(d, 'lnGelu', [H, r.XH3, o.Gd1, o.Bed1, r.R3, r.D3, train ? r.GG3 : NONE, ...mask(dropout?.state3 ?? 0)], rows);
    this.#linear(d, rows, F, H, r.D3, o.Wd4, o.Bd4, r.Y);
  }

  /** out[rows, N] = x[rows, K]·Wᵀ + b for a PyTorch Linear weight W [N, K]. */
  #linear(d: Dispatch[], rows: number, N: number, K: number, x: number, w: number, b: number, out: number): void {
    this.#gemm(d, rows, N, K, { offset: x, rowStride: K, colStride: 1 }, { offset: w, rowStride: 1, colStride: K, weights: true }, out, N, b);
  }

  #spiking(d: Dispatch[], rows: number, keep: boolean): void {
    const { fieldSize: F, spikingHiddenSize: S } = this.model;
    this.#linear(d, rows, S, F, this.#regions.X, this.#offsets.F1w, this.#offsets.F1b, this.#regions.C1);
    this.#dispatch(d, 'spikeForward', [rows, keep ? 1 : 0, this.spikeForward === 'smooth' ? 1 : 0], rows);
  }

  #fieldBackward(d: Dispatch[], rows: number, dropout: { threshold: number; keep: number; state1: number; state3: number }): void {
    const { fieldSize: F, hiddenSize: H } = this.model;
    const H2 = 2 * H;
    const r = this.#regions;
    const o = this.#offsets;
    const G = r.G;
    const mask = (state: number) => [state, dropout.threshold, f32Bits(dropout.keep)];
    // One Linear layer's backward: dW = dyᵀ·x, db = Σ dy, and dx = dy·W (when wanted).
    const linearBack = (N: number, K: number, dy: number, x: number, w: number, b: number, dx: number | null) => {
      this.#gemm(d, N, K, rows, { offset: dy, rowStride: 1, colStride: N }, { offset: x, rowStride: K, colStride: 1 }, G + w, K);
      this.#colsum(d, rows, N, dy, G + b);
      if (dx !== null) this.#gemm(d, rows, K, N, { offset: dy, rowStride: N, colStride: 1 }, { offset: w, rowStride: K, colStride: 1, weights: true }, dx, K);
    };
    const normBack = (N: number, xh: number, gg: number, rstd: number, gain: number, beta: number, m: number[]) => {
      this.#dispatch(d, 'lnGeluBack', [N, r.BA, xh, gg, rstd, gain, r.DN, r.DH, ...m], rows);
      this.#dispatch(d, 'lnParamGrads', [rows, N, r.DN, xh, G + gain, G + beta], Math.ceil(N / WORKGROUP));
    };
    linearBack(F, H, r.DY, r.D3, o.Wd4, o.Bd4, r.BA);
    normBack(H, r.XH3, r.GG3, r.R3, o.Gd1, o.Bed1, mask(dropout.state3));
    linearBack(H, H2, r.DH, r.A2, o.Wd0, o.Bd0, r.BA);
    normBack(H2, r.XH2, r.GG2, r.R2, o.G5, o.Be5, [0, 0, 0]);
    linearBack(H2, H, r.DH, r.D1, o.W4, o.B4, r.BA);
    normBack(H, r.XH1, r.GG1, r.R1, o.G1, o.Be1, mask(dropout.state1));
    linearBack(H, F, r.DH, r.X, o.W0, o.B0, null);
  }

  #spikingBackward(d: Dispatch[], rows: number): void {
    const { fieldSize: F, spikingHiddenSize: S, spikingSteps: T } = this.model;
    const r = this.#regions;
    const o = this.#offsets;
    const G = r.G;
    const TB = T * rows;
    this.#dispatch(d, 'spikeBackward', [rows], rows);
    // dfc3 = du3ᵀ·s2, dfc2 = du2ᵀ·s1 over every step and row; dfc1 = dc1ᵀ·x.
    this.#gemm(d, F, S, TB, { offset: r.DU3, rowStride: 1, colStride: F }, { offset: r.S2, rowStride: S, colStride: 1 }, G + o.F3w, S);
    this.#colsum(d, TB, F, r.DU3, G + o.F3b);
    this.#gemm(d, S, S, TB, { offset: r.DU2, rowStride: 1, colStride: S }, { offset: r.S1, rowStride: S, colStride: 1 }, G + o.F2w, S);
    this.#colsum(d, TB, S, r.DU2, G + o.F2b);
    this.#gemm(d, S, F, rows, { offset: r.DC1, rowStride: 1, colStride: S }, { offset: r.X, rowStride: F, colStride: 1 }, G + o.F1w, F);
    this.#colsum(d, rows, S, r.DC1, G + o.F1b);
    this.#dispatch(d, 'spikeScalars', [rows], 1);
  }

  /** The mixed kernel's AdamW on [start, end): its step count is scaler word `stepWord`, on the GPU. */
  #adamwMixed(d: Dispatch[], start: number, end: number, o: OptimizerConfig, stepWord: number): void {
    // The bias corrections come from ln β on the GPU, where the step count lives.
    this.#adamwDispatch(d, start, end, o, [f32Bits(o.learningRate), f32Bits(Math.log(o.beta1))], [f32Bits(Math.log(o.beta2)), stepWord]);
  }

  #adamw(d: Dispatch[], start: number, end: number, step: number, o: OptimizerConfig): void {
    // The same scalars as the host AdamW and the simd kernel (computed in double), then float32.
    this.#adamwDispatch(d, start, end, o, [f32Bits(o.learningRate / (1 - o.beta1 ** step)), f32Bits(1 / Math.sqrt(1 - o.beta2 ** step))], []);
  }

  /** One AdamW dispatch over [start, end): the shared scalars, then the two bias-correction words, ε, the moments, and any tail. */
  #adamwDispatch(d: Dispatch[], start: number, end: number, o: OptimizerConfig, correction: [number, number], tail: number[]): void {
    if (end <= start) return;
    const groups = Math.ceil((end - start) / WORKGROUP);
    const x = Math.min(groups, MAX_GROUPS);
    const params = [
      start,
      end,
      f32Bits(o.beta1),
      f32Bits(1 - o.beta1),
      f32Bits(o.beta2),
      f32Bits(1 - o.beta2),
      f32Bits(1 - o.learningRate * o.weightDecay),
      ...correction,
      f32Bits(o.epsilon),
      this.#regions.MOM,
      this.#regions.VEL,
      ...tail,
    ];
    d.push({ entry: 'adamw', params, groups: [x, Math.ceil(groups / x)] });
  }

  #gemm(d: Dispatch[], M: number, N: number, K: number, a: Operand, b: Operand, c: number, ldc: number, bias = NONE): void {
    const params = [M, N, K, a.offset, a.rowStride, a.colStride, b.offset, b.rowStride, b.colStride, c, ldc, bias, 0];
    if (this.#scaler) params.push(b.weights ? 1 : 0);
    d.push({ entry: 'gemm', params, groups: [Math.ceil(N / TILE), Math.ceil(M / TILE)] });
  }

  #colsum(d: Dispatch[], rows: number, N: number, src: number, dst: number): void {
    this.#dispatch(d, 'colsum', [rows, N, src, dst], Math.ceil(N / WORKGROUP));
  }

  #dispatch(d: Dispatch[], entryPoint: EntryPoint, params: number[], groups: number): void {
    d.push({ entry: entryPoint, params, groups: [groups, 1] });
  }

  /** A dispatch of `threads` threads, WORKGROUP a group, in a 2-D grid when one row would be too long. */
  #flat(d: Dispatch[], entryPoint: EntryPoint, params: number[], threads: number): void {
    const groups = Math.max(1, Math.ceil(threads / WORKGROUP));
    const x = Math.min(groups, MAX_GROUPS);
    d.push({ entry: entryPoint, params, groups: [x, Math.ceil(groups / x)] });
  }

  /** Appends the refresh of the f16 parameter copy to `d` (after an update or a write). */
  #refreshHalfWeights(d: Dispatch[]): Dispatch[] {
    const n = this.layout.total;
    this.#flat(d, 'toHalf', [n], this.halfPath === 'native' ? n : Math.ceil(n / 2));
    return d;
  }

  /** Where the gradients that exist end: the spiking ones have none in 'none' mode. */
  #gradientEnd(): number {
    return this.model.spikeGradient === 'surrogate' ? this.layout.total : this.layout.fieldCount;
  }

  #writeScaler(state: LossScalerState, fieldStep: number, spikeStep: number): void {
    const words = new Uint32Array(SCALER.words);
    words[SCALER.scale] = f32Bits(state.scale);
    words[SCALER.growthTracker] = state.growthTracker;
    words[SCALER.skipped] = state.skippedSteps;
    words[SCALER.fieldStep] = fieldStep;
    words[SCALER.spikeStep] = spikeStep;
    this.#device.queue.writeBuffer(this.#scaler!, 0, words);
  }

  async #readScaler(): Promise<Uint32Array> {
    const values = await this.#submit([], [{ from: 0, length: SCALER.words, source: this.#scaler! }]);
    return new Uint32Array(values.buffer, values.byteOffset, values.length);
  }

  // ---- submission and readback -----------------------------------------------------------------

  /**
   * Encodes the dispatches (after writing `input` to X), then the copies into one staging buffer,
   * and submits, all before returning; the promise resolves with the copied floats once mapped.
   */
  #submit(dispatches: Dispatch[], copies: Copy[], input?: Float32Array): Promise<Float32Array> {
    const device = this.#device;
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    if (dispatches.length > this.#slots) {
      this.#uniforms.destroy();
      this.#slots = Math.ceil(dispatches.length / INITIAL_SLOTS) * INITIAL_SLOTS;
      this.#uniforms = this.#createUniforms(this.#slots);
      this.#bindGroup = this.#createBindGroup();
    }
    if (input) device.queue.writeBuffer(this.#arena, this.#regions.X * 4, input);
    if (dispatches.length > 0) {
      const words = new Uint32Array((dispatches.length * PARAM_STRIDE) / 4);
      dispatches.forEach((dispatch, i) => words.set(dispatch.params, (i * PARAM_STRIDE) / 4));
      device.queue.writeBuffer(this.#uniforms, 0, words);
    }
    const encoder = device.createCommandEncoder();
    if (dispatches.length > 0) {
      const pass = encoder.beginComputePass();
      dispatches.forEach((dispatch, i) => {
        pass.setPipeline(this.#pipelines.get(dispatch.entry)!);
        pass.setBindGroup(0, this.#bindGroup, [i * PARAM_STRIDE]);
        pass.dispatchWorkgroups(dispatch.groups[0], dispatch.groups[1]);
      });
      pass.end();
    }
    const total = copies.reduce((sum, c) => sum + c.length, 0);
    let staging: GPUBuffer | null = null;
    if (total > 0) {
      staging = device.createBuffer({ label: 'quadra readback', size: total * 4, usage: BUFFER_MAP_READ | BUFFER_COPY_DST });
      let at = 0;
      for (const copy of copies) {
        encoder.copyBufferToBuffer(copy.source ?? this.#arena, copy.from * 4, staging, at * 4, copy.length * 4);
        at += copy.length;
      }
    }
    device.queue.submit([encoder.finish()]);
    const validation = device.popErrorScope();
    const memory = device.popErrorScope();
    return this.#guard(
      (async () => {
        const [invalid, outOfMemory] = await Promise.all([validation, memory]);
        if (invalid) throw new QuadraError('INTERNAL', `backend 'webgpu': a kernel dispatch was invalid: ${invalid.message}`);
        if (outOfMemory) throw new QuadraError('UNSUPPORTED', `backend 'webgpu': the GPU ran out of memory: ${outOfMemory.message}`);
        if (!staging) return new Float32Array(0);
        try {
          await staging.mapAsync(MAP_READ);
        } catch (error) {
          throw this.#lostError ?? new QuadraError('BACKEND_UNAVAILABLE', `backend 'webgpu': reading results back failed (the device may be lost): ${String(error)}`);
        }
        const values = new Float32Array(staging.getMappedRange().slice(0));
        staging.unmap();
        staging.destroy();
        return values;
      })(),
    );
  }

  /** Writes `values` into the arena at a float offset (queued in call order, like every submit). */
  #write(offset: number, values: Float32Array): Promise<void> {
    return this.#writeWords(this.#arena, offset, values);
  }

  #writeWords(buffer: GPUBuffer, offset: number, values: Float32Array | Uint32Array): Promise<void> {
    const device = this.#device;
    device.pushErrorScope('validation');
    device.queue.writeBuffer(buffer, offset * 4, values);
    const validation = device.popErrorScope();
    return this.#guard(
      validation.then((error) => {
        if (error) throw new QuadraError('INTERNAL', `backend 'webgpu': writing to the GPU failed: ${error.message}`);
      }),
    );
  }

  /** The work's result, or the device-lost error if the device goes first (no promise hangs). */
  #guard<T>(work: Promise<T>): Promise<T> {
    work.catch(() => {});
    return Promise.race([work, this.#lost]);
  }

  #createUniforms(slots: number): GPUBuffer {
    return this.#device.createBuffer({ label: 'quadra dispatch params', size: slots * PARAM_STRIDE, usage: BUFFER_UNIFORM | BUFFER_COPY_DST });
  }

  #createBindGroup(): GPUBindGroup {
    return this.#device.createBindGroup({
      layout: this.#bindGroupLayout,
      entries: [
        { binding: 0, resource: { buffer: this.#arena } },
        { binding: 1, resource: { buffer: this.#uniforms, size: PARAM_WORDS * 4 } },
        ...(this.#scaler && this.#halfWeights
          ? [
              { binding: 2, resource: { buffer: this.#scaler } },
              { binding: 3, resource: { buffer: this.#halfWeights } },
            ]
          : []),
      ],
    });
  }

  #assertFits(rows: number): void {
    if (rows > this.capacity) {
      throw new QuadraError('SHAPE_MISMATCH', `batch: ${rows} rows exceed the webgpu kernel's capacity of ${this.capacity} rows`, { rows, capacity: this.capacity });
    }
  }

  #assertAlive(): void {
    if (this.#lostError) throw this.#lostError;
    if (this.#disposed) throw new QuadraError('INTERNAL', 'this engine has been disposed');
  }
}

/**
 * The fused WebGPU kernel on `device` (the caller's, which it never destroys), with `parameters`
 * in layout order and room for `capacity` rows per training step. Rejects with a QuadraError when
 * the model does not fit the device's limits or the kernels fail to build.
 */
export function createWebGpuKernel(device: GPUDevice, model: ModelConfig, layout: ParamLayout, parameters: Float32Array, options: WebGpuKernelOptions): Promise<WebGpuKernel> {
  return WebGpuKernel.create(device, model, layout, parameters, options);
}
