import { afterEach, describe, expect, it } from 'vitest';
import { parseEngineConfig, type SpikeGradient } from '../../src-shared/engine-config';
import { initialParameters } from '../../src-main/engine/init';
import type { SyncModelKernel } from '../../src-main/engine/kernel';
import { buildLayout, type ParamLayout } from '../../src-main/engine/layout';
import { probeSimd } from '../../src-main/engine/simd/module';
import { planSimdSharedMemory, updateChunks } from '../../src-main/engine/simd/shared-memory';
import { SimdKernel } from '../../src-main/engine/simd/simd-kernel';
import { firstBitDifference, normal } from '../helpers/engine';

/**
 * The simd kernels of a data-parallel run in one shared memory (engine/simd/shared-memory.ts):
 * chunks that cover the update once, and an update taken chunk by chunk by several kernels that
 * is bit for bit the all-reduce + AdamW of a kernel with its own memory, Wᵀ copies included.
 */

const SMALL = { fieldSize: 12, hiddenSize: 16, spikingHiddenSize: 8, spikingSteps: 3, dropout: 0 };
const UNITS: Record<number, number> = { 0: 8, 1: 8, 2: 8, 3: 8, 4: 8, 5: 4, 6: 4 };

const live: SyncModelKernel[] = [];
afterEach(() => {
  for (const kernel of live.splice(0)) kernel.dispose();
});

function module() {
  const probe = probeSimd();
  if (!probe.available) throw new Error(`simd unavailable: ${probe.reason}`);
  expect(probe.module.shared, 'the shared-memory build is there (npm run build:wasm)').not.toBeNull();
  return probe.module;
}

function expectChunksCover(layout: ParamLayout, updated: number, target?: number): void {
  const chunks = updateChunks(layout, updated, target);
  let at = 0;
  for (const chunk of chunks) {
    expect(chunk.start, 'contiguous, in layout order').toBe(at);
    expect(chunk.end).toBeGreaterThan(chunk.start);
    expect(chunk.start < layout.fieldCount && chunk.end > layout.fieldCount, `[${chunk.start}, ${chunk.end}) crosses the field/spiking boundary`).toBe(false);
    if (chunk.matrix >= 0) {
      const entry = layout.entries.find((e) => e.offset <= chunk.start && chunk.end <= e.offset + e.size)!;
      const [rows = 0, columns = 0] = entry.shape;
      const unit = UNITS[chunk.matrix]!;
      expect(chunk.start).toBe(entry.offset + chunk.rows[0] * columns);
      expect(chunk.end).toBe(entry.offset + chunk.rows[1] * columns);
      expect(chunk.rows[0] % unit, `${entry.name} rows start on a unit of ${unit}`).toBe(0);
      expect(chunk.rows[1] % unit === 0 || chunk.rows[1] === rows, `${entry.name} rows end on a unit or at the last row`).toBe(true);
    }
    at = chunk.end;
  }
  expect(at, 'the chunks end where the update ends').toBe(updated);
}

describe('update chunks', () => {
  it.each([
    ['the default model', parseEngineConfig({}).model],
    ['a small model with half panels (12 rows)', parseEngineConfig({ model: SMALL }).model],
  ])('cover the updated layout once, in order, matrices in whole row units (%s)', (_, model) => {
    const layout = buildLayout(model);
    for (const target of [undefined, 64, 1]) {
      expectChunksCover(layout, layout.total, target);
      expectChunksCover(layout, layout.fieldCount, target);
    }
    // Every transposed matrix is covered, each in several chunks at a small target.
    expect(new Set(updateChunks(layout, layout.total).map((c) => c.matrix))).toEqual(new Set([-1, 0, 1, 2, 3, 4, 5, 6]));
    expect(updateChunks(layout, layout.fieldCount).some((c) => c.start >= layout.fieldCount)).toBe(false);
  });

  it('a plan past wasm32 memory is declined (the caller falls back to a memory per kernel)', () => {
    const model = parseEngineConfig({}).model;
    expect(planSimdSharedMemory(module(), model, buildLayout(model), 128, 4096, buildLayout(model).total)).toBeNull();
  });
});

describe('kernels in one shared memory', () => {
  it.each(['surrogate', 'none'] as const)('update chunk by chunk, alternating kernels, to the bits of an all-reduce + AdamW in a memory of its own (%s)', (spikeGradient: SpikeGradient) => {
    const config = parseEngineConfig({ model: { ...SMALL, spikeGradient } });
    const layout = buildLayout(config.model);
    const p0 = initialParameters(layout, 3);
    const updated = spikeGradient === 'surrogate' ? layout.total : layout.fieldCount;
    const rows = [8, 5];
    const plan = planSimdSharedMemory(module(), config.model, layout, 2, 8, updated)!;
    const chunks = updateChunks(layout, updated, 64);
    const shared = plan.ownBases.map((ownBase) => new SimdKernel(config.model, layout, p0, { placement: { memory: plan.memory, sharedBase: plan.sharedBase, ownBase, capacity: plan.capacity } }));
    const own = rows.map(() => new SimdKernel(config.model, layout, p0, { capacity: 8 }));
    live.push(...shared, ...own);
    expect(shared.map((k) => k.gradientAddress())).toEqual(plan.ownBases);
    const weights = rows.map((r) => r / (rows[0]! + rows[1]!));
    for (let step = 0; step < 3; step++) {
      const batches = rows.map((r, rank) => normal(100 * step + rank, r * config.model.fieldSize));
      for (const kernels of [shared, own]) kernels.forEach((k, rank) => k.computeGradients(batches[rank]!, rows[rank]!, 7 + rank));
      // The reference: rank 0 of separate memories reduces every slot and runs AdamW over all of it.
      own[0]!.allReduce(0, weights, own.map((k) => k.gradientView().slice()));
      own[0]!.applyGradients(config.optimizer);
      // Rank 1 of the reference continues from rank 0's result (a replica).
      own[1]!.setParameters(own[0]!.getParameters());
      own[1]!.setOptimizerState(own[0]!.getOptimizerState());
      chunks.forEach((chunk, i) => shared[(i + step) % 2]!.updateChunk(chunk, weights, plan.ownBases, config.optimizer));
      for (const k of shared) k.applyGradients(config.optimizer);
      const reference = own[0]!.getOptimizerState();
      for (const k of shared) {
        expect(firstBitDifference(k.getParameters(), own[0]!.getParameters()), `step ${step + 1}: parameters`).toBe(-1);
        expect(firstBitDifference(k.getOptimizerState().m, reference.m), `step ${step + 1}: m`).toBe(-1);
        expect(firstBitDifference(k.getOptimizerState().v, reference.v), `step ${step + 1}: v`).toBe(-1);
        expect(k.getOptimizerState().fieldStep).toBe(reference.fieldStep);
      }
      // Each kernel's forward reads the Wᵀ copies the chunks refreshed: the same bits as the reference's.
      const probe = normal(999, 6 * config.model.fieldSize);
      const expected = own[0]!.forward(probe, 6);
      for (const k of shared) {
        const actual = k.forward(probe, 6);
        expect(firstBitDifference(actual.fieldOutput, expected.fieldOutput), `step ${step + 1}: forward through the refreshed Wᵀ`).toBe(-1);
        expect(firstBitDifference(actual.spikeRates, expected.spikeRates)).toBe(-1);
      }
    }
  });

  it('a kernel placed in a shared memory refuses more rows than it was placed for', () => {
    const config = parseEngineConfig({ model: SMALL });
    const layout = buildLayout(config.model);
    const plan = planSimdSharedMemory(module(), config.model, layout, 2, 8, layout.total)!;
    const kernel = new SimdKernel(config.model, layout, initialParameters(layout, 1), { placement: { memory: plan.memory, sharedBase: plan.sharedBase, ownBase: plan.ownBases[1]!, capacity: plan.capacity } });
    live.push(kernel);
    const rows = plan.capacity + 1;
    expect(() => kernel.computeGradients(normal(1, rows * config.model.fieldSize), rows, 1)).toThrow(`exceed the ${plan.capacity} it was placed for`);
  });
});
