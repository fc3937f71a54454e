import { describe, expect, it } from 'vitest';
import { decodeCheckpoint } from '../../src-main/engine/checkpoint';
import { TfjsKernel } from '../../src-main/engine/tfjs-kernel';
import { buildLayout } from '../../src-main/engine/layout';
import { ModelConfigSchema, OptimizerConfigSchema } from '../../src-shared/engine-config';
import { createEngine, loadSafetensorsFixture, maxAbsDiff, readFixture, relErr, SMALL_MODEL, tensor } from '../helpers/engine';

/** Files written by real PyTorch (tests/fixtures/pytorch/make_fixtures.py) for the reference modules. */
describe('parity with the PyTorch reference', () => {
  for (const spikePath of ['host', 'tensor'] as const) it(`loads a PyTorch state_dict at default sizes and reproduces its outputs (${spikePath} LIF path)`, async () => {
    const contents = decodeCheckpoint(readFixture('pytorch/default.safetensors'), 'default.safetensors');
    expect(contents.origin).toBe('pytorch');
    expect(contents.model).toMatchObject({ fieldSize: 100, hiddenSize: 256, spikingHiddenSize: 128 });
    const engine = await createEngine({ model: contents.model });
    (engine.kernel as TfjsKernel).spikePath = spikePath;
    engine.loadCheckpoint(contents);
    const io = loadSafetensorsFixture('pytorch/default-io.safetensors');
    const input = tensor(io, 'input');
    const out = engine.processBatch(input, 8);
    expect(maxAbsDiff(out.fieldOutput, tensor(io, 'field_output'))).toBeLessThan(1e-4);
    // Spike rates must agree except where a membrane sits at the threshold within float rounding.
    const margin = tensor(io, 'spike_margin');
    const expectedRates = tensor(io, 'spike_rates');
    let compared = 0;
    for (let b = 0; b < 8; b++) {
      if (margin[b]! < 1e-4) continue;
      compared++;
      expect(maxAbsDiff(out.spikeRates.subarray(b * 100, b * 100 + 100), expectedRates.subarray(b * 100, b * 100 + 100))).toBe(0);
    }
    expect(compared).toBeGreaterThan(0);
    engine.dispose();
  });

  it('matches PyTorch eval outputs and loss at small sizes', async () => {
    const engine = await createEngine({ model: { ...SMALL_MODEL } });
    engine.loadCheckpoint(decodeCheckpoint(readFixture('pytorch/small.safetensors'), 'small.safetensors', SMALL_MODEL));
    const io = loadSafetensorsFixture('pytorch/small-io.safetensors');
    const out = engine.processBatch(tensor(io, 'input'), 5);
    expect(maxAbsDiff(out.fieldOutput, tensor(io, 'field_output'))).toBeLessThan(1e-5);
    expect(maxAbsDiff(out.spikeRates, tensor(io, 'spike_rates'))).toBe(0);
    expect(out.loss).toBeCloseTo(tensor(io, 'loss')[0]!, 5);
    engine.dispose();
  });

  for (const [mode, spikePath] of [['surrogate', 'host'], ['surrogate', 'tensor'], ['none', 'host'], ['none', 'tensor']] as const) {
    it(`gradients and one AdamW step match PyTorch autograd ('${mode}', ${spikePath} LIF path)`, async () => {
      const engine = await createEngine({ model: { ...SMALL_MODEL, dropout: 0, spikeGradient: mode } });
      (engine.kernel as TfjsKernel).spikePath = spikePath;
      engine.loadCheckpoint(decodeCheckpoint(readFixture('pytorch/small.safetensors'), 'small.safetensors', SMALL_MODEL));
      const ref = loadSafetensorsFixture(`pytorch/small-grads-${mode}.safetensors`);
      const input = tensor(loadSafetensorsFixture('pytorch/small-io.safetensors'), 'input');
      const parts = engine.computeGradients(input, 5);
      expect(parts.loss).toBeCloseTo(tensor(ref, 'loss')[0]!, 5);
      const grads = engine.kernel.readGradients();
      for (const e of engine.layout.entries) {
        const mine = grads.subarray(e.offset, e.offset + e.size);
        if (ref.tensors.has(`grad.${e.name}`)) {
          expect(relErr(mine, tensor(ref, `grad.${e.name}`)), e.name).toBeLessThan(1e-4);
        } else {
          expect(mode).toBe('none');
          expect(maxAbsDiff(mine, new Float32Array(e.size)), e.name).toBe(0);
        }
      }
      engine.applyGradients();
      const after = engine.getState();
      for (const e of engine.layout.entries) {
        const p = after.parameters.subarray(e.offset, e.offset + e.size);
        expect(maxAbsDiff(p, tensor(ref, `after.${e.name}`)), `after.${e.name}`).toBeLessThan(2e-6);
        if (ref.tensors.has(`adam_m.${e.name}`)) {
          expect(relErr(after.optimizer.m.subarray(e.offset, e.offset + e.size), tensor(ref, `adam_m.${e.name}`)), `adam_m.${e.name}`).toBeLessThan(1e-4);
          expect(relErr(after.optimizer.v.subarray(e.offset, e.offset + e.size), tensor(ref, `adam_v.${e.name}`)), `adam_v.${e.name}`).toBeLessThan(1e-3);
        }
      }
      expect(after.optimizer.fieldStep).toBe(1);
      expect(after.optimizer.spikeStep).toBe(mode === 'surrogate' ? 1 : 0);
      engine.dispose();
    });
  }

  for (const spikePath of ['host', 'tensor'] as const) it(`tracks a 200-step PyTorch training run (surrogate, ${spikePath} LIF path)`, async () => {
    const engine = await createEngine({ model: { ...SMALL_MODEL, dropout: 0, spikeGradient: 'surrogate' } });
    (engine.kernel as TfjsKernel).spikePath = spikePath;
    engine.loadCheckpoint(decodeCheckpoint(readFixture('pytorch/small.safetensors'), 'small.safetensors', SMALL_MODEL));
    const ref = loadSafetensorsFixture('pytorch/small-train-surrogate.safetensors');
    const data = tensor(ref, 'data');
    const losses = tensor(ref, 'losses');
    const mine: number[] = [];
    for (let i = 0; i < 200; i++) mine.push(engine.trainStep(data, 64).loss);
    // Float32 rounding may flip a spike once membranes sit within ~1e-5 of θ; early steps agree tightly.
    expect(maxAbsDiff(mine.slice(0, 5), Array.from(losses.slice(0, 5)))).toBeLessThan(1e-5);
    expect(maxAbsDiff(mine, Array.from(losses))).toBeLessThan(5e-3);
    const params = engine.getState().parameters;
    const threshold = engine.layout.byName.get('spike_network.threshold')!;
    const decay = engine.layout.byName.get('spike_network.decay')!;
    expect(params[threshold.offset]).toBeCloseTo(tensor(ref, 'after.spike_network.threshold')[0]!, 2);
    expect(params[decay.offset]).toBeCloseTo(tensor(ref, 'after.spike_network.decay')[0]!, 2);
    engine.dispose();
  });

  it('accepts F16 and BF16 weights and gives PyTorch\'s outputs for them', async () => {
    const lowp = loadSafetensorsFixture('pytorch/small-lowp-io.safetensors');
    for (const kind of ['f16', 'bf16'] as const) {
      const contents = decodeCheckpoint(readFixture(`pytorch/small-${kind}.safetensors`), `small-${kind}.safetensors`, SMALL_MODEL);
      const engine = await createEngine({ model: { ...SMALL_MODEL } });
      engine.loadCheckpoint(contents);
      const out = engine.processBatch(tensor(lowp, 'input'), 5);
      expect(maxAbsDiff(out.fieldOutput, tensor(lowp, `field_output_${kind}`)), kind).toBeLessThan(1e-5);
      expect(maxAbsDiff(out.spikeRates, tensor(lowp, `spike_rates_${kind}`)), kind).toBe(0);
      engine.dispose();
    }
  });

  it('the on-device AdamW (native backends) takes the same step as PyTorch', async () => {
    // Built directly so the device optimiser runs on the test backend.
    await createEngine({ model: { ...SMALL_MODEL } });
    const contents = decodeCheckpoint(readFixture('pytorch/small.safetensors'), 'small.safetensors', SMALL_MODEL);
    const model = ModelConfigSchema.parse({ ...SMALL_MODEL, dropout: 0, spikeGradient: 'surrogate' });
    const kernel = new TfjsKernel('wasm', model, buildLayout(model), contents.parameters, { hostOptimizer: false });
    const ref = loadSafetensorsFixture('pytorch/small-grads-surrogate.safetensors');
    kernel.computeGradients(tensor(loadSafetensorsFixture('pytorch/small-io.safetensors'), 'input'), 5, 0);
    kernel.applyGradients(OptimizerConfigSchema.parse({}));
    const after = kernel.getParameters();
    const state = kernel.getOptimizerState();
    for (const e of kernel.layout.entries) {
      expect(maxAbsDiff(after.subarray(e.offset, e.offset + e.size), tensor(ref, `after.${e.name}`)), e.name).toBeLessThan(2e-6);
      expect(relErr(state.m.subarray(e.offset, e.offset + e.size), tensor(ref, `adam_m.${e.name}`)), e.name).toBeLessThan(1e-4);
    }
    kernel.dispose();
  });
});
