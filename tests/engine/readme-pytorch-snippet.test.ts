import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeCheckpoint } from '../../src-main/engine/checkpoint';
import { buildLayout } from '../../src-main/engine/layout';
import { Rng } from '../../src-main/engine/random';
import { parseSafetensors, serializeSafetensors } from '../../src-main/engine/safetensors';
import { parseEngineConfig } from '../../src-shared/engine-config';
import { firstBitDifference, FIXTURES } from '../helpers/engine';

/**
 * Runs README.md's PyTorch snippet, exactly as written there, on a checkpoint of ours: every
 * weight must land in the original project's modules, and a missing or extra tensor must fail.
 */
const PYTHON = '/usr/bin/python3'; // Debian's, with python3-torch; the `python3` on PATH may lack torch
const HAS_TORCH = spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
const SKIP_REASON = HAS_TORCH ? '' : ` — skipped: ${PYTHON} cannot import torch (apt-get install python3-torch python3-numpy)`;
const MODEL = { fieldSize: 8, hiddenSize: 12, spikingHiddenSize: 8 };

/** The code between the README's pytorch-snippet markers, inside its ```python fence. */
function readmeSnippet(): string {
  const readme = readFileSync(path.resolve(__dirname, '../../README.md'), 'utf8');
  const blocks = [...readme.matchAll(/<!-- pytorch-snippet[^>]*-->\n```python\n([\s\S]*?)```\n<!-- \/pytorch-snippet -->/g)];
  expect(blocks, 'README.md has exactly one marked PyTorch snippet').toHaveLength(1);
  return blocks[0]![1]!;
}

/**
 * Builds `engine` from the fixtures' copy of the original modules, then runs the snippet in the
 * checkpoint's folder and prints every parameter it loaded. Debian 12 has no python3-safetensors,
 * so when the package is missing, `safetensors.torch.load_file` is a small reader of our own.
 */
const HARNESS = String.raw`
import json, sys, types
sys.dont_write_bytecode = True
fixtures, snippet_file, F, H, S = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
sys.path.insert(0, fixtures)
import numpy as np
import torch
try:
    import safetensors.torch  # noqa: F401
except ImportError:
    import struct

    def load_file(path):
        data = open(path, "rb").read()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
        header.pop("__metadata__", None)
        out = {}
        for name, e in header.items():
            begin, end = e["data_offsets"]
            raw = data[8 + n + begin:8 + n + end]
            if e["dtype"] == "F32":
                arr = np.frombuffer(raw, dtype="<f4")
            elif e["dtype"] == "F16":
                arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
            else:
                raise ValueError(e["dtype"])
            out[name] = torch.from_numpy(arr.copy()).reshape(e["shape"])
        return out

    package, module = types.ModuleType("safetensors"), types.ModuleType("safetensors.torch")
    module.load_file = load_file
    package.torch = module
    sys.modules["safetensors"], sys.modules["safetensors.torch"] = package, module

import original_model as om
from quadra_matrix_gpu import GPUConfig

engine = types.SimpleNamespace(
    field_network=om.GPUOptimizedField(F, H, config=GPUConfig(use_cuda=False)),
    spike_network=om.GPUSpikingNetwork(F, S, config=GPUConfig(use_cuda=False)),
)
exec(compile(open(snippet_file).read(), "README.md snippet", "exec"), {"engine": engine, "__name__": "__main__"})
loaded = {}
for network in ("field_network", "spike_network"):
    for key, value in getattr(engine, network).state_dict().items():
        loaded[network + "." + key] = value.detach().flatten().tolist()
print(json.dumps(loaded))
`;

const scratch = mkdtempSync(path.join(os.tmpdir(), 'quadra-readme-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function runSnippet(checkpoint: Uint8Array, folder: string): ReturnType<typeof spawnSync> & { stdout: string; stderr: string } {
  // The snippet reads run.safetensors from its working folder.
  const cwd = mkdtempSync(path.join(scratch, `${folder}-`));
  writeFileSync(path.join(cwd, 'run.safetensors'), checkpoint);
  writeFileSync(path.join(cwd, 'snippet.py'), readmeSnippet());
  writeFileSync(path.join(cwd, 'harness.py'), HARNESS);
  const args = ['harness.py', path.join(FIXTURES, 'pth'), 'snippet.py', String(MODEL.fieldSize), String(MODEL.hiddenSize), String(MODEL.spikingHiddenSize)];
  return spawnSync(PYTHON, args, { cwd, encoding: 'utf8', env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' }, timeout: 120_000 });
}

function checkpoint(): { bytes: Uint8Array; parameters: Float32Array } {
  const config = parseEngineConfig({ model: MODEL });
  const layout = buildLayout(config.model);
  const rng = new Rng(77);
  const parameters = rng.fillNormal(new Float32Array(layout.total), 0.3);
  const bytes = encodeCheckpoint({
    config,
    parameters,
    // Moments and the field state are in the file too: the snippet must leave them out.
    optimizer: { m: rng.fillNormal(new Float32Array(layout.total), 0.1), v: new Float32Array(layout.total).fill(0.01), fieldStep: 5, spikeStep: 5 },
    fieldState: rng.fillNormal(new Float32Array(MODEL.fieldSize), 0.1),
    step: 5,
  });
  return { bytes, parameters };
}

describe('the README PyTorch snippet', () => {
  it('extracts one marked snippet that loads each network strictly', () => {
    const snippet = readmeSnippet();
    expect(snippet).toContain('strict=True');
    expect(snippet).not.toContain('strict=False');
  });

  it.skipIf(!HAS_TORCH)(`loads every weight of our checkpoint into the original modules${SKIP_REASON}`, () => {
    const { bytes, parameters } = checkpoint();
    const run = runSnippet(bytes, 'ok');
    expect(run.status, run.stderr).toBe(0);
    const loaded = JSON.parse(run.stdout) as Record<string, number[]>;
    const layout = buildLayout(parseEngineConfig({ model: MODEL }).model);
    expect(Object.keys(loaded).sort()).toEqual(layout.entries.map((e) => e.name).sort());
    for (const e of layout.entries) {
      expect(firstBitDifference(Float32Array.from(loaded[e.name]!), parameters.subarray(e.offset, e.offset + e.size)), e.name).toBe(-1);
    }
  });

  it.skipIf(!HAS_TORCH)(`fails on a missing or an unexpected tensor instead of skipping it${SKIP_REASON}`, () => {
    const file = parseSafetensors(checkpoint().bytes, 'run.safetensors');
    const tensors = [...file.tensors].map(([name, t]) => ({ name, shape: t.shape, data: t.data }));
    const missing = serializeSafetensors(
      tensors.filter((t) => t.name !== 'spike_network.decay'),
      file.metadata,
    );
    const runMissing = runSnippet(missing, 'missing');
    expect(runMissing.status).not.toBe(0);
    expect(runMissing.stderr).toMatch(/Missing key\(s\) in state_dict: "decay"/);
    const extra = serializeSafetensors([...tensors, { name: 'field_network.encoder.2.weight', shape: [3], data: new Float32Array(3) }], file.metadata);
    const runExtra = runSnippet(extra, 'extra');
    expect(runExtra.status).not.toBe(0);
    expect(runExtra.stderr).toMatch(/Unexpected key\(s\) in state_dict: "encoder\.2\.weight"/);
  });
});
