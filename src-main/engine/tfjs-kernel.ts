import * as tf from '@tensorflow/tfjs';
import type { BackendId, ModelConfig, OptimizerConfig } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import { checkBatch, checkLength, checkOptimizerState, lossParts, type ForwardResult, type KernelMemory, type LossParts, type SyncModelKernel, type OptimizerState } from './kernel';
import type { ParamEntry, ParamLayout } from './layout';
import { lifBackward, lifForward, spikeLossHost, sumRows, transposeHost, SURROGATE_SLOPE, type LifParams } from './lif-host';
import { dropoutMask, Rng } from './random';

const LAYER_NORM_EPS = 1e-5;
const INV_SQRT2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
export { SURROGATE_SLOPE };

type Params = Record<string, tf.Tensor>;

interface NormCache {
  xhat: tf.Tensor;
  rstd: tf.Tensor;
  /** GELU′ at the normalised input, stored in the forward pass for the backward. */
  geluGrad: tf.Tensor | null;
}

/**
 * Spike function used by the forward pass. 'heaviside' is the model; 'smooth' replaces the step by
 * z/(1+SLOPE·|z|), whose exact derivative is the surrogate — tests use it to check BPTT against
 * finite differences, since the step itself has no derivative to compare with.
 */
export type SpikeForward = 'heaviside' | 'smooth';

/**
 * The Quadra Matrix model on tfjs (any tfjs backend: tensorflow, wasm, cpu), with the backward
 * pass written out by hand. Two reasons: every matMul gets an explicit transpose so it stays on
 * XNNPACK's fast path on wasm (tfjs's own matMul gradient uses transposed matMuls, ~10× slower
 * there), and fc1(x), the Wᵀ copies and the spiking layer gradients are computed once per step.
 */
export class TfjsKernel implements SyncModelKernel {
  readonly backend: BackendId;
  readonly capabilities = { synchronous: true, allReducesInPlace: false } as const;
  readonly model: ModelConfig;
  readonly layout: ParamLayout;
  /** For tests only: see SpikeForward. */
  spikeForward: SpikeForward = 'heaviside';
  /**
   * Where the LIF recurrences run: 'host' — JS loops over host arrays, with each layer's matMul
   * batched over all T steps (wasm and cpu, whose tensors live in host memory); 'tensor' — tfjs ops
   * step by step (native backends, where a readback is a device sync). Tests run both.
   */
  spikePath: 'host' | 'tensor';
  /** For tests only: runs inside the tidy scope of a training step (e.g. to throw there). */
  testHooks: { insideStep?: () => void } = {};

  // One tensor per parameter: slicing a flat tensor would copy the whole buffer per slice on wasm.
  #params: Params;
  /** Adam moments as tensors (device-resident optimiser: native tensorflow backends). */
  #m: Params | null = null;
  #v: Params | null = null;
  /**
   * On wasm and cpu the optimiser runs as one fused loop over flat host arrays: ~14 tfjs ops per
   * tensor would cost ~10 µs each, and the arrays also serve getParameters and the all-reduce.
   */
  #host: { p: Float32Array; m: Float32Array; v: Float32Array } | null = null;
  #fieldStep = 0;
  #spikeStep = 0;
  #pendingGrads: Params | null = null;
  /** Host-optimizer backends keep written gradients flat: the optimiser reads them as they are. */
  #pendingFlat: Float32Array | null = null;
  /** Wᵀ of every Linear weight, valid until the weights change; also keeps XNNPACK's packed weights warm. */
  #transposed: Params = {};
  #c: Constants;
  #gradScratch: Float32Array | null = null;
  #maskScratch = new Map<number, Float32Array>();
  readonly #copiesOnCreate: boolean;
  #disposed = false;

  /**
   * `hostOptimizer` defaults to true on wasm and cpu (tensors in host memory) and false on the
   * native backends, where AdamW stays on the device; tests force either on any backend.
   */
  constructor(backend: BackendId, model: ModelConfig, layout: ParamLayout, initialParameters: Float32Array, options: { hostOptimizer?: boolean } = {}) {
    this.backend = backend;
    this.model = model;
    this.layout = layout;
    checkLength('parameters', initialParameters, layout.total);
    this.#copiesOnCreate = tf.getBackend() === 'wasm';
    this.#params = this.#fromFlat(initialParameters);
    this.spikePath = backend === 'wasm' || backend === 'cpu' ? 'host' : 'tensor';
    if (options.hostOptimizer ?? (backend === 'wasm' || backend === 'cpu')) {
      this.#host = { p: Float32Array.from(initialParameters), m: new Float32Array(layout.total), v: new Float32Array(layout.total) };
    } else {
      this.#m = this.#fromFlat(new Float32Array(layout.total));
      this.#v = this.#fromFlat(new Float32Array(layout.total));
    }
    this.#c = makeConstants();
  }

  computeGradients(batch: Float32Array, rows: number, dropoutSeed: number): LossParts {
    this.#assertAlive();
    const F = this.model.fieldSize;
    checkBatch(batch, rows, F);
    const surrogate = this.model.spikeGradient === 'surrogate';
    let parts: LossParts | undefined;
    const wt = this.#transposedWeights();
    const grads = tf.tidy(() => {
      const p = this.#params;
      const x = tf.tensor2d(batch, [rows, F]);
      const field = this.#fieldTrain(p, wt, x, rows, dropoutSeed);
      const spikes = this.#spikes(p, wt, x, rows, surrogate);
      const fieldGrads = field.backward();
      const spikeGrads = spikes.grads;
      const ordered: Params = {};
      for (const e of this.layout.entries) {
        const g = e.group === 'field' ? fieldGrads[e.name] : spikeGrads?.[e.name];
        // In 'none' mode the spiking parameters get no gradient at all (PyTorch: grad None).
        if (g) ordered[e.name] = tf.reshape(g, e.shape);
      }
      this.testHooks.insideStep?.();
      parts = lossParts(field.loss.dataSync()[0]!, spikes.spikeLoss, this.model.spikeLossWeight);
      return ordered;
    });
    disposeAll(this.#pendingGrads);
    this.#pendingGrads = grads;
    this.#pendingFlat = null;
    return parts!;
  }

  readGradients(): Float32Array {
    this.#assertAlive();
    if (this.#pendingFlat) {
      const copy = this.#pendingFlat.slice();
      if (this.model.spikeGradient !== 'surrogate') copy.fill(0, this.layout.fieldCount);
      return copy;
    }
    if (!this.#pendingGrads) throw new QuadraError('INTERNAL', 'readGradients: no gradients computed since the last update');
    return this.#toFlat(this.#pendingGrads);
  }

  writeGradients(gradients: Float32Array): void {
    this.#assertAlive();
    checkLength('gradients', gradients, this.layout.total);
    const spikeGradients = this.model.spikeGradient === 'surrogate';
    disposeAll(this.#pendingGrads);
    if (this.#host) {
      this.#pendingGrads = null;
      // Kept as given (no copy); in 'none' mode only the field part is ever read.
      this.#pendingFlat = gradients;
    } else {
      this.#pendingFlat = null;
      this.#pendingGrads = this.#fromFlat(gradients, (e) => e.group === 'field' || spikeGradients);
    }
  }

  applyGradients(opt: OptimizerConfig): void {
    this.#assertAlive();
    const grads = this.#pendingGrads;
    const flat = this.#pendingFlat;
    if (!grads && !flat) throw new QuadraError('INTERNAL', 'applyGradients: no gradients computed since the last update');
    const fieldStep = this.#fieldStep + 1;
    const updateSpike = this.model.spikeGradient === 'surrogate';
    const spikeStep = updateSpike ? this.#spikeStep + 1 : this.#spikeStep;
    // Like PyTorch, parameters without a gradient ('none' mode: the spiking ones) are not touched.
    const updated = this.layout.entries.filter((e) => e.group === 'field' || updateSpike).map((e) => e.name);
    if (this.#host) {
      const g = flat ?? this.#toFlat(grads!, this.#gradScratch ??= new Float32Array(this.layout.total));
      const { p, m, v } = this.#host;
      const fc = this.layout.fieldCount;
      adamwHost(p, m, v, g, 0, fc, fieldStep, opt);
      if (updateSpike) adamwHost(p, m, v, g, fc, this.layout.total, spikeStep, opt);
      for (const name of updated) {
        const e = this.layout.byName.get(name)!;
        this.#params[name]!.dispose();
        this.#params[name] = this.#upload(p.subarray(e.offset, e.offset + e.size), e.shape);
      }
    } else {
      this.#applyOnDevice(grads!, fieldStep, spikeStep, opt);
    }
    disposeAll(grads);
    this.#pendingGrads = null;
    this.#pendingFlat = null;
    this.#invalidateTransposed(updated);
    this.#fieldStep = fieldStep;
    this.#spikeStep = spikeStep;
  }

  #applyOnDevice(grads: Params, fieldStep: number, spikeStep: number, opt: OptimizerConfig): void {
    const m = this.#m!;
    const v = this.#v!;
    const next = tf.tidy(() => {
      const fieldScalars = adamwScalars(fieldStep, opt);
      const spikeScalars = fieldStep === spikeStep ? fieldScalars : adamwScalars(spikeStep, opt);
      const out: Record<string, Params> = { p: {}, m: {}, v: {} };
      for (const e of this.layout.entries) {
        const g = grads[e.name];
        // Like PyTorch, a parameter without a gradient is skipped entirely (no weight decay either).
        if (!g) continue;
        const r = adamw(this.#params[e.name]!, m[e.name]!, v[e.name]!, g, e.group === 'field' ? fieldScalars : spikeScalars);
        out.p![e.name] = r.p;
        out.m![e.name] = r.m;
        out.v![e.name] = r.v;
      }
      return out;
    });
    for (const [name, p] of Object.entries(next.p!)) {
      this.#params[name]!.dispose();
      m[name]!.dispose();
      v[name]!.dispose();
      this.#params[name] = p;
      m[name] = next.m![name]!;
      v[name] = next.v![name]!;
    }
  }

  forward(batch: Float32Array, rows: number): ForwardResult {
    this.#assertAlive();
    const F = this.model.fieldSize;
    checkBatch(batch, rows, F);
    const wt = this.#transposedWeights();
    return tf.tidy(() => {
      const p = this.#params;
      const x = tf.tensor2d(batch, [rows, F]);
      const y = this.#fieldEval(p, wt, x);
      const spikes = this.#spikes(p, wt, x, rows, false);
      const reconstruction = tf.mean(tf.squaredDifference(y, x)).dataSync()[0]!;
      return {
        ...lossParts(reconstruction, spikes.spikeLoss, this.model.spikeLossWeight),
        // dataSync may hand out the backend's own buffer (cpu): copy.
        fieldOutput: (y.dataSync() as Float32Array).slice(),
        spikeRates: spikes.rates.slice(),
      };
    });
  }

  getParameters(): Float32Array {
    this.#assertAlive();
    return this.#host ? Float32Array.from(this.#host.p) : this.#toFlat(this.#params);
  }

  setParameters(parameters: Float32Array): void {
    this.#assertAlive();
    checkLength('parameters', parameters, this.layout.total);
    disposeAll(this.#params);
    this.#params = this.#fromFlat(parameters);
    if (this.#host) this.#host.p.set(parameters);
    this.#invalidateTransposed();
  }

  getOptimizerState(): OptimizerState {
    this.#assertAlive();
    return {
      m: this.#host ? Float32Array.from(this.#host.m) : this.#toFlat(this.#m!),
      v: this.#host ? Float32Array.from(this.#host.v) : this.#toFlat(this.#v!),
      fieldStep: this.#fieldStep,
      spikeStep: this.#spikeStep,
    };
  }

  setOptimizerState(state: OptimizerState): void {
    this.#assertAlive();
    checkOptimizerState(state, this.layout.total);
    if (this.#host) {
      this.#host.m.set(state.m);
      this.#host.v.set(state.v);
    } else {
      disposeAll(this.#m);
      disposeAll(this.#v);
      this.#m = this.#fromFlat(state.m);
      this.#v = this.#fromFlat(state.v);
    }
    this.#fieldStep = state.fieldStep;
    this.#spikeStep = state.spikeStep;
  }

  memory(): KernelMemory {
    const m = tf.memory();
    return { tensors: m.numTensors, bytes: m.numBytes };
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    disposeAll(this.#params);
    disposeAll(this.#m);
    disposeAll(this.#v);
    disposeAll(this.#pendingGrads);
    this.#invalidateTransposed();
    this.#pendingGrads = null;
    disposeAll(this.#c as unknown as Params);
  }

  #fromFlat(flat: Float32Array, include: (e: ParamEntry) => boolean = () => true): Params {
    const out: Params = {};
    for (const e of this.layout.entries) {
      if (include(e)) out[e.name] = this.#upload(flat.subarray(e.offset, e.offset + e.size), e.shape);
    }
    return out;
  }

  /** Layout-order copy; tensors missing from `tensors` (no gradient) read as zeros. */
  #toFlat(tensors: Params, into?: Float32Array): Float32Array {
    const flat = into ?? new Float32Array(this.layout.total);
    for (const e of this.layout.entries) {
      const t = tensors[e.name];
      if (t) flat.set(t.dataSync(), e.offset);
      else flat.fill(0, e.offset, e.offset + e.size);
    }
    return flat;
  }

  /**
   * A tensor holding these values. The wasm backend copies them into its heap at once; the cpu
   * backend (and tfjs-node until first use) keeps a reference to the array, so there the values
   * are copied first — the caller may reuse or change its array afterwards either way.
   */
  #upload(values: Float32Array, shape: number[]): tf.Tensor {
    return tf.tensor(this.#copiesOnCreate ? values : values.slice(), shape, 'float32');
  }

  /** Reused host buffers for dropout masks (one per layer), sparing the GC a few MB a second. */
  #scratch(layer: number, size: number): Float32Array {
    const existing = this.#maskScratch.get(layer);
    if (existing && existing.length >= size) return existing;
    const fresh = new Float32Array(size);
    this.#maskScratch.set(layer, fresh);
    return fresh;
  }

  #transposedWeights(): Params {
    for (const e of this.layout.entries) {
      if (e.kind === 'linear-weight' && !this.#transposed[e.name]) {
        this.#transposed[e.name] = tf.tidy(() => tf.transpose(this.#params[e.name]!));
      }
    }
    return this.#transposed;
  }

  /** Drops the cached Wᵀ of the given weights (all when no names): in 'none' mode the spiking ones stay. */
  #invalidateTransposed(names?: Iterable<string>): void {
    for (const name of names ?? Object.keys(this.#transposed)) {
      this.#transposed[name]?.dispose();
      delete this.#transposed[name];
    }
  }

  // ---- forward and backward pieces (all called inside tf.tidy) ----

  #fieldEval(p: Params, wt: Params, x: tf.Tensor): tf.Tensor {
    const c = this.#c;
    let h = linear(x, wt[`${ENC}.0.weight`]!, p[`${ENC}.0.bias`]!);
    h = layerNormGelu(h, p[`${ENC}.1.weight`]!, p[`${ENC}.1.bias`]!, false, c).out;
    h = linear(h, wt[`${ENC}.4.weight`]!, p[`${ENC}.4.bias`]!);
    h = layerNormGelu(h, p[`${ENC}.5.weight`]!, p[`${ENC}.5.bias`]!, false, c).out;
    h = linear(h, wt[`${DEC}.0.weight`]!, p[`${DEC}.0.bias`]!);
    h = layerNormGelu(h, p[`${DEC}.1.weight`]!, p[`${DEC}.1.bias`]!, false, c).out;
    return linear(h, wt[`${DEC}.4.weight`]!, p[`${DEC}.4.bias`]!);
  }

  /** Training forward of the field network; returns the loss and a closure for its backward. */
  #fieldTrain(p: Params, wt: Params, x: tf.Tensor, rows: number, dropoutSeed: number) {
    const c = this.#c;
    const H = this.model.hiddenSize;
    const F = this.model.fieldSize;
    const drop = this.model.dropout;
    const mask = (layer: number, width: number) =>
      drop > 0 ? this.#upload(dropoutMask(Rng.derive(dropoutSeed, layer), rows * width, drop, this.#scratch(layer, rows * width)), [rows, width]) : null;
    const mask1 = mask(1, H);
    const mask3 = mask(3, H);
    const P = (name: string) => p[name]!;
    const WT = (name: string) => wt[name]!;

    const h1 = linear(x, WT(`${ENC}.0.weight`), P(`${ENC}.0.bias`));
    const n1 = layerNormGelu(h1, P(`${ENC}.1.weight`), P(`${ENC}.1.bias`), true, c);
    const d1 = mask1 ? tf.mul(n1.out, mask1) : n1.out;
    const h2 = linear(d1, WT(`${ENC}.4.weight`), P(`${ENC}.4.bias`));
    const n2 = layerNormGelu(h2, P(`${ENC}.5.weight`), P(`${ENC}.5.bias`), true, c);
    const h3 = linear(n2.out, WT(`${DEC}.0.weight`), P(`${DEC}.0.bias`));
    const n3 = layerNormGelu(h3, P(`${DEC}.1.weight`), P(`${DEC}.1.bias`), true, c);
    const d3 = mask3 ? tf.mul(n3.out, mask3) : n3.out;
    const y = linear(d3, WT(`${DEC}.4.weight`), P(`${DEC}.4.bias`));
    const diff = tf.sub(y, x);
    const loss = tf.mean(tf.square(diff));

    const backward = (): Params => {
      const g: Params = {};
      const dy = tf.mul(diff, tf.scalar(2 / (rows * F)));
      const dd3 = linearBackward(dy, d3, WT(`${DEC}.4.weight`), g, `${DEC}.4`, true)!;
      const da3 = mask3 ? tf.mul(dd3, mask3) : dd3;
      const dh3 = layerNormGeluBackward(da3, n3.cache, P(`${DEC}.1.weight`), g, `${DEC}.1`);
      const da2 = linearBackward(dh3, n2.out, WT(`${DEC}.0.weight`), g, `${DEC}.0`, true)!;
      const dh2 = layerNormGeluBackward(da2, n2.cache, P(`${ENC}.5.weight`), g, `${ENC}.5`);
      const dd1 = linearBackward(dh2, d1, WT(`${ENC}.4.weight`), g, `${ENC}.4`, true)!;
      const da1 = mask1 ? tf.mul(dd1, mask1) : dd1;
      const dh1 = layerNormGeluBackward(da1, n1.cache, P(`${ENC}.1.weight`), g, `${ENC}.1`);
      linearBackward(dh1, x, WT(`${ENC}.0.weight`), g, `${ENC}.0`, false);
      return g;
    };
    return { loss, backward };
  }

  /** Spiking forward, spike loss and (with `withGradient`) the spiking parameters' gradients. */
  #spikes(p: Params, wt: Params, x: tf.Tensor, rows: number, withGradient: boolean): SpikeOutcome {
    if (this.spikePath === 'host') return this.#spikesHost(p, wt, x, rows, withGradient);
    const trace = this.#spikeForward(p, wt, x, withGradient);
    const { spikeLoss, dOut } = this.#spikeLoss(trace.rates, withGradient);
    return {
      rates: trace.rates.dataSync() as Float32Array,
      spikeLoss: spikeLoss.dataSync()[0]!,
      grads: withGradient && dOut ? this.#spikeBackward(p, x, trace, dOut) : null,
    };
  }

  /** The host path: recurrences in JS (lif-host.ts), three batched matMuls each way. */
  #spikesHost(p: Params, wt: Params, x: tf.Tensor, rows: number, withGradient: boolean): SpikeOutcome {
    const T = this.model.spikingSteps;
    const S = this.model.spikingHiddenSize;
    const F = this.model.fieldSize;
    const hidden = rows * S;
    const out = rows * F;
    const threshold = p['spike_network.threshold']!.dataSync()[0]!;
    const decay = p['spike_network.decay']!.dataSync()[0]!;
    const lif = (size: number): LifParams => ({ steps: T, size, threshold, decay, smooth: this.spikeForward === 'smooth' });
    const keep = (size: number) => (withGradient ? new Float32Array(T * size) : null);
    const c1 = linear(x, wt['spike_network.fc1.weight']!, p['spike_network.fc1.bias']!).dataSync() as Float32Array;
    const s1 = new Float32Array(T * hidden);
    const m1 = keep(hidden);
    lifForward(lif(hidden), c1, s1, m1);
    const s1t = tf.tensor2d(s1, [T * rows, S]);
    const u2 = linear(s1t, wt['spike_network.fc2.weight']!, p['spike_network.fc2.bias']!).dataSync() as Float32Array;
    const s2 = new Float32Array(T * hidden);
    const m2 = keep(hidden);
    lifForward(lif(hidden), u2, s2, m2);
    const s2t = tf.tensor2d(s2, [T * rows, S]);
    const u3 = linear(s2t, wt['spike_network.fc3.weight']!, p['spike_network.fc3.bias']!).dataSync() as Float32Array;
    const s3 = new Float32Array(T * out);
    const m3 = keep(out);
    lifForward(lif(out), u3, s3, m3);
    const rates = sumRows(s3, T, out);
    for (let i = 0; i < out; i++) rates[i] = rates[i]! / T;
    const { loss, dRates } = spikeLossHost(rates, withGradient ? this.model.spikeLossWeight : null);
    if (!withGradient || !dRates || !m1 || !m2 || !m3) return { rates, spikeLoss: loss, grads: null };

    for (let i = 0; i < out; i++) dRates[i] = dRates[i]! / T;
    const du3 = new Float32Array(T * out);
    const g3 = lifBackward(lif(out), s3, m3, dRates, du3);
    const ds2 = tf.matMul(tf.tensor2d(du3, [T * rows, F]), p['spike_network.fc3.weight']!).dataSync() as Float32Array;
    const du2 = new Float32Array(T * hidden);
    const g2 = lifBackward(lif(hidden), s2, m2, ds2, du2);
    const ds1 = tf.matMul(tf.tensor2d(du2, [T * rows, S]), p['spike_network.fc2.weight']!).dataSync() as Float32Array;
    const du1 = new Float32Array(T * hidden);
    const g1 = lifBackward(lif(hidden), s1, m1, ds1, du1);
    const dc1 = sumRows(du1, T, hidden);
    // Weight gradients: Σ over steps and rows of duᵀ·input, one matMul each (duᵀ built on the host).
    return {
      rates,
      spikeLoss: loss,
      grads: {
        'spike_network.fc1.weight': tf.matMul(tf.tensor2d(transposeHost(dc1, rows, S), [S, rows]), x),
        'spike_network.fc1.bias': tf.tensor1d(sumRows(dc1, rows, S)),
        'spike_network.fc2.weight': tf.matMul(tf.tensor2d(transposeHost(du2, T * rows, S), [S, T * rows]), s1t),
        'spike_network.fc2.bias': tf.tensor1d(sumRows(du2, T * rows, S)),
        'spike_network.fc3.weight': tf.matMul(tf.tensor2d(transposeHost(du3, T * rows, F), [F, T * rows]), s2t),
        'spike_network.fc3.bias': tf.tensor1d(sumRows(du3, T * rows, F)),
        'spike_network.threshold': tf.scalar(g1.threshold + g2.threshold + g3.threshold),
        'spike_network.decay': tf.scalar(g1.decay + g2.decay + g3.decay),
      },
    };
  }

  /**
   * LIF forward over T steps. fc1(x) is the same every step, so it is computed once. With `keep`,
   * the membranes and spikes of every step are returned for the backward pass.
   */
  #spikeForward(p: Params, wt: Params, x: tf.Tensor, keep: boolean): SpikeTrace {
    const T = this.model.spikingSteps;
    const one = this.#c.one;
    const threshold = p['spike_network.threshold']!;
    const decay = p['spike_network.decay']!;
    const w2t = wt['spike_network.fc2.weight']!;
    const w3t = wt['spike_network.fc3.weight']!;
    const b2 = p['spike_network.fc2.bias']!;
    const b3 = p['spike_network.fc3.bias']!;
    const c1 = linear(x, wt['spike_network.fc1.weight']!, p['spike_network.fc1.bias']!);
    const smooth = this.spikeForward === 'smooth';
    const slope = this.#c.slope;
    // s = [m > θ]; tf.step(z) is 1 for z > 0 and 0 otherwise, in one kernel.
    const fire = (m: tf.Tensor): tf.Tensor => {
      const z = tf.sub(m, threshold);
      return smooth ? tf.div(z, tf.add(tf.mul(tf.abs(z), slope), one)) : tf.step(z);
    };
    // r = m·(1 − s)·decay: the membrane after reset and leak, carried to the next step.
    const reset = (m: tf.Tensor, s: tf.Tensor) => tf.mul(tf.mul(m, tf.sub(one, s)), decay);

    const trace: SpikeTrace = { rates: c1, m1: [], s1: [], m2: [], s2: [], m3: [], s3: [] };
    let r1: tf.Tensor | null = null;
    let r2: tf.Tensor | null = null;
    let r3: tf.Tensor | null = null;
    let sum: tf.Tensor | null = null;
    for (let t = 0; t < T; t++) {
      // The membranes after the last step are never read: skip their reset.
      const carry = t < T - 1;
      const m1: tf.Tensor = r1 ? tf.add(r1, c1) : c1;
      const s1 = fire(m1);
      if (carry) r1 = reset(m1, s1);
      const u2 = linear(s1, w2t, b2);
      const m2: tf.Tensor = r2 ? tf.add(r2, u2) : u2;
      const s2 = fire(m2);
      if (carry) r2 = reset(m2, s2);
      const u3 = linear(s2, w3t, b3);
      const m3: tf.Tensor = r3 ? tf.add(r3, u3) : u3;
      const s3 = fire(m3);
      if (carry) r3 = reset(m3, s3);
      sum = sum ? tf.add(sum, s3) : s3;
      if (keep) {
        trace.m1.push(m1);
        trace.s1.push(s1);
        trace.m2.push(m2);
        trace.s2.push(s2);
        trace.m3.push(m3);
        trace.s3.push(s3);
      }
    }
    trace.rates = tf.div(sum!, tf.scalar(T));
    return trace;
  }

  /** spikeLoss = var(rates) (unbiased, all elements) + |mean(rates) − 0.5|, and its gradient. */
  #spikeLoss(rates: tf.Tensor, withGradient: boolean): { spikeLoss: tf.Tensor; dOut: tf.Tensor | null } {
    const n = rates.size;
    const mean = tf.mean(rates);
    const centred = tf.sub(rates, mean);
    const variance = n > 1 ? tf.div(tf.sum(tf.square(centred)), tf.scalar(n - 1)) : tf.scalar(Number.NaN);
    const offset = tf.sub(mean, this.#c.half);
    const spikeLoss = tf.add(variance, tf.abs(offset));
    if (!withGradient) return { spikeLoss, dOut: null };
    // d var/d r_i = 2(r_i − mean)/(n − 1); d|mean − 0.5|/d r_i = sign(mean − 0.5)/n.
    const w = this.model.spikeLossWeight;
    const dOut = tf.add(tf.mul(centred, tf.scalar((2 * w) / (n - 1))), tf.mul(tf.sign(offset), tf.scalar(w / n)));
    return { spikeLoss, dOut };
  }

  /**
   * Backpropagation through the T steps with the surrogate ds/dm = 1/(1 + 25·|m − θ|)². The gradient
   * also flows through the reset term m·(1 − s)·decay, as autograd would with a surrogate spike.
   */
  #spikeBackward(p: Params, x: tf.Tensor, trace: SpikeTrace, dOut: tf.Tensor): Params {
    const T = this.model.spikingSteps;
    const { one, slope } = this.#c;
    const threshold = p['spike_network.threshold']!;
    const decay = p['spike_network.decay']!;
    const w2 = p['spike_network.fc2.weight']!;
    const w3 = p['spike_network.fc3.weight']!;
    const dsOut = tf.div(dOut, tf.scalar(T));
    const surrogate = (m: tf.Tensor) => tf.reciprocal(tf.square(tf.add(tf.mul(tf.abs(tf.sub(m, threshold)), slope), one)));

    const decayTerms: tf.Tensor[] = [];
    const thresholdTerms: tf.Tensor[] = [];
    /** One layer at one step: returns dm (= du, and the carry into step t−1). */
    const layer = (m: tf.Tensor, s: tf.Tensor, dsExternal: tf.Tensor, dr: tf.Tensor | null): tf.Tensor => {
      let ds = dsExternal;
      let dm: tf.Tensor | null = null;
      if (dr) {
        // r = m·(1 − s)·decay  ⇒  dm += dr·(1 − s)·decay, ds −= dr·m·decay, ddecay += Σ dr·m·(1 − s)
        const drm = tf.mul(dr, m);
        const keep = tf.sub(one, s);
        ds = tf.sub(ds, tf.mul(drm, decay));
        dm = tf.mul(tf.mul(dr, keep), decay);
        decayTerms.push(tf.sum(tf.mul(drm, keep)));
      }
      const dsSg = tf.mul(ds, surrogate(m));
      thresholdTerms.push(tf.sum(dsSg));
      return dm ? tf.add(dm, dsSg) : dsSg;
    };

    const du1: tf.Tensor[] = [];
    const du2: tf.Tensor[] = [];
    const du3: tf.Tensor[] = [];
    let dr1: tf.Tensor | null = null;
    let dr2: tf.Tensor | null = null;
    let dr3: tf.Tensor | null = null;
    for (let t = T - 1; t >= 0; t--) {
      const dm3 = layer(trace.m3[t]!, trace.s3[t]!, dsOut, dr3);
      const dm2 = layer(trace.m2[t]!, trace.s2[t]!, tf.matMul(dm3, w3), dr2);
      const dm1 = layer(trace.m1[t]!, trace.s1[t]!, tf.matMul(dm2, w2), dr1);
      du3.push(dm3);
      du2.push(dm2);
      du1.push(dm1);
      dr3 = dm3;
      dr2 = dm2;
      dr1 = dm1;
    }
    // fc2/fc3 weight gradients summed over the steps are one matMul over the stacked steps
    // (the du lists run from step T−1 down, so the inputs are stacked in the same order).
    const stackedS1 = tf.concat(trace.s1.slice().reverse());
    const stackedS2 = tf.concat(trace.s2.slice().reverse());
    const dU2 = tf.concat(du2);
    const dU3 = tf.concat(du3);
    const dC1 = tf.addN(du1);
    return {
      'spike_network.fc1.weight': tf.matMul(tf.transpose(dC1), x),
      'spike_network.fc1.bias': tf.sum(dC1, 0),
      'spike_network.fc2.weight': tf.matMul(tf.transpose(dU2), stackedS1),
      'spike_network.fc2.bias': tf.sum(dU2, 0),
      'spike_network.fc3.weight': tf.matMul(tf.transpose(dU3), stackedS2),
      'spike_network.fc3.bias': tf.sum(dU3, 0),
      // dθ = −Σ ds·sg (z = m − θ)
      'spike_network.threshold': tf.neg(tf.addN(thresholdTerms)),
      'spike_network.decay': decayTerms.length > 0 ? tf.addN(decayTerms) : tf.scalar(0),
    };
  }

  #assertAlive(): void {
    if (this.#disposed) throw new QuadraError('INTERNAL', 'this engine has been disposed');
  }
}

const ENC = 'field_network.encoder';
const DEC = 'field_network.decoder';

interface SpikeOutcome {
  /** Mean spikes of the last layer over the steps, [rows, fieldSize]. */
  rates: Float32Array;
  spikeLoss: number;
  grads: Params | null;
}

interface SpikeTrace {
  rates: tf.Tensor;
  m1: tf.Tensor[];
  s1: tf.Tensor[];
  m2: tf.Tensor[];
  s2: tf.Tensor[];
  m3: tf.Tensor[];
  s3: tf.Tensor[];
}

/** Scalars made once: a JS number in a tfjs op becomes a new tensor on every call (~10 µs on wasm). */
interface Constants {
  one: tf.Scalar;
  half: tf.Scalar;
  invSqrt2: tf.Scalar;
  negHalf: tf.Scalar;
  invSqrt2Pi: tf.Scalar;
  eps: tf.Scalar;
  slope: tf.Scalar;
}

function makeConstants(): Constants {
  return {
    one: tf.scalar(1),
    half: tf.scalar(0.5),
    invSqrt2: tf.scalar(INV_SQRT2),
    negHalf: tf.scalar(-0.5),
    invSqrt2Pi: tf.scalar(INV_SQRT_2PI),
    eps: tf.scalar(LAYER_NORM_EPS),
    slope: tf.scalar(SURROGATE_SLOPE),
  };
}

/** y = x·Wᵀ + b, given Wᵀ ([in, out], transposed once per weight update): a plain, fused matMul. */
export function linear(x: tf.Tensor, weightT: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  return tf.fused.matMul({ a: x, b: weightT, bias });
}

/**
 * Backward of `linear` with W in PyTorch's [out, in] layout: dW = dYᵀ·X, db = Σ dY and
 * dX = (Wᵀ·dYᵀ)ᵀ — plain matMuls only (transposed matMuls leave XNNPACK's fast path on wasm).
 * dX this way reuses the cached Wᵀ and the dYᵀ that dW needs, and XNNPACK packs the small dYᵀ
 * instead of the whole fresh weight. Writes dW and db into `grads`; returns dX when asked.
 */
export function linearBackward(dy: tf.Tensor, x: tf.Tensor, weightT: tf.Tensor, grads: Params, prefix: string, wantInputGrad: boolean): tf.Tensor | null {
  const dyT = tf.transpose(dy);
  grads[`${prefix}.weight`] = tf.matMul(dyT, x);
  grads[`${prefix}.bias`] = tf.sum(dy, 0);
  return wantInputGrad ? tf.transpose(tf.matMul(weightT, dyT)) : null;
}

/** LayerNorm (eps 1e-5, biased variance, over the last axis) followed by exact-erf GELU. */
export function layerNormGelu(h: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor, train: boolean, c: Constants): { out: tf.Tensor; cache: NormCache } {
  const mean = tf.mean(h, -1, true);
  const centred = tf.sub(h, mean);
  const variance = tf.mean(tf.square(centred), -1, true);
  const rstd = tf.rsqrt(tf.add(variance, c.eps));
  const xhat = tf.mul(centred, rstd);
  const n = tf.add(tf.mul(xhat, gain), bias);
  const cdf = tf.mul(tf.add(tf.erf(tf.mul(n, c.invSqrt2)), c.one), c.half);
  const out = tf.mul(n, cdf);
  // GELU′(n) = Φ(n) + n·φ(n), kept from the forward pass for the backward.
  const geluGrad = train ? tf.add(cdf, tf.mul(n, tf.mul(tf.exp(tf.mul(tf.square(n), c.negHalf)), c.invSqrt2Pi))) : null;
  return { out, cache: { xhat, rstd, geluGrad } };
}

export function layerNormGeluBackward(dOut: tf.Tensor, cache: NormCache, gain: tf.Tensor, grads: Params, prefix: string): tf.Tensor {
  if (!cache.geluGrad) throw new QuadraError('INTERNAL', 'layerNormGeluBackward needs a training-mode forward');
  const dn = tf.mul(dOut, cache.geluGrad);
  grads[`${prefix}.weight`] = tf.sum(tf.mul(dn, cache.xhat), 0);
  grads[`${prefix}.bias`] = tf.sum(dn, 0);
  const dxhat = tf.mul(dn, gain);
  const meanD = tf.mean(dxhat, -1, true);
  const meanDX = tf.mean(tf.mul(dxhat, cache.xhat), -1, true);
  return tf.mul(cache.rstd, tf.sub(tf.sub(dxhat, meanD), tf.mul(cache.xhat, meanDX)));
}

interface AdamwScalars {
  beta1: tf.Scalar;
  oneMinusBeta1: tf.Scalar;
  beta2: tf.Scalar;
  oneMinusBeta2: tf.Scalar;
  invSqrtBc2: tf.Scalar;
  eps: tf.Scalar;
  decayFactor: tf.Scalar;
  stepSize: tf.Scalar;
}

function adamwScalars(step: number, o: OptimizerConfig): AdamwScalars {
  return {
    beta1: tf.scalar(o.beta1),
    oneMinusBeta1: tf.scalar(1 - o.beta1),
    beta2: tf.scalar(o.beta2),
    oneMinusBeta2: tf.scalar(1 - o.beta2),
    invSqrtBc2: tf.scalar(1 / Math.sqrt(1 - o.beta2 ** step)),
    eps: tf.scalar(o.epsilon),
    decayFactor: tf.scalar(1 - o.learningRate * o.weightDecay),
    stepSize: tf.scalar(o.learningRate / (1 - o.beta1 ** step)),
  };
}

/** adamw on flat host arrays over [start, end): the same arithmetic as PyTorch's, in one loop. */
function adamwHost(p: Float32Array, m: Float32Array, v: Float32Array, g: Float32Array, start: number, end: number, step: number, o: OptimizerConfig): void {
  const { beta1, beta2, epsilon } = o;
  const decayFactor = 1 - o.learningRate * o.weightDecay;
  const stepSize = o.learningRate / (1 - beta1 ** step);
  const invSqrtBc2 = 1 / Math.sqrt(1 - beta2 ** step);
  const c1 = 1 - beta1;
  const c2 = 1 - beta2;
  for (let i = start; i < end; i++) {
    const gi = g[i]!;
    const mi = beta1 * m[i]! + c1 * gi;
    const vi = beta2 * v[i]! + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i]! * decayFactor - (stepSize * mi) / (Math.sqrt(vi) * invSqrtBc2 + epsilon);
  }
}

/** PyTorch's AdamW: p ← p·(1 − lr·wd) − lr/bc1 · m / (√v/√bc2 + eps), moments updated first. */
function adamw(p: tf.Tensor, m: tf.Tensor, v: tf.Tensor, g: tf.Tensor, k: AdamwScalars) {
  const mNext = tf.add(tf.mul(m, k.beta1), tf.mul(g, k.oneMinusBeta1));
  const vNext = tf.add(tf.mul(v, k.beta2), tf.mul(tf.square(g), k.oneMinusBeta2));
  const denom = tf.add(tf.mul(tf.sqrt(vNext), k.invSqrtBc2), k.eps);
  const pNext = tf.sub(tf.mul(p, k.decayFactor), tf.mul(tf.div(mNext, denom), k.stepSize));
  return { p: pNext, m: mNext, v: vNext };
}

function disposeAll(tensors: Params | null): void {
  if (tensors) for (const t of Object.values(tensors)) t.dispose();
}
