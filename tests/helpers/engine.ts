import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { BackendId, EngineConfigInput, ModelConfig } from '../../src-shared/engine-config';
import { OscillatorEngine } from '../../src-main/engine/engine';
import { parseSafetensors, type SafetensorsFile } from '../../src-main/engine/safetensors';

export const FIXTURES = path.resolve(__dirname, '../fixtures');
const NO_GPU = { gpus: [], nvidiaSmi: { available: false as const, reason: 'tests run without a GPU' } };

/** The backend tests run on: wasm (what CPU-only users get), or QUADRA_TEST_BACKEND. */
export const TEST_BACKEND = (process.env.QUADRA_TEST_BACKEND ?? 'wasm') as BackendId;

export const SMALL_MODEL: Partial<ModelConfig> = { fieldSize: 6, hiddenSize: 8, spikingHiddenSize: 5, spikingSteps: 4 };

export function createEngine(config: EngineConfigInput = {}, backend: BackendId = TEST_BACKEND): Promise<OscillatorEngine> {
  return OscillatorEngine.create({ config, backend, gpu: NO_GPU });
}

export function readFixture(relative: string): Uint8Array {
  const bytes = readFileSync(path.join(FIXTURES, relative));
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function loadSafetensorsFixture(relative: string): SafetensorsFile {
  return parseSafetensors(readFixture(relative), relative);
}

export function tensor(file: SafetensorsFile, name: string): Float32Array {
  const t = file.tensors.get(name);
  if (!t) throw new Error(`fixture has no tensor ${name}`);
  return t.data;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** max |a − b| / (max |b| + floor): a relative error robust to tiny reference values. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-12): number {
  let scale = floor;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  return maxAbsDiff(a, b) / scale;
}
