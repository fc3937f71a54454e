import { expect } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { BackendId, EngineConfigInput, ModelConfig } from '../../src-shared/engine-config';
import { selectBackend } from '../../src-main/engine/backends';
import { OscillatorEngine, type EngineState } from '../../src-main/engine/engine';
import { Rng } from '../../src-main/engine/random';
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

/** n float32 values drawn from N(0, sigma²) by Rng(seed): the tests' batches and random tensors. */
export function normal(seed: number, n: number, sigma = 1): Float32Array {
  return new Rng(seed).fillNormal(new Float32Array(n), sigma);
}

/** |a − b| / |b| for scalars. */
export function rel(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}

/** max |a − b| / (max |b| + floor): a relative error robust to tiny reference values. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-12): number {
  let scale = floor;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  return maxAbsDiff(a, b) / scale;
}

/** Activates the test backend without building an engine (for tests of the pure tensor helpers). */
export async function useTestBackend(backend: BackendId = TEST_BACKEND): Promise<void> {
  await selectBackend(backend, NO_GPU);
}

/** Index of the first element whose float32 bits differ (so NaN payloads and −0 count), or −1. */
export function firstBitDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

/** What `action` threw (synchronously or as a rejection); fails the test when it does not throw. */
export async function thrownBy(action: () => unknown): Promise<unknown> {
  try {
    await action();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error, none was thrown');
}

/**
 * erf in float64 from the all-positive series erf(x) = 2/√π·e^(−x²)·Σ (2x²)ⁿ·x / (1·3·…·(2n+1)):
 * no cancellation, so the error is a few ulp for |x| ≤ 6; beyond, erf(x) rounds to ±1 in float64.
 */
export function erf64(x: number): number {
  const a = Math.abs(x);
  if (a > 6) return Math.sign(x);
  let term = a;
  let sum = a;
  for (let n = 1; term > sum * 1e-17; n++) {
    term *= (2 * a * a) / (2 * n + 1);
    sum += term;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-a * a) * sum;
}

/** Exact (erf) GELU in float64: x·Φ(x). */
export function gelu64(x: number): number {
  return 0.5 * x * (1 + erf64(x * Math.SQRT1_2));
}

/** LayerNorm of one row in float64: biased variance, eps 1e-5 (PyTorch's default). */
export function layerNorm64(row: readonly number[], gain: ArrayLike<number>, bias: ArrayLike<number>, eps = 1e-5): number[] {
  const mean = row.reduce((s, v) => s + v, 0) / row.length;
  const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / row.length;
  const rstd = 1 / Math.sqrt(variance + eps);
  return row.map((v, i) => (v - mean) * rstd * gain[i]! + bias[i]!);
}

/** The engine's whole state, compared bit for bit (NaN payloads and −0 included). */
export function expectSameState(actual: EngineState, expected: EngineState): void {
  expect(firstBitDifference(actual.parameters, expected.parameters), 'parameters').toBe(-1);
  expect(firstBitDifference(actual.optimizer.m, expected.optimizer.m), 'Adam m').toBe(-1);
  expect(firstBitDifference(actual.optimizer.v, expected.optimizer.v), 'Adam v').toBe(-1);
  expect(firstBitDifference(actual.fieldState, expected.fieldState), 'field state').toBe(-1);
  expect(actual.step).toBe(expected.step);
  expect(actual.optimizer.fieldStep).toBe(expected.optimizer.fieldStep);
  expect(actual.optimizer.spikeStep).toBe(expected.optimizer.spikeStep);
}

/** A safetensors file from raw header bytes and a raw buffer, for building malformed files. */
export function safetensorsBytes(header: Uint8Array, buffer: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + header.length + buffer.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  out.set(buffer, 8 + header.length);
  return out;
}
