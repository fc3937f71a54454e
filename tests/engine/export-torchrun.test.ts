import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeCheckpoint } from '../../src-main/engine/checkpoint';
import type { OscillatorEngine } from '../../src-main/engine/engine';
import { exportTorchrun, npyFloat32 } from '../../src-main/engine/export/torchrun';
import { Rng } from '../../src-main/engine/random';
import { parseEngineConfig } from '../../src-shared/engine-config';
import { createEngine, firstBitDifference, maxAbsDiff } from '../helpers/engine';

/**
 * The torchrun package: written to a folder, run by Debian's torch on two gloo processes, its
 * result read back by us; and its first losses against ours from the same checkpoint.
 */
const PYTHON = '/usr/bin/python3'; // Debian's, with python3-torch; the `python3` on PATH may lack torch
const HAS_TORCH = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0;
const SKIP_REASON = HAS_TORCH ? '' : ` — skipped: ${PYTHON} cannot import torch (apt-get install python3-torch python3-numpy)`;
const F = 8;
const BATCH = 8;
const ROWS = 64;
const config = parseEngineConfig({
  model: { fieldSize: F, hiddenSize: 12, spikingHiddenSize: 8, spikingSteps: 10, dropout: 0 },
  batchSize: BATCH,
  seed: 9,
});
const rows = new Rng(31).fillNormal(new Float32Array(ROWS * F), 2);

const engines: OscillatorEngine[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const e of engines) e.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function readF32(file: string): Float32Array {
  return new Float32Array(Uint8Array.from(readFileSync(file)).buffer);
}

/** A trained engine's checkpoint, exported as a torchrun package into a fresh folder. */
async function writePackage(): Promise<{ dir: string; start: Uint8Array }> {
  const engine = await createEngine(config, 'simd');
  engines.push(engine);
  for (let i = 0; i < 2; i++) engine.trainStep(rows.subarray(i * BATCH * F, (i + 1) * BATCH * F), BATCH);
  const start = engine.toCheckpoint();
  const files = exportTorchrun({
    contents: decodeCheckpoint(start, 'start.safetensors'),
    engine: config,
    checkpointBytes: start,
    fp16: false,
    run: { epochs: 1, validationFraction: 0.1, lastBatch: 'drop', checkpointEveryEpochs: 1, data: { rows: ROWS, width: F, values: rows } },
  });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'quadra-torchrun-'));
  dirs.push(dir);
  for (const file of files) {
    mkdirSync(path.dirname(path.join(dir, file.path)), { recursive: true });
    writeFileSync(path.join(dir, file.path), file.bytes);
  }
  return { dir, start };
}

/**
 * `python -m torch.distributed.run ARGS`. torch 1.13's launcher breaks on Python 3.11 (Debian 12's
 * pair): its Std.from_str finds no flag for "0", as 3.11 no longer iterates zero-valued flags. The
 * shim fills that in, then runs the launcher unchanged.
 */
const LAUNCH = String.raw`
import runpy, sys
from torch.distributed.elastic.multiprocessing import api
original = api.Std.from_str.__func__
api.Std.from_str = classmethod(lambda cls, vm: original(cls, vm) if original(cls, vm) is not None else cls(int(vm)))
sys.argv = ["torchrun", *sys.argv[1:]]
runpy.run_module("torch.distributed.run", run_name="__main__")
`;

function torchrun(args: string[], cwd: string) {
  return python(['-c', LAUNCH, ...args], cwd);
}

function python(args: string[], cwd: string) {
  const run = spawnSync(PYTHON, args, { cwd, encoding: 'utf8', timeout: 45_000, env: { ...process.env, OMP_NUM_THREADS: '1' } });
  expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
  return run.stdout;
}

describe('the torchrun export', () => {
  it('writes the package: templates, config, the stored checkpoint as it is, the rows as .npy', async () => {
    const { dir, start } = await writePackage();
    for (const name of ['model.py', 'train.py', 'README.md', 'config.json', 'start.safetensors', 'data.npy']) {
      expect(readFileSync(path.join(dir, name)).length, name).toBeGreaterThan(0);
    }
    expect(Buffer.compare(readFileSync(path.join(dir, 'start.safetensors')), start)).toBe(0);
    const written = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as { engine: unknown; run: { data: unknown; epochs: number } };
    expect(written.engine).toEqual(config);
    expect(written.run).toMatchObject({ epochs: 1, data: 'data.npy' });
    const npy = npyFloat32(rows, ROWS, F);
    const headerLength = npy[8]! | (npy[9]! << 8);
    expect((10 + headerLength) % 64).toBe(0);
    expect(firstBitDifference(new Float32Array(npy.slice(10 + headerLength).buffer), rows)).toBe(-1);
  });

  it(`trains on 2 gloo ranks that stay identical; the result imports with its optimizer state and predicts what PyTorch does${SKIP_REASON}`, { skip: !HAS_TORCH, timeout: 90_000 }, async () => {
    const { dir, start } = await writePackage();
    torchrun(['--standalone', '--nproc_per_node', '2', 'train.py', '--epochs', '1', '--out', 'out.safetensors', '--checksum-dir', 'checksums'], dir);
    const checksums = ['0', '1'].map((rank) => readFileSync(path.join(dir, 'checksums', `rank-${rank}.txt`), 'utf8').trim().split(' '));
    expect(checksums.every(([, identical]) => identical === 'True')).toBe(true);
    expect(checksums[0]![0]).toBe(checksums[1]![0]);

    const before = decodeCheckpoint(start, 'start.safetensors');
    const after = decodeCheckpoint(new Uint8Array(readFileSync(path.join(dir, 'out.safetensors'))), 'out.safetensors');
    expect(after.origin).toBe('quadra');
    expect(after.engineConfig).toEqual(config);
    // 58 training rows (6 held out) over 2 ranks of 4 rows a step, short batches dropped: 7 steps.
    expect(after.step).toBe(before.step! + 7);
    expect(after.optimizer).not.toBeNull();
    expect(after.optimizer!.fieldStep).toBe(before.optimizer!.fieldStep + 7);
    expect(after.optimizer!.spikeStep).toBe(before.optimizer!.spikeStep + 7);
    expect(maxAbsDiff(after.parameters, before.parameters)).toBeGreaterThan(0);
    expect(firstBitDifference(after.fieldState!, before.fieldState!)).toBe(-1);

    const input = rows.subarray(0, 5 * F);
    writeFileSync(path.join(dir, 'input.f32'), input);
    python(
      [
        '-c',
        String.raw`
import json, sys
sys.path.insert(0, ".")
import numpy as np, torch
import train
from model import QuadraMatrix
config = json.load(open("config.json"))["engine"]
model = QuadraMatrix(config["model"])
tensors, _ = train.read_safetensors("out.safetensors")
model.load_state_dict({n: t for n, t in tensors.items() if n.split(".")[0] in ("field_network", "spike_network")})
model.eval()
with torch.no_grad():
    field, spikes = model(torch.from_numpy(np.fromfile("input.f32", dtype="<f4").reshape(-1, config["model"]["fieldSize"])))
field.numpy().astype("<f4").tofile("field.f32"); spikes.numpy().astype("<f4").tofile("spikes.f32")
`,
      ],
      dir,
    );
    const engine = await createEngine(config, 'simd');
    engines.push(engine);
    engine.loadCheckpoint(after);
    const ours = engine.processBatch(input, 5);
    expect(maxAbsDiff(ours.fieldOutput, readF32(path.join(dir, 'field.f32')))).toBeLessThanOrEqual(1e-4);
    const spikes = readF32(path.join(dir, 'spikes.f32'));
    let flipped = 0;
    for (let i = 0; i < spikes.length; i++) if (Math.abs(ours.spikeRates[i]! - spikes[i]!) > 1e-6) flipped++;
    expect(flipped).toBeLessThanOrEqual(1);
  });

  it(`its first losses match ours from the same checkpoint on the same batches within 1e-4${SKIP_REASON}`, { skip: !HAS_TORCH, timeout: 90_000 }, async () => {
    const { dir, start } = await writePackage();
    const steps = 4;
    const out = torchrun(
      ['--standalone', '--nproc_per_node', '1', 'train.py', '--no-shuffle', '--validation-fraction', '0', '--print-losses', '--max-steps', String(steps), '--out', 'b.safetensors'],
      dir,
    );
    const theirs = [...out.matchAll(/rank 0 step \d+ loss (\S+)/g)].map((m) => Number(m[1]));
    expect(theirs).toHaveLength(steps);
    const engine = await createEngine(config, 'simd');
    engines.push(engine);
    engine.loadCheckpoint(decodeCheckpoint(start, 'start.safetensors'));
    for (let i = 0; i < steps; i++) {
      const ours = engine.trainStep(rows.subarray(i * BATCH * F, (i + 1) * BATCH * F), BATCH);
      expect(Math.abs(ours.loss - theirs[i]!), `step ${i + 1}: ours ${ours.loss}, PyTorch ${theirs[i]}`).toBeLessThanOrEqual(1e-4);
    }
  });
});
