import type { ModelConfig, OptimizerConfig } from '../../../src-shared/engine-config';
import { QuadraError } from '../../../src-shared/errors';
import {
  checkBatch,
  checkLength,
  checkOptimizerState,
  lossParts,
  type ForwardResult,
  type GradientHooks,
  type KernelCapabilities,
  type KernelMemory,
  type LossParts,
  type SyncModelKernel,
  type OptimizerState,
  type StepPhase,
  type StepPhases,
  type UpdateChunk,
} from '../kernel';
import { spikeLossHost } from '../lif-host';
import type { ParamLayout } from '../layout';
import { Rng } from '../random';
import { probeSimd, simdModelProblem, type SimdModule } from './module';

/** The exports of assembly/quadra.ts (addresses are byte offsets into the module's memory). */
interface KernelExports {
  /** Absent from the shared-memory build, which imports its memory. */
  memory?: WebAssembly.Memory;
  heapBase(): number;
  configure(fieldSize: number, hidden: number, spiking: number, steps: number, capacity: number, base: number): number;
  configureShared(fieldSize: number, hidden: number, spiking: number, steps: number, capacity: number, sharedBase: number, ownBase: number): number;
  sharedEnd(): number;
  refreshTransposeRows(matrix: number, r0: number, r1: number): void;
  trainBackwardField(rows: number): void;
  reduceTablePtr(): number;
  reduceAdamw(n: number, start: number, end: number, beta1: number, oneMinusBeta1: number, beta2: number, oneMinusBeta2: number, decayFactor: number, stepSize: number, invSqrtBc2: number, eps: number): void;
  trainBackwardSpiking(rows: number): void;
  writeConstants(): void;
  parameterCount(): number;
  fieldCount(): number;
  paramsPtr(): number;
  momentsPtr(): number;
  velocitiesPtr(): number;
  gradsPtr(): number;
  inputPtr(): number;
  outputPtr(): number;
  ratesPtr(): number;
  resultPtr(): number;
  refreshTransposes(spiking: number): void;
  reduceScratchPtr(): number;
  reduceTerm(src: number, weight: number, mode: number, start: number, end: number): void;
  trainForward(rows: number, state1: number, state3: number, threshold: number, keep: number, surrogate: number, spikeWeight: number, smooth: number): void;
  trainBackward(rows: number, surrogate: number): void;
  forward(rows: number, smooth: number): void;
  adamw(start: number, end: number, beta1: number, oneMinusBeta1: number, beta2: number, oneMinusBeta2: number, decayFactor: number, stepSize: number, invSqrtBc2: number, eps: number): void;
}

/** AdamW's per-step scalars, in the kernel's argument order: β1, 1−β1, β2, 1−β2, decay factor, step size, 1/√bc2, ε. */
type AdamwScalars = [number, number, number, number, number, number, number, number];

const PAGE = 65536;
/** wasm32's ceiling (4 GiB), minus a page: what memory.grow can reach at most. */
const MAX_BYTES = 65535 * PAGE;
/** Evaluation forwards run in chunks of at least this many rows, so a big validation batch needs no big memory. */
export const FORWARD_CHUNK = 256;

/**
 * One worker's place in a memory shared by every worker thread's kernel (planned by
 * shared-memory.ts): parameters, moments and Wᵀ at sharedBase, the same for all; this worker's
 * gradients and activations at ownBase.
 */
export interface SimdMemoryPlacement {
  memory: WebAssembly.Memory;
  sharedBase: number;
  ownBase: number;
  /** Rows the own regions hold (no growth in a shared memory): every step's shard and every forward chunk fit. */
  capacity: number;
}

/**
 * The Quadra Matrix model on the fused wasm SIMD kernel: one module instance per kernel with its
 * own linear memory. Parameters, Adam moments and gradients live there in layout order; JS reads
 * and writes them through typed-array views. Single-threaded and synchronous, like the tfjs host
 * path, so it runs unchanged in a worker thread.
 */
export class SimdKernel implements SyncModelKernel {
  readonly backend = 'simd' as const;
  /**
   * Gradients live in the module's memory: the all-reduce sums into them there (allReduce). In a
   * memory shared with the other workers, they update chunks of the one parameter copy (updateChunk).
   */
  readonly capabilities: KernelCapabilities & { readonly synchronous: true };
  readonly model: ModelConfig;
  readonly layout: ParamLayout;
  readonly relaxed: boolean;
  /** For tests only: 'smooth' replaces the spike step by its smooth twin (see TfjsKernel). */
  spikeForward: 'heaviside' | 'smooth' = 'heaviside';

  #x: KernelExports;
  #memory: WebAssembly.Memory;
  #placement: SimdMemoryPlacement | null;
  #ownBytes = 0;
  /** The weights last written into the all-reduce table (updateChunk rewrites it when they change). */
  #tableWeights: readonly number[] | null = null;
  #capacity = 0;
  #base: number;
  #fieldStep = 0;
  #spikeStep = 0;
  #pending = false;
  #disposed = false;
  /** ZeRO-1: the range of the layout applyGradients updates (null: all of it). */
  #shard: [number, number] | null = null;
  /** Parameters changed since the Wᵀ copies were written: 0 no, 1 the field ones, 2 all of them. */
  #stale = 0;
  #phases: StepPhases | null = null;

  constructor(model: ModelConfig, layout: ParamLayout, initialParameters: Float32Array, options: { module?: SimdModule; capacity?: number; placement?: SimdMemoryPlacement } = {}) {
    const problem = simdModelProblem(model);
    if (problem) throw new QuadraError('BACKEND_UNAVAILABLE', `backend 'simd': ${problem}`, { field: 'model' });
    let module = options.module;
    if (!module) {
      const probe = probeSimd();
      if (!probe.available) throw new QuadraError('BACKEND_UNAVAILABLE', `backend 'simd' is not available: ${probe.reason}`);
      module = probe.module;
    }
    this.model = model;
    this.layout = layout;
    this.relaxed = module.relaxed;
    const placement = options.placement ?? null;
    this.#placement = placement;
    this.capabilities = { synchronous: true, allReducesInPlace: true, shardsOptimizer: placement === null, sharedMemory: placement !== null };
    if (placement) {
      if (!module.shared) throw new QuadraError('BACKEND_UNAVAILABLE', "backend 'simd': the shared-memory build of the kernel is missing (run `npm run build:wasm`)");
      this.#x = new WebAssembly.Instance(module.shared, { env: { memory: placement.memory, abort: wasmAbort } }).exports as unknown as KernelExports;
      this.#memory = placement.memory;
      this.#base = placement.ownBase;
      const end = this.#x.configureShared(model.fieldSize, model.hiddenSize, model.spikingHiddenSize, model.spikingSteps, placement.capacity, placement.sharedBase, placement.ownBase);
      if (end > placement.memory.buffer.byteLength || this.#x.sharedEnd() > placement.ownBase) {
        throw new QuadraError('INTERNAL', `simd shared memory: regions up to byte ${end} do not fit the plan (${placement.memory.buffer.byteLength} bytes, own base ${placement.ownBase})`);
      }
      this.#capacity = placement.capacity;
      this.#ownBytes = end - placement.ownBase;
    } else {
      this.#x = new WebAssembly.Instance(module.module, { env: { abort: wasmAbort } }).exports as unknown as KernelExports;
      this.#memory = this.#x.memory!;
      this.#base = this.#x.heapBase();
      this.#configure(Math.max(1, options.capacity ?? 64));
    }
    this.#x.writeConstants();
    if (this.#x.parameterCount() !== layout.total || this.#x.fieldCount() !== layout.fieldCount) {
      throw new QuadraError(
        'INTERNAL',
        `simd kernel layout (${this.#x.parameterCount()} parameters, ${this.#x.fieldCount()} field) differs from the engine's (${layout.total}, ${layout.fieldCount})`,
      );
    }
    checkLength('parameters', initialParameters, layout.total);
    this.#view(this.#x.paramsPtr(), layout.total).set(initialParameters);
    this.#x.refreshTransposes(1);
  }

  /** `hooks.fieldGradientsReady` runs between the field and the spiking backward, and only for a finite loss (else no backward runs). */
  computeGradients(batch: Float32Array, rows: number, dropoutSeed: number, hooks?: GradientHooks): LossParts {
    this.#assertAlive();
    checkBatch(batch, rows, this.model.fieldSize);
    this.#ensureCapacity(rows);
    this.#refreshIfStale();
    this.#view(this.#x.inputPtr(), batch.length).set(batch);
    const p = this.model.dropout;
    const threshold = p > 0 ? Math.floor(p * 4294967296) : 0;
    const keep = p > 0 ? Math.fround(1 / (1 - p)) : 1;
    const surrogate = this.model.spikeGradient === 'surrogate' ? 1 : 0;
    let t = this.#phases ? performance.now() : 0;
    this.#x.trainForward(rows, Rng.deriveState(dropoutSeed, 1), Rng.deriveState(dropoutSeed, 3), threshold, keep, surrogate, this.model.spikeLossWeight, this.spikeForward === 'smooth' ? 1 : 0);
    if (this.#phases) t = this.#lap('forward', t);
    const losses = this.#losses();
    const ready = hooks?.fieldGradientsReady;
    if (!ready) {
      this.#x.trainBackward(rows, surrogate);
    } else if (Number.isFinite(losses.loss)) {
      this.#x.trainBackwardField(rows);
      ready();
      if (surrogate) this.#x.trainBackwardSpiking(rows);
    }
    if (this.#phases) this.#lap('backward', t);
    this.#pending = true;
    return losses;
  }

  readGradients(): Float32Array {
    this.#assertAlive();
    if (!this.#pending) throw new QuadraError('INTERNAL', 'readGradients: no gradients computed since the last update');
    const copy = this.#view(this.#x.gradsPtr(), this.layout.total).slice();
    // In 'none' mode the spiking parameters have no gradient (PyTorch: None): read as zeros.
    if (this.model.spikeGradient !== 'surrogate') copy.fill(0, this.layout.fieldCount);
    return copy;
  }

  writeGradients(gradients: Float32Array): void {
    this.#assertAlive();
    checkLength('gradients', gradients, this.layout.total);
    this.#view(this.#x.gradsPtr(), this.layout.total).set(gradients);
    this.#pending = true;
  }

  /** The pending gradients in place (no copy), e.g. to copy them into an all-reduce slot. */
  gradientView(): Float32Array {
    this.#assertAlive();
    return this.#view(this.#x.gradsPtr(), this.layout.total);
  }

  /**
   * Replaces the pending gradients by Σ_r weights[r]·slots[r], computed in the kernel (SIMD) in
   * rank order: every replica runs the same operations on the same values and gets the same bits.
   * This worker's own term (`rank`) is read in place; each peer's slot is copied in first.
   */
  allReduce(rank: number, weights: readonly number[], slots: readonly Float32Array[]): void {
    this.#assertAlive();
    const n = slots.length;
    for (let r = 0; r < n; r++) {
      checkLength(`gradient slot ${r}`, slots[r]!, this.layout.total);
      let src = this.#x.gradsPtr();
      if (r !== rank) {
        src = this.#x.reduceScratchPtr();
        this.#view(src, this.layout.total).set(slots[r]!);
      }
      const mode = n === 1 ? 3 : r === 0 ? 0 : r === n - 1 ? 2 : 1;
      this.#x.reduceTerm(src, weights[r]!, mode, 0, this.layout.total);
    }
    this.#pending = true;
  }

  /** allReduce over [start, end) only: each peer's part of that range is copied in, then summed in rank order. */
  reduceShard(rank: number, weights: readonly number[], slots: readonly Float32Array[], start: number, end: number): void {
    this.#assertAlive();
    const n = slots.length;
    if (start < 0 || end > this.layout.total || start > end || start % 4 !== 0) {
      throw new QuadraError('INTERNAL', `reduceShard: [${start}, ${end}) is not a 4-aligned range of ${this.layout.total} parameters`);
    }
    if (end > start) {
      for (let r = 0; r < n; r++) {
        let src = this.#x.gradsPtr();
        if (r !== rank) {
          src = this.#x.reduceScratchPtr();
          this.#view(src + start * 4, end - start).set(slots[r]!.subarray(start, end));
        }
        const mode = n === 1 ? 3 : r === 0 ? 0 : r === n - 1 ? 2 : 1;
        this.#x.reduceTerm(src, weights[r]!, mode, start, end);
      }
    }
    this.#pending = true;
  }

  /** The byte address of this kernel's gradients in its memory (where the other workers of a shared memory read them). */
  gradientAddress(): number {
    return this.#x.gradsPtr();
  }

  updateChunk(chunk: UpdateChunk, weights: readonly number[], gradientAddresses: readonly number[], opt: OptimizerConfig): void {
    this.#assertAlive();
    if (!this.#placement) throw new QuadraError('INTERNAL', 'updateChunk: this simd kernel is not in a shared memory');
    const { start, end } = chunk;
    const n = gradientAddresses.length;
    if (weights !== this.#tableWeights) {
      const at = this.#x.reduceTablePtr();
      const addresses = new Uint32Array(this.#memory.buffer, at, 2 * n);
      const values = new Float32Array(this.#memory.buffer, at, 2 * n);
      for (let r = 0; r < n; r++) {
        addresses[2 * r] = gradientAddresses[r]!;
        values[2 * r + 1] = weights[r]!;
      }
      this.#tableWeights = weights;
    }
    // A chunk lies wholly in the field or the spiking part (each has its own AdamW step count).
    const step = start >= this.layout.fieldCount ? this.#spikeStep + 1 : this.#fieldStep + 1;
    // The sum over every rank's gradients feeds AdamW directly (the same bits as reduceTerm, then adamw).
    this.#adamwWith((...scalars) => this.#x.reduceAdamw(n, start, end, ...scalars), step, opt);
    if (chunk.matrix >= 0) this.#x.refreshTransposeRows(chunk.matrix, chunk.rows[0], chunk.rows[1]);
  }

  setUpdateShard(start: number, end: number): void {
    if (start < 0 || end > this.layout.total || start > end) throw new QuadraError('INTERNAL', `setUpdateShard: [${start}, ${end}) is outside ${this.layout.total} parameters`);
    this.#shard = [start, end];
  }

  parameterView(): Float32Array {
    this.#assertAlive();
    return this.#view(this.#x.paramsPtr(), this.layout.total);
  }

  momentViews(): { m: Float32Array; v: Float32Array } {
    this.#assertAlive();
    return { m: this.#view(this.#x.momentsPtr(), this.layout.total), v: this.#view(this.#x.velocitiesPtr(), this.layout.total) };
  }

  /** The Wᵀ copies are rewritten before the next forward (field ones; the spiking ones too if those can change). */
  parametersChanged(): void {
    this.#stale = Math.max(this.#stale, this.model.spikeGradient === 'surrogate' ? 2 : 1);
  }

  profilePhases(phases: StepPhases | null): void {
    this.#phases = phases;
  }

  applyGradients(opt: OptimizerConfig): void {
    this.#assertAlive();
    if (!this.#pending) throw new QuadraError('INTERNAL', 'applyGradients: no gradients computed since the last update');
    const fieldStep = this.#fieldStep + 1;
    const updateSpike = this.model.spikeGradient === 'surrogate';
    const spikeStep = updateSpike ? this.#spikeStep + 1 : this.#spikeStep;
    if (this.#placement) {
      // Every chunk was reduced and updated (updateChunk, by whichever worker took it): count the step.
      this.#fieldStep = fieldStep;
      this.#spikeStep = spikeStep;
      this.#pending = false;
      return;
    }
    const [lo, hi] = this.#shard ?? [0, this.layout.total];
    const fieldCount = this.layout.fieldCount;
    const t = this.#phases ? performance.now() : 0;
    if (lo < fieldCount) this.#adamw(lo, Math.min(hi, fieldCount), fieldStep, opt);
    // Like PyTorch, parameters without a gradient ('none' mode: the spiking ones) are not touched.
    if (updateSpike && hi > fieldCount) this.#adamw(Math.max(lo, fieldCount), hi, spikeStep, opt);
    if (this.#phases) this.#lap('adamw', t);
    // A sharded update refreshes once every shard has come in (parametersChanged).
    if (!this.#shard) {
      this.#stale = Math.max(this.#stale, updateSpike ? 2 : 1);
      this.#refreshIfStale();
    }
    this.#fieldStep = fieldStep;
    this.#spikeStep = spikeStep;
    this.#pending = false;
  }

  forward(batch: Float32Array, rows: number): ForwardResult {
    this.#assertAlive();
    const F = this.model.fieldSize;
    checkBatch(batch, rows, F);
    this.#refreshIfStale();
    const chunk = this.#placement ? this.#capacity : Math.max(this.#capacity, FORWARD_CHUNK);
    const fieldOutput = new Float32Array(rows * F);
    const spikeRates = new Float32Array(rows * F);
    let squares = 0;
    for (let start = 0; start < rows; start += chunk) {
      const n = Math.min(chunk, rows - start);
      this.#ensureCapacity(n);
      this.#view(this.#x.inputPtr(), n * F).set(batch.subarray(start * F, (start + n) * F));
      this.#x.forward(n, this.spikeForward === 'smooth' ? 1 : 0);
      fieldOutput.set(this.#view(this.#x.outputPtr(), n * F), start * F);
      spikeRates.set(this.#view(this.#x.ratesPtr(), n * F), start * F);
      squares += this.#results()[0]! * n * F;
    }
    const reconstructionLoss = squares / (rows * F);
    // The spike loss couples every row (one variance over all of them): computed on the whole batch.
    const spikeLoss = rows <= chunk ? this.#results()[1]! : spikeLossHost(spikeRates, null).loss;
    return { ...lossParts(reconstructionLoss, spikeLoss, this.model.spikeLossWeight), fieldOutput, spikeRates };
  }

  getParameters(): Float32Array {
    this.#assertAlive();
    return this.#view(this.#x.paramsPtr(), this.layout.total).slice();
  }

  setParameters(parameters: Float32Array): void {
    this.#assertAlive();
    checkLength('parameters', parameters, this.layout.total);
    this.#view(this.#x.paramsPtr(), this.layout.total).set(parameters);
    this.#stale = 0;
    this.#x.refreshTransposes(1);
  }

  getOptimizerState(): OptimizerState {
    this.#assertAlive();
    return {
      m: this.#view(this.#x.momentsPtr(), this.layout.total).slice(),
      v: this.#view(this.#x.velocitiesPtr(), this.layout.total).slice(),
      fieldStep: this.#fieldStep,
      spikeStep: this.#spikeStep,
    };
  }

  setOptimizerState(state: OptimizerState): void {
    this.#assertAlive();
    checkOptimizerState(state, this.layout.total);
    this.#view(this.#x.momentsPtr(), this.layout.total).set(state.m);
    this.#view(this.#x.velocitiesPtr(), this.layout.total).set(state.v);
    this.#fieldStep = state.fieldStep;
    this.#spikeStep = state.spikeStep;
  }

  memory(): KernelMemory {
    if (this.#disposed) return { tensors: 0, bytes: 0 };
    // In a shared memory: this worker's own regions (the parameters are counted once, not per worker).
    return { tensors: 0, bytes: this.#placement ? this.#ownBytes : this.#memory.buffer.byteLength };
  }

  dispose(): void {
    this.#disposed = true;
  }

  #adamw(start: number, end: number, step: number, o: OptimizerConfig): void {
    this.#adamwWith((...scalars) => this.#x.adamw(start, end, ...scalars), step, o);
  }

  /** AdamW's scalars for `step`: the same as the host AdamW (computed in double), then float32 arithmetic like PyTorch's. */
  #adamwWith(run: (...scalars: AdamwScalars) => void, step: number, o: OptimizerConfig): void {
    run(
      o.beta1,
      1 - o.beta1,
      o.beta2,
      1 - o.beta2,
      1 - o.learningRate * o.weightDecay,
      o.learningRate / (1 - o.beta1 ** step),
      1 / Math.sqrt(1 - o.beta2 ** step),
      o.epsilon,
    );
  }

  #refreshIfStale(): void {
    if (this.#stale === 0) return;
    const t = this.#phases ? performance.now() : 0;
    this.#x.refreshTransposes(this.#stale === 2 ? 1 : 0);
    this.#stale = 0;
    if (this.#phases) this.#lap('transposes', t);
  }

  /** Adds the time since `since` to a phase; returns now. */
  #lap(phase: StepPhase, since: number): number {
    const now = performance.now();
    this.#phases![phase] = (this.#phases![phase] ?? 0) + (now - since);
    return now;
  }

  #losses(): LossParts {
    const [reconstruction, spike] = this.#results();
    return lossParts(reconstruction!, spike!, this.model.spikeLossWeight);
  }

  #results(): Float64Array {
    return new Float64Array(this.#memory.buffer, this.#x.resultPtr(), 2);
  }

  #view(ptr: number, length: number): Float32Array {
    return new Float32Array(this.#memory.buffer, ptr, length);
  }

  #ensureCapacity(rows: number): void {
    if (rows <= this.#capacity) return;
    if (this.#placement) throw new QuadraError('INTERNAL', `simd kernel in a shared memory: ${rows} rows exceed the ${this.#capacity} it was placed for`, { rows });
    this.#configure(Math.ceil(rows / 64) * 64);
  }

  /** Lays the regions out for `capacity` rows and grows the memory to fit (parameters stay put). */
  #configure(capacity: number): void {
    const m = this.model;
    const end = this.#x.configure(m.fieldSize, m.hiddenSize, m.spikingHiddenSize, m.spikingSteps, capacity, this.#base);
    if (end > MAX_BYTES || end < 0) {
      throw new QuadraError(
        'UNSUPPORTED',
        `backend 'simd': a batch of ${capacity} rows needs more than WebAssembly's 4 GiB of memory with this model; use a smaller batch or --backend wasm`,
        { field: 'batchSize', rows: capacity },
      );
    }
    const have = this.#memory.buffer.byteLength;
    if (end > have) {
      try {
        this.#memory.grow(Math.ceil((end - have) / PAGE));
      } catch (error) {
        throw new QuadraError('UNSUPPORTED', `backend 'simd': could not grow its memory to ${Math.ceil(end / 2 ** 20)} MiB for ${capacity} rows: ${String(error)}`, {
          rows: capacity,
        });
      }
    }
    this.#capacity = capacity;
  }

  #assertAlive(): void {
    if (this.#disposed) throw new QuadraError('INTERNAL', 'this engine has been disposed');
  }
}

function wasmAbort(): never {
  throw new QuadraError('INTERNAL', 'the simd kernel aborted');
}
