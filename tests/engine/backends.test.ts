import { describe, expect, it } from 'vitest';
import { QuadraError } from '../../src-shared/errors';
import { assertPrecisionSupported, explainNativeFailure, probeBackends, selectBackend } from '../../src-main/engine/backends';

const NO_GPU = { gpus: [], nvidiaSmi: { available: false as const, reason: 'nvidia-smi not found on PATH (no NVIDIA driver installed?)' } };
const TWO_GPUS = {
  gpus: [0, 1].map((index) => ({
    index,
    name: 'NVIDIA GeForce RTX 3090',
    uuid: null,
    memoryTotalMiB: 24576,
    memoryUsedMiB: 0,
    driverVersion: '535.129.03',
    cudaVersion: '12.2',
  })),
  nvidiaSmi: { available: true as const, path: '/usr/bin/nvidia-smi' },
};

describe('backend chain', () => {
  it('auto picks the first backend that starts and says why each earlier one was skipped', async () => {
    const selection = await selectBackend('auto', NO_GPU);
    expect(process.env.TF_FORCE_GPU_ALLOW_GROWTH).toBe('true');
    const ids = selection.report.map((r) => r.id);
    expect(ids.at(-1)).toBe(selection.id);
    // Everything before the chosen one is unavailable, with a reason.
    for (const line of selection.report.slice(0, -1)) {
      expect(line.available).toBe(false);
      expect(line.reason.length).toBeGreaterThan(10);
    }
    expect(selection.report[0]).toMatchObject({ id: 'tensorflow-gpu', available: false });
    expect(selection.report[0]!.reason).toContain('no NVIDIA GPU found (nvidia-smi not found on PATH');
    // On a machine without libtensorflow the wasm backend wins; never the 20× slower cpu one.
    expect(selection.id).not.toBe('cpu');
    expect(selection.capabilities.precisions).toEqual(['fp32']);
  });

  it('with GPUs but no tfjs-node-gpu installed, says it is not installed (rather than "no GPU")', async () => {
    const statuses = await probeBackends(TWO_GPUS);
    const gpu = statuses.find((s) => s.id === 'tensorflow-gpu')!;
    expect(gpu.reason).not.toContain('no NVIDIA GPU');
    if (!gpu.available) expect(gpu.reason).toMatch(/not installed|missing|failed|already loaded/);
    expect(statuses.find((s) => s.id === 'cpu')!.available).toBe(true);
  });

  it('a named backend that cannot start is an error naming it and the reason', async () => {
    const err = await selectBackend('tensorflow-gpu', NO_GPU).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QuadraError);
    expect((err as QuadraError).code).toBe('BACKEND_UNAVAILABLE');
    expect((err as QuadraError).message).toContain("backend 'tensorflow-gpu' is not available: tensorflow-gpu: no NVIDIA GPU found");
  });

  it('turns native load errors into what to do', () => {
    expect(explainNativeFailure('gpu', new Error('libcudart.so.11.0: cannot open shared object file: No such file or directory'))).toBe(
      'NVIDIA GPU found but libcudart.so.11.0 missing — tfjs-node-gpu needs CUDA 11.2 and cuDNN 8.1',
    );
    expect(explainNativeFailure('gpu', new Error('libcudnn.so.8: cannot open shared object file'))).toContain('libcudnn.so.8 missing');
    expect(explainNativeFailure('cpu', new Error("Cannot find module '/x/lib/napi-v8/tfjs_binding.node'"))).toContain('native binding is missing');
    expect(explainNativeFailure('cpu', new Error('libtensorflow.so.2: cannot open shared object file'))).toContain('libtensorflow could not be loaded');
    expect(explainNativeFailure('cpu', new Error('something else\nwith details'))).toBe('failed to load: something else');
  });

  it('refuses fp16 and mixed precision with the reason, on every backend', () => {
    for (const backend of ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const) {
      expect(() => assertPrecisionSupported('fp32', backend)).not.toThrow();
      for (const precision of ['fp16', 'mixed'] as const) {
        try {
          assertPrecisionSupported(precision, backend);
          expect.unreachable();
        } catch (error) {
          expect((error as QuadraError).code).toBe('UNSUPPORTED');
          expect((error as QuadraError).message).toContain('float32 only');
          expect((error as QuadraError).message).toContain(backend);
        }
      }
    }
  });
});
