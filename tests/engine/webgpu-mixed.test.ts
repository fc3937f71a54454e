/// <reference types="@webgpu/types" />
import { existsSync } from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseEngineConfig, type ModelConfig } from '../../src-shared/engine-config';
import { initialParameters } from '../../src-main/engine/init';
import { buildLayout, view, type ParamLayout } from '../../src-main/engine/layout';
import { createWebGpuKernel, kernelDeviceDescriptor, mixedPrecisionFeatures, type WebGpuKernel, type WebGpuKernelOptions } from '../../src-main/engine/webgpu/webgpu-kernel';
import { nodeGpuAdapter } from '../../src-main/engine/webgpu-node';
import { firstBitDifference, maxAbsDiff, normal, rel, relErr } from '../helpers/engine';
import { expectQuadraError } from '../helpers/errors';

/**
 * The webgpu kernel's mixed precision (torch.cuda.amp's recipe) against its own fp32 path: f16 GEMM
 * operands (bit-exact against a host f16 GEMM), training that tracks fp32, and GradScaler's rules
 * decided on the GPU. On SwiftShader (no 'shader-f16') this runs the packed f16 path; the native
 * path stores the same bits (see shaders.ts).
 */

const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER)) process.env.VK_ICD_FILENAMES = SWIFTSHADER;

// Requested as the kernel asks (kernelDeviceDescriptor): with 'shader-f16' where the adapter has it.
const { device, reason } = await nodeGpuAdapter()
  .then((adapter) => adapter?.requestDevice(kernelDeviceDescriptor(adapter)) ?? null)
  .then(
    (found) => ({ device: found, reason: found ? '' : 'dawn.node found no GPU adapter' }),
    (error: unknown) => ({ device: null, reason: `dawn.node failed: ${String(error)}` }),
  );
const NATIVE_F16 = device?.features.has('shader-f16') ?? false;

const SMALL = { fieldSize: 12, hiddenSize: 16, spikingHiddenSize: 8, spikingSteps: 3 } as const;
const CAPACITY = 16;
const DROPOUT_SEED = 1234;

const live: Array<{ dispose(): void }> = [];
afterEach(() => {
  for (const kernel of live.splice(0)) kernel.dispose();
});
afterAll(() => device?.destroy());

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);
/** A float32 rounded to the nearest float16 (ties to even; beyond ±65504 → ±inf), by its bits. */
function f16(x: number): number {
  scratch[0] = x;
  const a = scratchBits[0]! & 0x7fffffff;
  const sign = x < 0 || Object.is(x, -0) ? -1 : 1;
  if (a >= 0x7f800000) return scratch[0];
  if (a >= 0x477ff000) return sign * Infinity;
  const magnitude = Math.abs(scratch[0]);
  // Quantum: 2^-24 for subnormals, else 2^(e − 10).
  const quantum = a < 0x38800000 ? 2 ** -24 : 2 ** ((a >>> 23) - 127 - 10);
  const q = magnitude / quantum;
  const floor = Math.floor(q);
  const rounded = q - floor > 0.5 || (q - floor === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
  return sign * rounded * quantum;
}

interface Setup {
  config: ReturnType<typeof parseEngineConfig>;
  layout: ParamLayout;
  p0: Float32Array;
}

function setup(model: Partial<ModelConfig> = {}, seed = 7, threshold: number | null = 0.15): Setup {
  const config = parseEngineConfig({ model: { ...SMALL, ...model } });
  const layout = buildLayout(config.model);
  const p0 = initialParameters(layout, seed);
  // As webgpu-kernel.test.ts: θ low enough that every layer of these small models spikes.
  if (threshold !== null) tensorOf(layout, p0, 'spike_network.threshold')[0] = threshold;
  return { config, layout, p0 };
}

function tensorOf(layout: ParamLayout, parameters: Float32Array, name: string): Float32Array {
  return view(parameters, layout.byName.get(name)!);
}

async function kernel(s: Setup, options: Partial<WebGpuKernelOptions> = {}, parameters = s.p0): Promise<WebGpuKernel> {
  const k = await createWebGpuKernel(device!, s.config.model, s.layout, parameters, { capacity: CAPACITY, precision: 'mixed', ...options });
  live.push(k);
  return k;
}

describe('the host f16 rounding the tests compare with', () => {
  it('rounds to nearest even, keeps subnormals and overflows past 65504', () => {
    expect(f16(1 + 2 ** -11)).toBe(1); // a tie: to even
    expect(f16(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9); // a tie: to even, upwards
    expect(f16(1 + 2 ** -11 + 2 ** -20)).toBe(1 + 2 ** -10);
    expect(f16(0.1)).toBe(0.0999755859375);
    expect(f16(65504)).toBe(65504);
    expect(f16(65519)).toBe(65504);
    expect(f16(-65520)).toBe(-Infinity);
    expect(f16(3 * 2 ** -26)).toBe(2 ** -24);
    expect(f16(2 ** -26)).toBe(0);
  });
});

describe.skipIf(!device)(`webgpu mixed precision${device ? '' : ` (skipped: ${reason})`}`, () => {
  it('is opt-in: fp32 has no scaler; mixed picks its f16 path from the device features', async () => {
    const s = setup();
    const fp32 = await kernel(s, { precision: undefined });
    expect([fp32.precision, fp32.halfPath]).toEqual(['fp32', null]);
    expect([await fp32.lossScale(), await fp32.skippedSteps(), await fp32.scalerState()]).toEqual([1, 0, null]);
    await expectQuadraError(() => fp32.setScalerState({ scale: 2, growthTracker: 0, skippedSteps: 0 }), 'INVALID_ARGUMENT', 'fp32');

    const mixed = await kernel(s);
    expect([mixed.precision, mixed.halfPath]).toEqual(['mixed', NATIVE_F16 ? 'native' : 'packed']);
    expect(await mixed.scalerState()).toEqual({ scale: 65536, growthTracker: 0, skippedSteps: 0 });
    if (!NATIVE_F16) await expectQuadraError(() => kernel(s, { halfPath: 'native' }), 'UNSUPPORTED', 'shader-f16');
    expect(mixedPrecisionFeatures({ features: new Set(['shader-f16', 'timestamp-query']) })).toEqual(['shader-f16']);
    expect(mixedPrecisionFeatures({ features: new Set<string>() })).toEqual([]);
    await expectQuadraError(() => kernel(s, { lossScaling: { growthInterval: 0 } }), 'INVALID_ARGUMENT', 'growthInterval');
    await expectQuadraError(() => kernel(s, { lossScaling: { initialScale: -1 } }), 'INVALID_ARGUMENT', 'loss scale');
  });

  it("rounds a GEMM's operands to f16 and sums in f32: the decoder's last Linear, bit for bit", async () => {
    // decoder.1's gain 0 makes its output the bias c for every row, so decoder.4 sees a known D3 = GELU(c)
    // (LayerNorm and GELU are f32 in both kernels). None of c, GELU(c), W or b is an f16 value.
    const s = setup({ dropout: 0 });
    const { fieldSize: F, hiddenSize: H } = s.config.model;
    const p = Float32Array.from(s.p0);
    tensorOf(s.layout, p, 'field_network.decoder.1.weight').fill(0);
    tensorOf(s.layout, p, 'field_network.decoder.1.bias').set(Array.from({ length: H }, (_, k) => 0.3 + 0.0371 * k));
    const rows = 3;
    const x = normal(5, rows * F);
    // D3 from the fp32 kernel through selector weights (Y[i] = 1·D3[i + shift], exactly).
    const fp32 = await kernel(s, { precision: 'fp32' }, p);
    const d3 = new Float32Array(H);
    for (const shift of [0, H - F]) {
      const selector = Float32Array.from(p);
      const w = tensorOf(s.layout, selector, 'field_network.decoder.4.weight').fill(0);
      tensorOf(s.layout, selector, 'field_network.decoder.4.bias').fill(0);
      for (let i = 0; i < F; i++) w[i * H + i + shift] = 1;
      await fp32.setParameters(selector);
      const y = (await fp32.forward(x, rows)).fieldOutput;
      for (let i = 0; i < F; i++) d3[i + shift] = y[i]!;
    }
    expect(d3.some((v) => f16(v) !== v), 'some D3 value is not an f16 value').toBe(true);

    const w = Float32Array.from(tensorOf(s.layout, p, 'field_network.decoder.4.weight'));
    const b = tensorOf(s.layout, p, 'field_network.decoder.4.bias');
    expect(w.filter((v) => f16(v) !== v).length, 'the weights are not f16 values').toBeGreaterThan(w.length / 2);
    const expected = new Float32Array(F);
    const asF32 = new Float32Array(F);
    for (let i = 0; i < F; i++) {
      let acc = Math.fround(b[i]!);
      let plain = acc;
      for (let k = 0; k < H; k++) {
        acc = Math.fround(acc + f16(d3[k]!) * f16(w[i * H + k]!)); // the product of two f16 is exact
        plain = Math.fround(plain + Math.fround(d3[k]! * w[i * H + k]!));
      }
      expected[i] = acc;
      asF32[i] = plain;
    }
    const mixed = await kernel(s, {}, p);
    const y = (await mixed.forward(x, rows)).fieldOutput;
    for (let r = 0; r < rows; r++) expect(firstBitDifference(y.subarray(r * F, (r + 1) * F), expected), `row ${r}: ${y.subarray(r * F, (r + 1) * F)} vs ${expected}`).toBe(-1);
    // An f32 GEMM would be far off (and the fp32 kernel is).
    expect(maxAbsDiff(asF32, expected)).toBeGreaterThan(1e-5);
    await fp32.setParameters(p);
    expect(maxAbsDiff((await fp32.forward(x, rows)).fieldOutput.subarray(0, F), asF32)).toBeLessThan(1e-6);
  });

  it("rounds the spiking layers' weights to f16: fc2 = 1 + 2⁻¹² acts as exactly 1", async () => {
    // θ 1: fc1 (a GEMM) drives every s1 to 1; fc2's diagonal 1 + 2⁻¹² then fires s2 every step in
    // f32 (m = 1.00024 > θ) but, rounded to f16 (= 1), only every other step; fc3 = 2·I copies s2 to s3.
    const s = setup({ dropout: 0 }, 7, 1);
    const { fieldSize: F, spikingHiddenSize: S, spikingSteps: T } = s.config.model;
    const p = Float32Array.from(s.p0);
    const set = (name: string, fill: (values: Float32Array) => void) => fill(tensorOf(s.layout, p, name).fill(0));
    set('spike_network.fc1.weight', (w) => Array.from({ length: S }, (_, j) => (w[j * F + j] = 2 + 2 ** -10)));
    set('spike_network.fc1.bias', () => {});
    set('spike_network.fc2.weight', (w) => Array.from({ length: S }, (_, j) => (w[j * S + j] = 1 + 2 ** -12)));
    set('spike_network.fc2.bias', () => {});
    set('spike_network.fc3.weight', (w) => Array.from({ length: S }, (_, j) => (w[j * S + j] = 2)));
    set('spike_network.fc3.bias', () => {});
    tensorOf(s.layout, p, 'spike_network.decay')[0] = 0.95;
    const x = new Float32Array(2 * F).fill(1);
    const rates = async (precision: 'fp32' | 'mixed') => (await (await kernel(s, { precision }, p)).forward(x, 2)).spikeRates;
    const [fp32, mixed] = [await rates('fp32'), await rates('mixed')];
    for (let j = 0; j < F; j++) {
      expect(fp32[j], `fp32 rate ${j}`).toBe(j < S ? 1 : 0);
      // Steps: m = 1 (no spike), 1 + 0.95 (spike), 1 (no spike).
      expect(mixed[j], `mixed rate ${j}`).toBeCloseTo(j < S ? 1 / T : 0, 6);
    }
  });

  it('forwards and computes unscaled gradients within f16 tolerance of fp32', async () => {
    const s = setup({ dropout: 0.1 });
    const F = s.config.model.fieldSize;
    const [fp32, mixed] = [await kernel(s, { precision: 'fp32' }), await kernel(s)];
    const x = normal(3, 40 * F);
    const [a, b] = [await fp32.forward(x, 40), await mixed.forward(x, 40)];
    expect(relErr(b.fieldOutput, a.fieldOutput), 'fieldOutput').toBeLessThan(1e-2);
    expect(maxAbsDiff(b.fieldOutput, a.fieldOutput)).toBeGreaterThan(0);
    expect(rel(b.reconstructionLoss, a.reconstructionLoss)).toBeLessThan(1e-2);
    const rows = CAPACITY;
    const batch = x.subarray(0, rows * F);
    const [la, lb] = [await fp32.computeGradients(batch, rows, DROPOUT_SEED), await mixed.computeGradients(batch, rows, DROPOUT_SEED)];
    expect(rel(lb.loss, la.loss), 'the reported loss is not scaled').toBeLessThan(1e-2);
    const [ga, gb] = [await fp32.readGradients(), await mixed.readGradients()];
    for (const e of s.layout.entries.filter((entry) => entry.name.startsWith('field_network.'))) {
      expect(relErr(view(gb, e), view(ga, e)), e.name).toBeLessThan(3e-2);
    }
  });

  it("tracks the fp32 run's loss over 300 training steps within 5%", async () => {
    const s = setup({ dropout: 0.1 });
    const F = s.config.model.fieldSize;
    const [fp32, mixed] = [await kernel(s, { precision: 'fp32' }), await kernel(s)];
    const rows = 8;
    const data = normal(21, 4 * rows * F);
    const losses: Array<[number, number]> = [];
    for (let step = 0; step < 300; step++) {
      const x = data.subarray((step % 4) * rows * F, ((step % 4) + 1) * rows * F);
      // Both kernels' work queued before either is awaited (the GPU runs calls in order).
      const [a, b] = await Promise.all([fp32.computeGradients(x, rows, step), mixed.computeGradients(x, rows, step)]);
      losses.push([a.loss, b.loss]);
      await Promise.all([fp32.applyGradients(s.config.optimizer), mixed.applyGradients(s.config.optimizer)]);
    }
    for (const [step, [a, b]] of losses.entries()) expect(rel(b, a), `step ${step}: mixed ${b}, fp32 ${a}`).toBeLessThan(0.05);
    const mean = (values: number[]) => values.reduce((sum, v) => sum + v, 0) / values.length;
    expect(mean(losses.slice(-20).map(([a]) => a)), 'it learns').toBeLessThan(0.9 * mean(losses.slice(0, 20).map(([a]) => a)));
    expect(await mixed.skippedSteps(), 'no overflow at 2^16 here').toBe(0);
    expect((await mixed.getOptimizerState()).fieldStep).toBe(300);
  });

  it('skips the step of an inf or NaN written gradient (nothing moves), halves the scale, then steps normally', async () => {
    const s = setup({ dropout: 0 });
    const F = s.config.model.fieldSize;
    const mixed = await kernel(s);
    const x = normal(9, 6 * F);
    await mixed.computeGradients(x, 6, DROPOUT_SEED);
    await mixed.applyGradients(s.config.optimizer);
    let scale = 65536;
    for (const [i, bad] of [
      [5, Infinity],
      [s.layout.total - 1, Number.NaN],
    ] as const) {
      const before = { params: await mixed.getParameters(), state: await mixed.getOptimizerState() };
      await mixed.computeGradients(x, 6, DROPOUT_SEED);
      const g = await mixed.readGradients();
      expect(g.every(Number.isFinite)).toBe(true);
      g[i] = bad;
      await mixed.writeGradients(g);
      await mixed.applyGradients(s.config.optimizer);
      const after = { params: await mixed.getParameters(), state: await mixed.getOptimizerState() };
      expect(firstBitDifference(after.params, before.params), `${bad}: parameters untouched`).toBe(-1);
      expect(firstBitDifference(after.state.m, before.state.m), 'm untouched').toBe(-1);
      expect(firstBitDifference(after.state.v, before.state.v), 'v untouched').toBe(-1);
      expect([after.state.fieldStep, after.state.spikeStep]).toEqual([before.state.fieldStep, before.state.spikeStep]);
      scale /= 2;
      expect(await mixed.lossScale()).toBe(scale);
    }
    expect(await mixed.skippedSteps()).toBe(2);
    const before = await mixed.getParameters();
    await mixed.computeGradients(x, 6, DROPOUT_SEED);
    await mixed.applyGradients(s.config.optimizer);
    expect(maxAbsDiff(await mixed.getParameters(), before), 'the next good step applies').toBeGreaterThan(0);
    expect(await mixed.getOptimizerState()).toMatchObject({ fieldStep: 2, spikeStep: 2 });
    expect(await mixed.scalerState()).toEqual({ scale, growthTracker: 1, skippedSteps: 2 });
  });

  it('skips while the scaled gradients overflow f16, halving the scale until they fit', async () => {
    const s = setup({ dropout: 0 });
    const F = s.config.model.fieldSize;
    const [fp32, mixed] = [await kernel(s, { precision: 'fp32' }), await kernel(s)];
    // Targets of ~±1e3: dL/dy·2^16 ≈ 2·1e3/48·2^16 ≈ 3e6 ≫ 65504 when the GEMMs round it to f16.
    const x = normal(9, 4 * F, 1e3);
    await fp32.computeGradients(x, 4, DROPOUT_SEED);
    const reference = await fp32.readGradients();
    expect(reference.every(Number.isFinite), 'finite in f32').toBe(true);
    const p0 = await mixed.getParameters();
    let skipped = 0;
    for (;;) {
      await mixed.computeGradients(x, 4, DROPOUT_SEED);
      const g = await mixed.readGradients();
      const scale = await mixed.lossScale();
      await mixed.applyGradients(s.config.optimizer);
      if (g.every(Number.isFinite)) {
        expect(await mixed.lossScale(), 'unchanged after a good step').toBe(scale);
        expect(relErr(g.subarray(0, s.layout.fieldCount), reference.subarray(0, s.layout.fieldCount)), 'then the unscaled gradients are right').toBeLessThan(3e-2);
        break;
      }
      skipped++;
      expect(await mixed.lossScale()).toBe(scale / 2);
      expect(firstBitDifference(await mixed.getParameters(), p0), 'skipped').toBe(-1);
      expect(skipped).toBeLessThan(20);
    }
    expect(skipped).toBeGreaterThan(3);
    expect(await mixed.scalerState()).toEqual({ scale: 65536 / 2 ** skipped, growthTracker: 1, skippedSteps: skipped });
    expect(await mixed.getOptimizerState()).toMatchObject({ fieldStep: 1, spikeStep: 1 });
  });

  it('doubles the scale after growthInterval good steps in a row, and a skip restarts the count', async () => {
    const s = setup({ dropout: 0 });
    const F = s.config.model.fieldSize;
    const mixed = await kernel(s, { lossScaling: { initialScale: 1024, growthInterval: 3 } });
    const x = normal(9, 4 * F);
    const step = async (poison = false) => {
      await mixed.computeGradients(x, 4, DROPOUT_SEED);
      if (poison) {
        const g = await mixed.readGradients();
        g[0] = Infinity;
        await mixed.writeGradients(g);
      }
      await mixed.applyGradients(s.config.optimizer);
      return mixed.scalerState();
    };
    expect(await step()).toMatchObject({ scale: 1024, growthTracker: 1 });
    expect(await step()).toMatchObject({ scale: 1024, growthTracker: 2 });
    expect(await step()).toMatchObject({ scale: 2048, growthTracker: 0 });
    expect(await step()).toMatchObject({ scale: 2048, growthTracker: 1 });
    expect(await step(true)).toMatchObject({ scale: 1024, growthTracker: 0, skippedSteps: 1 });
    for (let i = 0; i < 2; i++) await step();
    expect(await step()).toEqual({ scale: 2048, growthTracker: 0, skippedSteps: 1 });
    expect(await mixed.getOptimizerState()).toMatchObject({ fieldStep: 7, spikeStep: 7 });
  });

  it("round-trips the scaler's state and the GPU-held step counts (resume), and AdamW's bias corrections match fp32", async () => {
    const s = setup({ dropout: 0 });
    const [fp32, mixed] = [await kernel(s, { precision: 'fp32' }), await kernel(s, { lossScaling: { growthInterval: 5 } })];
    await mixed.setScalerState({ scale: 256, growthTracker: 4, skippedSteps: 7 });
    expect(await mixed.scalerState()).toEqual({ scale: 256, growthTracker: 4, skippedSteps: 7 });
    expect(await mixed.lossScale()).toBe(256);
    expect(await mixed.skippedSteps()).toBe(7);
    await expectQuadraError(() => mixed.setScalerState({ scale: 0, growthTracker: 0, skippedSteps: 0 }), 'INVALID_ARGUMENT', 'loss scale');
    await expectQuadraError(() => mixed.setScalerState({ scale: 1, growthTracker: -1, skippedSteps: 0 }), 'INVALID_ARGUMENT', 'growthTracker');

    // The same optimizer state and written gradients on both kernels: one AdamW step each.
    const n = s.layout.total;
    for (const [fieldStep, spikeStep] of [
      [0, 0],
      [17, 5],
      [100_000, 3],
    ] as const) {
      const state = { m: normal(31, n, 1e-3), v: normal(32, n, 1e-6).map(Math.abs), fieldStep, spikeStep };
      const g = normal(33, n, 1e-2);
      for (const k of [fp32, mixed]) {
        await k.setParameters(s.p0);
        await k.setOptimizerState(state);
        await k.writeGradients(g);
        await k.applyGradients(s.config.optimizer);
      }
      const [a, b] = [await fp32.getOptimizerState(), await mixed.getOptimizerState()];
      expect([b.fieldStep, b.spikeStep]).toEqual([fieldStep + 1, spikeStep + 1]);
      expect(firstBitDifference(b.m, a.m), 'the same moments').toBe(-1);
      expect(firstBitDifference(b.v, a.v)).toBe(-1);
      const [pa, pb] = [await fp32.getParameters(), await mixed.getParameters()];
      const moved = new Float32Array(n).map((_, i) => pa[i]! - s.p0[i]!);
      const movedMixed = new Float32Array(n).map((_, i) => pb[i]! - s.p0[i]!);
      expect(relErr(movedMixed, moved), `step ${fieldStep + 1}: the updates agree`).toBeLessThan(1e-4);
    }
    // The restored tracker (4) reaches the interval (5) on these good steps: the scale doubled once.
    expect(await mixed.scalerState()).toMatchObject({ scale: 512, skippedSteps: 7 });
  });

  // Only where the device has 'shader-f16' (not SwiftShader): both f16 paths, the same bits.
  it.skipIf(!NATIVE_F16)('computes the same bits on the native f16 path as on the packed one', async () => {
    const s = setup({ dropout: 0.1 });
    const F = s.config.model.fieldSize;
    const [native, packed] = [await kernel(s, { halfPath: 'native' }), await kernel(s, { halfPath: 'packed' })];
    const x = normal(3, 40 * F);
    const [a, b] = [await native.forward(x, 40), await packed.forward(x, 40)];
    expect(firstBitDifference(a.fieldOutput, b.fieldOutput)).toBe(-1);
    expect(firstBitDifference(a.spikeRates, b.spikeRates)).toBe(-1);
    for (let step = 0; step < 20; step++) {
      const batch = x.subarray((step % 4) * 8 * F, ((step % 4) + 1) * 8 * F);
      const [la, lb] = await Promise.all([native.computeGradients(batch, 8, step), packed.computeGradients(batch, 8, step)]);
      expect(la.loss, `step ${step}`).toBe(lb.loss);
      await Promise.all([native.applyGradients(s.config.optimizer), packed.applyGradients(s.config.optimizer)]);
    }
    expect(firstBitDifference(await native.getParameters(), await packed.getParameters())).toBe(-1);
  });
});
