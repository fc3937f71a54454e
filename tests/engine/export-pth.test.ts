import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeCheckpoint, type CheckpointContents } from '../../src-main/engine/checkpoint';
import type { OscillatorEngine } from '../../src-main/engine/engine';
import { exportPth } from '../../src-main/engine/export/pth';
import { buildLayout, view } from '../../src-main/engine/layout';
import { Rng } from '../../src-main/engine/random';
import { parseEngineConfig, type EngineConfig, type EngineConfigInput } from '../../src-shared/engine-config';
import { createEngine, firstBitDifference, FIXTURES, maxAbsDiff } from '../helpers/engine';

/**
 * The .pth export: what the original project's save_checkpoint() writes. Read back by our own
 * reader bit for bit, and (with Debian's torch) by torch.load(weights_only=True), the original's
 * classes and torch.optim.AdamW.
 */
const PYTHON = '/usr/bin/python3'; // Debian's, with python3-torch; the `python3` on PATH may lack torch
const HAS_TORCH = spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
const SKIP_REASON = HAS_TORCH ? '' : ` — skipped: ${PYTHON} cannot import torch (apt-get install python3-torch python3-numpy)`;
const TORCHRUN = path.resolve(__dirname, '../../resources/torchrun');
const F = 8;
const ROWS = 6;

/** Dropout 0 so PyTorch can repeat a step; spike-loss weight 0 unless a test needs the spiking gradients. */
function configFor(spikeGradient: 'surrogate' | 'none', spikeLossWeight = 0): EngineConfig {
  const input: EngineConfigInput = {
    model: { fieldSize: F, hiddenSize: 12, spikingHiddenSize: 8, spikingSteps: 10, dropout: 0, spikeLossWeight, spikeGradient },
    batchSize: ROWS,
    seed: 5,
  };
  return parseEngineConfig(input);
}

/** Rows of 2·N(0, 1): a drive large enough for the small spiking network to fire. */
function batch(seed: number): Float32Array {
  return new Rng(seed).fillNormal(new Float32Array(ROWS * F), 2);
}

/**
 * torch.load(path, weights_only=True). torch 1.13's restricted unpickler lacks BINFLOAT (torch 2.0
 * added it), so on 1.13 no optimizer state_dict loads that way, torch's own included: there the file
 * is audited instead — every opcode one that 1.13's restricted unpickler runs, or BINFLOAT, every
 * global one it allows — and then loaded with the full unpickler.
 */
const WEIGHTS_ONLY_LOAD = String.raw`
def weights_only_load(path):
    if int(torch.__version__.split(".")[0]) >= 2:
        return torch.load(path, weights_only=True)
    import inspect, pickletools, re, zipfile
    import torch._weights_only_unpickler as wo
    handled = set(re.findall(r"key\[0\] == (\w+)\[0\]", inspect.getsource(wo.Unpickler.load)))
    handled |= {"BINGET", "LONG_BINGET", "BINPUT", "LONG_BINPUT", "BINFLOAT"}
    allowed = wo._get_allowed_globals()
    with zipfile.ZipFile(path) as z:
        (pkl,) = [n for n in z.namelist() if n.endswith("/data.pkl")]
        for op, arg, _ in pickletools.genops(z.read(pkl)):
            assert op.name in handled, f"opcode {op.name} is not one weights_only runs"
            if op.name == "GLOBAL":
                assert arg.replace(" ", ".") in allowed, f"global {arg} is not one weights_only allows"
    return torch.load(path)
`;

function readF32(file: string): Float32Array {
  return new Float32Array(Uint8Array.from(readFileSync(file)).buffer);
}

interface Trained {
  config: EngineConfig;
  engine: OscillatorEngine;
  contents: CheckpointContents;
  pth: Uint8Array;
}

const engines: OscillatorEngine[] = [];
let dir = '';
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'quadra-export-pth-'));
});
afterAll(() => {
  for (const e of engines) e.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function trained(spikeGradient: 'surrogate' | 'none', steps = 3, spikeLossWeight = 0): Promise<Trained> {
  const config = configFor(spikeGradient, spikeLossWeight);
  const engine = await createEngine(config, 'simd');
  engines.push(engine);
  for (let i = 0; i < steps; i++) engine.trainStep(batch(100 + i), ROWS);
  const checkpointBytes = engine.toCheckpoint();
  const contents = decodeCheckpoint(checkpointBytes, 'trained.safetensors');
  const pth = exportPth({ contents, engine: config, checkpointBytes, fp16: false });
  return { config, engine, contents, pth };
}

function expectSameOptimizerAndWeights(actual: CheckpointContents, expected: CheckpointContents): void {
  expect(firstBitDifference(actual.parameters, expected.parameters), 'parameters').toBe(-1);
  expect(actual.optimizer).not.toBeNull();
  expect(firstBitDifference(actual.optimizer!.m, expected.optimizer!.m), 'exp_avg').toBe(-1);
  expect(firstBitDifference(actual.optimizer!.v, expected.optimizer!.v), 'exp_avg_sq').toBe(-1);
  expect(actual.optimizer!.fieldStep).toBe(expected.optimizer!.fieldStep);
  expect(actual.optimizer!.spikeStep).toBe(expected.optimizer!.spikeStep);
}

/** The offset of each local entry's data, walking the local headers (all entries are stored). */
function entryDataOffsets(zip: Uint8Array): Map<string, number> {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const offsets = new Map<string, number>();
  let at = 0;
  while (view.getUint32(at, true) === 0x04034b50) {
    const size = view.getUint32(at + 18, true);
    const nameLength = view.getUint16(at + 26, true);
    const extraLength = view.getUint16(at + 28, true);
    const name = new TextDecoder().decode(zip.subarray(at + 30, at + 30 + nameLength));
    const data = at + 30 + nameLength + extraLength;
    offsets.set(name, data);
    at = data + size;
  }
  return offsets;
}

describe('the .pth export', () => {
  it('reads back through our own .pth reader bit for bit: weights, Adam moments and both steps (surrogate: the spiking optimizer too)', async () => {
    const { config, contents, pth } = await trained('surrogate', 3, 0.1);
    expect(contents.optimizer!.fieldStep).toBe(3);
    expect(contents.optimizer!.spikeStep).toBe(3);
    const back = decodeCheckpoint(pth, 'export.pth', { spikingSteps: config.model.spikingSteps });
    expect(back.origin).toBe('pth');
    expect(back.model).toMatchObject({ fieldSize: F, hiddenSize: 12, spikingHiddenSize: 8 });
    expectSameOptimizerAndWeights(back, contents);
    // The spiking network's moments are real (non-zero), not the original's empty state.
    const layout = buildLayout(config.model);
    const fc1 = layout.byName.get('spike_network.fc1.weight')!;
    expect(view(back.optimizer!.v, fc1).some((x) => x > 0)).toBe(true);
  });

  it("'none' mode: the spiking optimizer's state is empty, as the original's", async () => {
    const { contents, pth } = await trained('none');
    expect(contents.optimizer!.spikeStep).toBe(0);
    const back = decodeCheckpoint(pth, 'export.pth');
    expect(back.optimizer!.spikeStep).toBe(0);
    expect(back.optimizer!.fieldStep).toBe(3);
    expectSameOptimizerAndWeights(back, contents);
  });

  it('is a torch.save zip: stored entries, data 64-byte aligned, version 3, the same bytes every time', async () => {
    const { config, contents, pth } = await trained('surrogate', 1);
    const again = exportPth({ contents, engine: config, checkpointBytes: new Uint8Array(0), fp16: false });
    expect(Buffer.compare(again, pth)).toBe(0);
    const offsets = entryDataOffsets(pth);
    const files = unzipSync(pth);
    expect(Object.keys(files).sort()).toEqual([...offsets.keys()].sort());
    for (const [name, offset] of offsets) expect(offset % 64, name).toBe(0);
    expect(new TextDecoder().decode(files['archive/version'])).toBe('3\n');
    expect(files['archive/data.pkl']![0]).toBe(0x80); // PROTO
    expect(files['archive/data.pkl']![1]).toBe(2);
  });

  it(`loads with torch.load(weights_only=True) and into the original's engine, which predicts what ours does${SKIP_REASON}`, { skip: !HAS_TORCH, timeout: 60_000 }, async () => {
    const { config, engine, pth } = await trained('surrogate');
    const file = path.join(dir, 'engine.pth');
    writeFileSync(file, pth);
    const input = batch(7);
    writeFileSync(path.join(dir, 'input.f32'), input);
    const script = String.raw`
import sys
sys.dont_write_bytecode = True
fixtures, folder, F, H, S, T = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
sys.path.insert(0, fixtures)
import numpy as np
import torch
import original_model as om
from quadra_matrix_gpu import GPUConfig
torch.set_num_threads(1)
${WEIGHTS_ONLY_LOAD}
checkpoint = weights_only_load(folder + "/engine.pth")
assert sorted(checkpoint) == ["field_network", "optimizer_field", "optimizer_spike", "spike_network"], sorted(checkpoint)
engine = om.GPUOscillatorEngine(F, GPUConfig(use_cuda=False), hidden_size=H, spiking_hidden_size=S, num_steps=T)
engine.load_checkpoint(folder + "/engine.pth")
assert engine.optimizer_field.state_dict()["state"][0]["step"].item() == 3
engine.field_network.eval(); engine.spike_network.eval()
x = torch.from_numpy(np.fromfile(folder + "/input.f32", dtype="<f4").reshape(-1, F))
with torch.no_grad():
    engine.field_network(x).numpy().astype("<f4").tofile(folder + "/field.f32")
    engine.spike_network(x).numpy().astype("<f4").tofile(folder + "/spikes.f32")
print("ok")
`;
    const m = config.model;
    const run = spawnSync(PYTHON, ['-c', script, path.join(FIXTURES, 'pth'), dir, String(F), String(m.hiddenSize), String(m.spikingHiddenSize), String(m.spikingSteps)], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    });
    expect(run.status, run.stderr).toBe(0);
    const theirs = {
      field: readF32(path.join(dir, 'field.f32')),
      spikes: readF32(path.join(dir, 'spikes.f32')),
    };
    const ours = engine.processBatch(input, ROWS);
    expect(maxAbsDiff(ours.fieldOutput, theirs.field)).toBeLessThanOrEqual(1e-4);
    // Spikes are 0/1 decisions; a membrane within rounding of the threshold may flip one of T steps.
    let flipped = 0;
    for (let i = 0; i < theirs.spikes.length; i++) if (Math.abs(ours.spikeRates[i]! - theirs.spikes[i]!) > 1e-6) flipped++;
    expect(flipped).toBeLessThanOrEqual(1);
    expect(theirs.spikes.some((r) => r > 0)).toBe(true);
  });

  it(`continues in torch.optim.AdamW: one more step there matches one more of ours within 1e-5${SKIP_REASON}`, { skip: !HAS_TORCH, timeout: 60_000 }, async () => {
    const { config, engine, pth, contents } = await trained('surrogate');
    const file = path.join(dir, 'continue.pth');
    writeFileSync(file, pth);
    const next = batch(200);
    writeFileSync(path.join(dir, 'next.f32'), next);
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    const layout = buildLayout(config.model);
    const script = String.raw`
import json, sys
sys.dont_write_bytecode = True
resources, folder = sys.argv[1], sys.argv[2]
sys.path.insert(0, resources)
import numpy as np
import torch
from model import QuadraMatrix, make_optimizers
torch.set_num_threads(1)
${WEIGHTS_ONLY_LOAD}
config = json.load(open(folder + "/config.json"))
model = QuadraMatrix(config["model"])
field_opt, spike_opt = make_optimizers(model, config["optimizer"])
checkpoint = weights_only_load(folder + "/continue.pth")
model.field_network.load_state_dict(checkpoint["field_network"])
model.spike_network.load_state_dict(checkpoint["spike_network"])
field_opt.load_state_dict(checkpoint["optimizer_field"])
spike_opt.load_state_dict(checkpoint["optimizer_spike"])
x = torch.from_numpy(np.fromfile(folder + "/next.f32", dtype="<f4").reshape(-1, config["model"]["fieldSize"]))
model.train()
field_opt.zero_grad(set_to_none=True); spike_opt.zero_grad(set_to_none=True)
loss, _, _ = model.loss(x)
loss.backward()
field_opt.step(); spike_opt.step()
names = json.loads(sys.argv[3])
state = {**{"field_network." + k: v for k, v in model.field_network.state_dict().items()},
         **{"spike_network." + k: v for k, v in model.spike_network.state_dict().items()}}
np.concatenate([state[n].reshape(-1).numpy() for n in names]).astype("<f4").tofile(folder + "/after.f32")
steps = [field_opt.state_dict()["state"][0]["step"].item(), spike_opt.state_dict()["state"][0]["step"].item()]
print(json.dumps({"loss": loss.item(), "steps": steps}))
`;
    const run = spawnSync(PYTHON, ['-c', script, TORCHRUN, dir, JSON.stringify(layout.entries.map((e) => e.name))], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    });
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout.trim().split('\n').pop()!) as { loss: number; steps: number[] };
    const ours = engine.trainStep(next, ROWS);
    expect(Math.abs(ours.loss - result.loss)).toBeLessThanOrEqual(1e-5);
    expect(result.steps).toEqual([contents.optimizer!.fieldStep + 1, contents.optimizer!.spikeStep + 1]);
    const theirs = readF32(path.join(dir, 'after.f32'));
    const after = engine.getState().parameters;
    expect(maxAbsDiff(after, theirs)).toBeLessThanOrEqual(1e-5);
  });
});
