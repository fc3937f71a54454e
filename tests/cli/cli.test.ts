import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { decodeCheckpoint } from '../../src-main/engine/checkpoint';
import { parseNpy, serializeNpy } from '../../src-main/data/npy';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'src-main/cli/quadra.mjs');
const FAKE_SMI = path.join(ROOT, 'tests/fixtures/bin/nvidia-smi');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function quadra(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    // Every run records into a temporary database, never the user's.
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, QUADRA_DB: path.join(tmp, 'cli.sqlite'), ...env }, timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function expectNoStack(run: Run): void {
  expect(run.stderr).not.toMatch(/^\s+at .*\(.*:\d+:\d+\)/m);
}

describe('quadra CLI', () => {
  it('prints usage and exits 2 for unknown commands and bad arguments', async () => {
    const help = await quadra(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('commands:');
    const unknown = await quadra(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
    const badInt = await quadra(['bench', '--batch-size', 'abc']);
    expect(badInt.code).toBe(2);
    expect(badInt.stderr).toContain("--batch-size must be a whole number, got 'abc'");
    expect(badInt.stderr).toContain('usage: quadra bench');
    const badChoice = await quadra(['bench', '--spike-gradient', 'sometimes']);
    expect(badChoice.code).toBe(2);
    expect(badChoice.stderr).toContain('--spike-gradient must be one of surrogate, none');
    const unknownOption = await quadra(['train', '--epochs', '1', '--turbo']);
    expect(unknownOption.code).toBe(2);
    expect(unknownOption.stderr).toContain("unknown option '--turbo'");
    const missing = await quadra(['predict', '--input', 'x.npy']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--checkpoint is required');
    const tooLarge = await quadra(['train', '--epochs', '1', '--field-size', '65536', '--hidden-size', '16384', '--json']);
    expect(tooLarge.code).toBe(2);
    expect(tooLarge.stderr).toContain('model too large');
    expect(JSON.parse(tooLarge.stdout).error.code).toBe('INVALID_CONFIG');
    const fp16Alone = await quadra(['train', '--epochs', '1', '--fp16']);
    expect(fp16Alone.code).toBe(2);
    expect(fp16Alone.stderr).toContain('--fp16 needs --checkpoint-out');
  });

  it('bench --json prints one object with the documented fields', async () => {
    const run = await quadra(['bench', '--backend', 'wasm', '--batch-size', '16', '--iterations', '2', '--repeats', '2', '--warmup', '1', '--spike-gradient', 'none', '--json']);
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(result).toMatchObject({ backend: 'wasm', batchSize: 16, spikeGradient: 'none', repeats: 2 });
    for (const key of ['trainSamplesPerSec', 'forwardSamplesPerSec']) {
      expect(result[key].median).toBeGreaterThan(0);
      expect(result[key].min).toBeLessThanOrEqual(result[key].median);
      expect(result[key].max).toBeGreaterThanOrEqual(result[key].median);
    }
  });

  it('hardware --json reports backends and a recommendation; with the recorded nvidia-smi it sees two GPUs', async () => {
    const plain = JSON.parse((await quadra(['hardware', '--json'], { QUADRA_NVIDIA_SMI: path.join(tmp, 'no-such-nvidia-smi') })).stdout);
    expect(plain.gpus).toEqual([]);
    expect(plain.backends.map((b: { id: string }) => b.id)).toEqual(['tensorflow-gpu', 'webgpu', 'simd', 'tensorflow', 'wasm', 'cpu']);
    expect(plain.backends.find((b: { id: string }) => b.id === 'wasm').available).toBe(true);
    // The fused kernel is built by npm install / npm run build, and is the default on CPUs.
    expect(plain.backends.find((b: { id: string }) => b.id === 'simd')).toMatchObject({ available: true, reason: expect.stringContaining('fused Quadra Matrix kernel') });
    expect(plain.recommended.batchSize).toBe(64);

    const gpu = await quadra(['hardware', '--json'], { QUADRA_NVIDIA_SMI: FAKE_SMI });
    expect(gpu.code).toBe(0);
    const withGpus = JSON.parse(gpu.stdout);
    expect(withGpus.gpus).toHaveLength(2);
    expect(withGpus.gpus[0]).toMatchObject({ name: 'NVIDIA GeForce RTX 3090', cudaVersion: '12.2' });
    expect(withGpus.recommended).toMatchObject({ mode: 'multi-gpu', workers: 2, batchSize: 64 });
    const gpuBackend = withGpus.backends.find((b: { id: string }) => b.id === 'tensorflow-gpu');
    expect(gpuBackend.available).toBe(false);
    expect(gpuBackend.reason).toMatch(/not installed|failed|missing/);
  });

  it('train writes a checkpoint that predict uses; outputs are float32 .npy', async () => {
    const checkpoint = path.join(tmp, 'model.safetensors');
    const run = await quadra(['train', '--epochs', '2', '--dataset', 'synthetic:96', '--batch-size', '32', '--backend', 'wasm', '--checkpoint-out', checkpoint, '--json']);
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.stdout);
    // 96 rows, 10% held out for validation: 86 training rows make 2 batches of 32 an epoch.
    expect(summary).toMatchObject({ status: 'completed', mode: 'single', workers: 1, backend: 'wasm', epochs: 2, steps: 4, samples: 128, checkpoint });
    expect(Number.isFinite(summary.finalLoss)).toBe(true);
    expect(Number.isFinite(summary.bestValidationLoss)).toBe(true);
    expect(summary.bestCheckpointId).toBeGreaterThan(0);
    const bytes = readFileSync(checkpoint);
    const contents = decodeCheckpoint(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), checkpoint);
    expect(contents.step).toBe(4);
    expect(contents.optimizer?.fieldStep).toBe(4);

    const input = path.join(tmp, 'x.npy');
    writeFileSync(input, serializeNpy(new Float32Array(3 * 100).map((_, i) => Math.sin(i)), [3, 100]));
    const out = path.join(tmp, 'y.npy');
    const spikes = path.join(tmp, 's.npy');
    const predicted = await quadra(['predict', '--checkpoint', checkpoint, '--input', input, '--output', out, '--spikes', spikes, '--backend', 'wasm', '--json']);
    expect(predicted.code).toBe(0);
    expect(JSON.parse(predicted.stdout)).toMatchObject({ rows: 3, fieldSize: 100 });
    const y = parseNpy(new Uint8Array(readFileSync(out)), out);
    expect(y.shape).toEqual([3, 100]);
    expect(y.sourceDtype).toBe('<f4');
    expect(parseNpy(new Uint8Array(readFileSync(spikes)), spikes).shape).toEqual([3, 100]);

    const half = path.join(tmp, 'half.safetensors');
    const small = await quadra(['train', '--epochs', '1', '--dataset', 'synthetic:32', '--batch-size', '16', '--field-size', '12', '--hidden-size', '8', '--spiking-steps', '3', '--backend', 'wasm', '--checkpoint-out', half, '--fp16', '--json']);
    expect(small.code).toBe(0);
    const halfBytes = readFileSync(half);
    const halfContents = decodeCheckpoint(new Uint8Array(halfBytes.buffer, halfBytes.byteOffset, halfBytes.byteLength), half);
    expect(halfContents.model).toMatchObject({ fieldSize: 12, hiddenSize: 8, spikingSteps: 3 });
    expect(halfContents.optimizer).toBeNull();
    const header = JSON.parse(halfBytes.toString('utf8', 8, 8 + Number(halfBytes.readBigUInt64LE(0))));
    expect(header['field_network.encoder.0.weight'].dtype).toBe('F16');
  });

  it('bad files give one line naming the file, exit 1, no stack trace, and no output file', async () => {
    const garbage = path.join(tmp, 'garbage.safetensors');
    writeFileSync(garbage, 'not a checkpoint at all');
    const input = path.join(tmp, 'in.csv');
    writeFileSync(input, 'a,b\n1,2\n');
    const out = path.join(tmp, 'never.npy');
    const bad = await quadra(['predict', '--checkpoint', garbage, '--input', input, '--output', out]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toContain('garbage.safetensors');
    expectNoStack(bad);
    expect(existsSync(out)).toBe(false);

    const checkpoint = path.join(ROOT, 'tests/fixtures/pytorch/small.safetensors');
    const wrongWidth = await quadra(['predict', '--checkpoint', checkpoint, '--input', input, '--output', out]);
    expect(wrongWidth.code).toBe(1);
    expect(wrongWidth.stderr).toContain("in.csv: rows have 2 values, but the checkpoint's field size is 6");
    expectNoStack(wrongWidth);

    const missing = await quadra(['predict', '--checkpoint', path.join(tmp, 'nope.safetensors'), '--input', input, '--output', out, '--json']);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout).error.code).toBe('IO_ERROR');
  });

  it('demo --json runs the reference benchmark', async () => {
    const run = await quadra(['demo', '--json', '--iterations', '3', '--backend', 'wasm']);
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(result).toMatchObject({ backend: 'wasm', iterations: 3 });
    expect(result.samplesPerSec).toBeGreaterThan(0);
    expect(result.memory.tensors).toBeGreaterThan(0);
    expect(result.backendReport.at(-1)).toMatchObject({ id: 'wasm', available: true });
  });
});
