import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { chooseBackend, explainNativeFailure, probeBackends, probeNativeInChild } from '../../src-main/engine/backends';

/**
 * The hardware report's backend probe (getHardware, `quadra hardware`) never loads libtensorflow
 * in the calling process (Electron's main process in the app): whether tfjs-node(-gpu) loads is
 * asked of a short-lived child process.
 */

const dir = mkdtempSync(path.join(os.tmpdir(), 'quadra-probe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A CommonJS module that marks this process as having loaded it, then does `body`. */
function nativeStandIn(name: string, body: string): string {
  const file = path.join(dir, `${name}.cjs`);
  writeFileSync(file, `globalThis.__quadraProbeLoaded = (globalThis.__quadraProbeLoaded ?? []).concat(${JSON.stringify(name)});\n${body}\n`);
  return file;
}

const loadedHere = () => (globalThis as { __quadraProbeLoaded?: string[] }).__quadraProbeLoaded ?? [];
const requireCache = () => Object.keys(createRequire(import.meta.url).cache);
/** Shared libraries this process has loaded: a native addon (tfjs_binding.node, libtensorflow) shows up here. */
const sharedObjects = () => (process.report.getReport() as unknown as { sharedObjects: string[] }).sharedObjects;

describe('probeNativeInChild', () => {
  it('loads a module in a child process, never in this one', async () => {
    const ok = nativeStandIn('loads', 'module.exports = {};');
    expect(await probeNativeInChild(ok)).toEqual({ ok: true });
    expect(loadedHere()).toEqual([]);
    expect(requireCache()).not.toContain(ok);
  });

  it('answers the load error, which explainNativeFailure turns into what to do', async () => {
    const missing = nativeStandIn('missing-cuda', "throw new Error('libcudart.so.11.0: cannot open shared object file: No such file or directory');");
    const probe = await probeNativeInChild(missing);
    expect(probe).toEqual({ ok: false, message: 'libcudart.so.11.0: cannot open shared object file: No such file or directory' });
    expect(explainNativeFailure('gpu', new Error((probe as { message: string }).message))).toBe('NVIDIA GPU found but libcudart.so.11.0 missing — tfjs-node-gpu needs CUDA 11.2 and cuDNN 8.1');
    expect(loadedHere()).toEqual([]);
  });

  it('a library that crashes on load takes only the child down', async () => {
    const crashes = nativeStandIn('crashes', "process.stderr.write('Illegal instruction in libtensorflow\\n'); process.kill(process.pid, 'SIGKILL');");
    const probe = await probeNativeInChild(crashes);
    expect(probe.ok).toBe(false);
    expect((probe as { message: string }).message).toBe('the process loading it ended with SIGKILL: Illegal instruction in libtensorflow');
  });

  it('gives up on a load that hangs', async () => {
    const hangs = nativeStandIn('hangs', 'Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);');
    const probe = await probeNativeInChild(hangs, 1500);
    expect(probe).toEqual({ ok: false, message: 'did not load within 1.5 s' });
  });
});

describe('probeBackends', () => {
  it('leaves no tfjs-node or libtensorflow in this process, whatever it reports', async () => {
    const statuses = await probeBackends({
      gpus: [{ index: 0, name: 'NVIDIA GeForce RTX 3090', uuid: null, memoryTotalMiB: 24576, memoryUsedMiB: 0, driverVersion: '535.129.03', cudaVersion: '12.2' }],
      nvidiaSmi: { available: true, path: '/usr/bin/nvidia-smi' },
    });
    expect(statuses.map((s) => s.id)).toEqual(['tensorflow-gpu', 'webgpu', 'simd', 'tensorflow', 'wasm', 'cpu']);
    expect(requireCache().filter((file) => /tfjs-node/.test(file))).toEqual([]);
    expect(sharedObjects().filter((file) => /tensorflow|tfjs_binding/.test(file))).toEqual([]);
  });
});

describe('chooseBackend (what a run started from the app or serve mode will use)', () => {
  const withGpu = {
    gpus: [{ index: 0, name: 'NVIDIA GeForce RTX 3090', uuid: null, memoryTotalMiB: 24576, memoryUsedMiB: 0, driverVersion: '535.129.03', cudaVersion: '12.2' }],
    nvidiaSmi: { available: true as const, path: '/usr/bin/nvidia-smi' },
  };

  it("picks selectBackend's choice without loading tfjs-node here: simd on this machine, and a named backend that cannot start is refused with why", async () => {
    // tfjs-node-gpu is not installed here, webgpu finds no GPU device node: auto falls to simd.
    expect(await chooseBackend('auto', withGpu, { fieldSize: 100, hiddenSize: 256, spikingHiddenSize: 128 })).toBe('simd');
    // A model simd cannot run (widths not multiples of 4) falls further, to tfjs wasm.
    expect(await chooseBackend('auto', withGpu, { fieldSize: 6, hiddenSize: 10, spikingHiddenSize: 5 })).toBe('wasm');
    await expect(chooseBackend('tensorflow-gpu', withGpu)).rejects.toThrow("backend 'tensorflow-gpu' is not available: tensorflow-gpu: not installed");
    expect(requireCache().filter((file) => /tfjs-node/.test(file))).toEqual([]);
    expect(sharedObjects().filter((file) => /tensorflow|tfjs_binding/.test(file))).toEqual([]);
  });
});
