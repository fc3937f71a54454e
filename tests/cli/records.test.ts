import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeCheckpoint } from '../../src-main/engine/checkpoint';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'src-main/cli/quadra.mjs');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-records-'));
const DB = path.join(tmp, 'records.sqlite');
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function quadra(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [BIN, ...args, '--db', DB], { cwd: ROOT, timeout: 240_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    ),
  );
}

const json = async (args: string[]) => {
  const run = await quadra([...args, '--json']);
  expect(run.code, run.stderr).toBe(0);
  return JSON.parse(run.stdout);
};

describe('quadra datasets / runs / checkpoints / resume', () => {
  it('imports the sample datasets, trains on one by name, and lists, shows, exports and re-imports its checkpoints', async () => {
    const numeric = await json(['datasets', 'import', 'resources/datasets/sample-numeric.csv', '--name', 'numeric']);
    expect(numeric).toMatchObject({ name: 'numeric', kind: 'csv', rows: 1000, width: 100 });
    const text = await json(['datasets', 'import', 'resources/datasets/sample-text.txt']);
    expect(text).toMatchObject({ kind: 'text', width: 100, rows: 530 });
    const listed = await json(['datasets', 'list']);
    expect(listed.map((d: { name: string }) => d.name).sort()).toEqual(['numeric', 'sample-text.txt']);
    const duplicate = await quadra(['datasets', 'import', 'resources/datasets/sample-text.txt', '--name', 'numeric']);
    expect(duplicate.code).toBe(2);
    expect(duplicate.stderr).toContain('a dataset named "numeric" already exists');

    const trained = await json(['train', '--epochs', '2', '--dataset', 'numeric', '--mode', 'multi-cpu', '--workers', '2', '--batch-size', '64', '--backend', 'wasm', '--checkpoint-every', '1', '--spiking-steps', '4', '--hidden-size', '32']);
    expect(trained).toMatchObject({ status: 'completed', mode: 'multi-cpu', workers: 2 });
    const runs = await json(['runs', 'list']);
    expect(runs[0]).toMatchObject({ id: trained.runId, status: 'completed', datasetId: numeric.id });
    const shown = await json(['runs', 'show', String(trained.runId)]);
    expect(shown.checkpoints.length).toBe(2);
    expect(shown.metrics.length).toBeGreaterThan(0);
    const text2 = await quadra(['runs', 'show', String(trained.runId)]);
    expect(text2.stdout).toContain('← best');

    const checkpoints = await json(['checkpoints', 'list', String(trained.runId)]);
    const best = checkpoints.find((c: { isBest: boolean }) => c.isBest);
    const out = path.join(tmp, 'best.safetensors');
    const half = path.join(tmp, 'best-f16.safetensors');
    await json(['checkpoints', 'export', String(best.id), '--out', out]);
    await json(['checkpoints', 'export', String(best.id), '--out', half, '--fp16']);
    const full = decodeCheckpoint(new Uint8Array(readFileSync(out)), out);
    const reduced = decodeCheckpoint(new Uint8Array(readFileSync(half)), half);
    expect(full.optimizer).not.toBeNull();
    expect(reduced.optimizer).toBeNull();
    expect(readFileSync(half).length).toBeLessThan(readFileSync(out).length / 2);

    // The other formats, by extension or --format; torchrun writes a folder; a .pth comes back in.
    const formats = await Promise.all([
      json(['checkpoints', 'export', String(best.id), '--out', path.join(tmp, 'best.onnx')]),
      json(['checkpoints', 'export', String(best.id), '--out', path.join(tmp, 'best.pth')]),
      json(['checkpoints', 'export', String(best.id), '--out', path.join(tmp, 'package'), '--format', 'torchrun']),
    ]);
    expect(formats.map((f: { format: string }) => f.format)).toEqual(['onnx', 'pth', 'torchrun']);
    expect(formats[2].files).toEqual(expect.arrayContaining(['model.py', 'train.py', 'start.safetensors', 'data.npy']));
    expect(readFileSync(path.join(tmp, 'package', 'start.safetensors'))).toEqual(readFileSync(out));
    const fromPth = await json(['checkpoints', 'import', path.join(tmp, 'best.pth')]);
    expect(fromPth).toMatchObject({ origin: 'pth', model: { fieldSize: full.model.fieldSize, hiddenSize: full.model.hiddenSize } });
    const refused = await quadra(['checkpoints', 'export', String(best.id), '--out', path.join(tmp, 'best.txt')]);
    expect(refused.code, 'a bad --out is a bad argument').toBe(2);
    expect(refused.stderr).toContain("cannot tell the format from '.txt'");

    const imported = await json(['checkpoints', 'import', out, '--name', 'round trip']);
    expect(imported.origin).toBe('quadra');
    const fromTorch = await json(['checkpoints', 'import', 'tests/fixtures/pytorch/small.safetensors']);
    expect(fromTorch).toMatchObject({ origin: 'pytorch', model: { fieldSize: 6, hiddenSize: 8 } });
    const importedRun = await json(['runs', 'show', String(imported.runId)]);
    expect(importedRun.name).toBe('round trip');
    expect(importedRun.checkpoints).toHaveLength(1);

    const resumed = await json(['resume', String(trained.runId), '--from', String(checkpoints[0].id)]);
    expect(resumed).toMatchObject({ runId: trained.runId, status: 'completed', steps: trained.steps });
  }, 240_000);

  it('names the file, row and column of bad data, and imports nothing', async () => {
    const bad = path.join(tmp, 'bad.csv');
    writeFileSync(bad, 'a,b,c\n1,2,3\n4,x,6\n');
    const run = await quadra(['datasets', 'import', bad]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('bad.csv: line 3, column 2: "x" is not a number');
    const ragged = path.join(tmp, 'ragged.csv');
    writeFileSync(ragged, '1,2,3\n4,5\n');
    expect((await quadra(['datasets', 'import', ragged])).stderr).toContain('line 2 has 2 columns, expected 3');
    const listed = await json(['datasets', 'list']);
    expect(listed.some((d: { name: string }) => d.name === 'bad.csv' || d.name === 'ragged.csv')).toBe(false);
    const wrongWidth = await quadra(['train', '--epochs', '1', '--dataset', 'resources/datasets/sample-numeric.csv', '--field-size', '50']);
    expect(wrongWidth.code).toBe(1);
    expect(wrongWidth.stderr).toMatch(/rows have 100 values but the model's field size is 50/);
    const unknownRun = await quadra(['runs', 'show', '999']);
    expect(unknownRun.code).toBe(1);
    expect(unknownRun.stderr).toContain('999');
  }, 120_000);
});
