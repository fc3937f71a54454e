import { afterAll, describe, expect, it } from 'vitest';
import { QuadraError } from '../../src-shared/errors';
import { decodeCheckpoint, encodeCheckpoint, storableCheckpoint, type CheckpointContents } from '../../src-main/engine/checkpoint';
import type { OscillatorEngine } from '../../src-main/engine/engine';
import { buildLayout, view } from '../../src-main/engine/layout';
import { parseEngineConfig } from '../../src-shared/engine-config';
import { createEngine, firstBitDifference, loadSafetensorsFixture, maxAbsDiff, readFixture, tensor, thrownBy } from '../helpers/engine';

/**
 * .pth files written by torch.save through a copy of the original project's engine
 * (tests/fixtures/pth/make_pth_fixtures.py), each beside what it must decode to.
 */
const FIXTURES = [
  'engine',
  'engine-step-int',
  'engine-protocol4',
  'engine-data-parallel',
  'engine-ddp',
  'engine-main-config',
  'state-dict',
  'state-dict-f16',
  'state-dict-bf16',
  'state-dict-views',
] as const;
const F = 8;

const engines: OscillatorEngine[] = [];
afterAll(() => {
  for (const e of engines) e.dispose();
});

function decodeFixture(name: string): { bytes: Uint8Array; contents: CheckpointContents } {
  const bytes = readFixture(`pth/${name}.pth`);
  return { bytes, contents: decodeCheckpoint(bytes, `${name}.pth`) };
}

describe("the original project's .pth checkpoints", () => {
  for (const name of FIXTURES) {
    it(`${name}.pth: the tensors PyTorch saved, in our layout, and the original model's eval outputs`, async () => {
      const { contents } = decodeFixture(name);
      const expected = loadSafetensorsFixture(`pth/${name}.expected.safetensors`);
      const meta = expected.metadata;
      expect(contents.origin).toBe('pth');
      expect(contents.model).toMatchObject({ fieldSize: Number(meta.F), hiddenSize: Number(meta.H), spikingHiddenSize: Number(meta.S), spikingSteps: Number(meta.T) });
      expect(contents.fieldState).toBeNull(); // the original never saves its field state
      const layout = buildLayout(contents.model);
      for (const e of layout.entries) {
        expect(firstBitDifference(view(contents.parameters, e), tensor(expected, `param.${e.name}`)), e.name).toBe(-1);
      }

      if (meta.has_optimizer === '1') {
        const optimizer = contents.optimizer!;
        expect(optimizer).not.toBeNull();
        expect(optimizer.fieldStep).toBe(Number(meta.field_step));
        expect(optimizer.spikeStep).toBe(Number(meta.spike_step));
        expect(contents.step).toBe(optimizer.fieldStep);
        let withMoments = 0;
        for (const e of layout.entries) {
          const m = view(optimizer.m, e);
          const v = view(optimizer.v, e);
          if (expected.tensors.has(`exp_avg.${e.name}`)) {
            withMoments++;
            expect(firstBitDifference(m, tensor(expected, `exp_avg.${e.name}`)), `exp_avg ${e.name}`).toBe(-1);
            expect(firstBitDifference(v, tensor(expected, `exp_avg_sq.${e.name}`)), `exp_avg_sq ${e.name}`).toBe(-1);
          } else {
            // The original's spiking network gets no gradients: no optimizer state, so zero moments.
            expect(maxAbsDiff(m, new Float32Array(e.size)), e.name).toBe(0);
            expect(maxAbsDiff(v, new Float32Array(e.size)), e.name).toBe(0);
          }
        }
        expect(withMoments).toBe(Number(meta.field_moments) + Number(meta.spike_moments));
        expect(withMoments).toBe(layout.entries.filter((e) => e.group === 'field').length);
      } else {
        expect(contents.optimizer).toBeNull();
        expect(contents.step).toBeNull();
      }

      const engine = await createEngine({ model: contents.model });
      engines.push(engine);
      engine.loadCheckpoint(contents);
      let compared = 0;
      for (const input of ['input', 'input1']) {
        const x = tensor(expected, input);
        const rows = x.length / F;
        const out = engine.processBatch(x, rows);
        expect(maxAbsDiff(out.fieldOutput, tensor(expected, `${input}.field_output`)), `${input} field output`).toBeLessThanOrEqual(1e-4);
        // Spike rates must agree except where a membrane sits at the threshold within float rounding.
        const margin = tensor(expected, `${input}.spike_margin`);
        const rates = tensor(expected, `${input}.spike_rates`);
        for (let b = 0; b < rows; b++) {
          if (margin[b]! < 1e-4) continue;
          compared++;
          expect(maxAbsDiff(out.spikeRates.subarray(b * F, (b + 1) * F), rates.subarray(b * F, (b + 1) * F)), `${input} spike rates, row ${b}`).toBe(0);
        }
      }
      expect(compared).toBeGreaterThanOrEqual(4);
    });
  }

  it('reads the engine config the GPUConfig gives: none from the original class, sizes and batch from a copy that carries them', () => {
    const original = decodeFixture('engine').contents;
    expect(original.engineConfig).toBeNull();
    expect(original.metadata).toMatchObject({ pth_layout: 'engine checkpoint', pth_folder: 'engine', pth_version: '3', pth_config_class: 'quadra_matrix_gpu.GPUConfig' });
    expect(JSON.parse(original.metadata.pth_config!)).toEqual({
      use_cuda: false,
      mixed_precision: false,
      num_gpus: 0,
      batch_size: 32,
      pin_memory: true,
      num_workers: 4,
      prefetch_factor: 2,
      persistent_workers: true,
    });
    const copy = decodeFixture('engine-main-config').contents;
    expect(copy.metadata.pth_config_class).toBe('__main__.GPUConfig');
    expect(copy.engineConfig).toEqual({ batchSize: 16, model: copy.model });
    expect(copy.model.spikingSteps).toBe(6);
    expect(parseEngineConfig({ ...copy.engineConfig, model: copy.model }).batchSize).toBe(16);
    expect(decodeFixture('state-dict').contents.metadata).toEqual({ pth_layout: 'state_dict', pth_folder: 'state-dict', pth_version: '3' });
  });

  it('gives the same tensors whatever the wrapping, pickle protocol or step type', () => {
    const engine = decodeFixture('engine').contents;
    for (const name of ['engine-step-int', 'engine-protocol4']) {
      const other = decodeFixture(name).contents;
      expect(firstBitDifference(other.parameters, engine.parameters), name).toBe(-1);
      expect(firstBitDifference(other.optimizer!.m, engine.optimizer!.m), name).toBe(-1);
      expect(firstBitDifference(other.optimizer!.v, engine.optimizer!.v), name).toBe(-1);
      expect(other.optimizer!.fieldStep).toBe(3);
    }
    const plain = decodeFixture('state-dict').contents;
    expect(firstBitDifference(decodeFixture('state-dict-views').contents.parameters, plain.parameters)).toBe(-1);
  });

  it('checks the sizes a caller expects against the shapes, as for safetensors', async () => {
    const bytes = readFixture('pth/engine.pth');
    const error = await thrownBy(() => decodeCheckpoint(bytes, 'engine.pth', { hiddenSize: 16 }));
    expect(error).toBeInstanceOf(QuadraError);
    expect(error).toMatchObject({ code: 'SHAPE_MISMATCH', message: 'engine.pth: the tensors are for hiddenSize 12, but hiddenSize 16 was expected' });
    expect(decodeCheckpoint(bytes, 'engine.pth', { spikingSteps: 4 }).model.spikingSteps).toBe(4);
  });
});

describe('storableCheckpoint', () => {
  it('re-encodes a .pth as our safetensors checkpoint that decodes to the same parameters, moments and steps', () => {
    for (const name of FIXTURES) {
      const { bytes, contents } = decodeFixture(name);
      const stored = storableCheckpoint(bytes, contents);
      const again = decodeCheckpoint(stored, `checkpoint of ${name}`);
      expect(again.origin).toBe('quadra');
      expect(again.model).toEqual(contents.model);
      expect(firstBitDifference(again.parameters, contents.parameters), name).toBe(-1);
      if (contents.optimizer) {
        expect(firstBitDifference(again.optimizer!.m, contents.optimizer.m), name).toBe(-1);
        expect(firstBitDifference(again.optimizer!.v, contents.optimizer.v), name).toBe(-1);
        expect(again.optimizer!.fieldStep).toBe(contents.optimizer.fieldStep);
        expect(again.optimizer!.spikeStep).toBe(contents.optimizer.spikeStep);
      } else {
        expect(again.optimizer).toBeNull();
      }
      expect(again.step).toBe(contents.step ?? 0);
      // The original saves no field state; the stored checkpoint starts it at zero.
      expect(again.fieldState).toEqual(new Float32Array(F));
      expect(again.metadata).toMatchObject({ imported_from: 'pth', ...contents.metadata });
      expect(again.engineConfig?.model).toEqual(contents.model);
      if (name === 'engine-main-config') expect(again.engineConfig?.batchSize).toBe(16);
    }
  });

  it('returns safetensors bytes unchanged', () => {
    const { contents } = decodeFixture('engine');
    const ours = encodeCheckpoint({
      config: parseEngineConfig({ model: contents.model }),
      parameters: contents.parameters,
      optimizer: contents.optimizer!,
      fieldState: new Float32Array(F),
      step: 3,
    });
    expect(storableCheckpoint(ours, decodeCheckpoint(ours, 'ours'))).toBe(ours);
    const torch = readFixture('pytorch/small.safetensors');
    expect(storableCheckpoint(torch, decodeCheckpoint(torch, 'small.safetensors'))).toBe(torch);
  });
});
