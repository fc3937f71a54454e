import os from 'node:os';
import type { ApiRequest, WorkstationEvents } from '../../src-shared/api';
import { PYTORCH, suiteConfigurations } from '../../src-shared/benchmarks';
import { parseEngineConfig, type BackendId, type EngineConfig } from '../../src-shared/engine-config';
import type { HardwareInfo } from '../../src-shared/hardware';
import { versions } from '../engine/versions';
import type { Store } from '../store/database';
import type { TransportFactory } from '../training/transport';
import { runParallelBench } from './parallel-bench';
import { pytorchFingerprint, runPytorchBench, type PytorchProbe } from './pytorch-bench';

export interface SuiteOptions {
  store: Store;
  /** The suite's row, already created: results are stored under it. */
  suiteId: number;
  request: ApiRequest<'runBenchmarkSuite'>;
  hardware: HardwareInfo;
  transport?: TransportFactory;
  /** A Python with torch, asked for only when the suite has a pytorch configuration. */
  probePytorch: () => Promise<PytorchProbe>;
  onProgress: (progress: WorkstationEvents['onDidProgressBenchmark']) => void;
}

/**
 * Every configuration of a suite in turn, each result stored with the machine's fingerprint. A
 * configuration that fails is reported in its progress event and the suite goes on; the last
 * event is labelled 'done'.
 */
export async function runSuite(o: SuiteOptions): Promise<void> {
  const { request, hardware, suiteId } = o;
  const configurations = suiteConfigurations(request);
  const total = configurations.length;
  const fingerprint = fingerprintOf(hardware);
  for (const [index, c] of configurations.entries()) {
    // PyTorch is one process whatever the worker counts: said in its label, recorded as 1 worker.
    const label = c.backend === PYTORCH ? `pytorch (one process, fastest thread count), batch ${c.batchSize}` : `${c.backend} × ${c.workers}, batch ${c.batchSize}`;
    o.onProgress({ suiteId, done: index, total, label });
    const failed = (error: unknown) => o.onProgress({ suiteId, done: index + 1, total, label, error: (error as Error).message });
    const config = parseEngineConfig({ batchSize: c.batchSize, precision: request.precision ?? 'fp32', model: { spikeGradient: request.spikeGradient ?? 'surrogate' } });
    if (c.backend === PYTORCH) {
      await benchPytorch(o, config, fingerprint).catch(failed);
      continue;
    }
    const result = await runParallelBench({
      config,
      workers: c.workers,
      backend: c.backend,
      gpu: { gpus: hardware.gpus, nvidiaSmi: hardware.nvidiaSmi },
      warmup: request.warmup ?? 5,
      iterations: request.iterations ?? 20,
      repeats: request.repeats ?? 3,
      ...(o.transport ? { transport: o.transport } : {}),
    }).catch((error: unknown) => {
      failed(error);
      return null;
    });
    if (result) {
      o.store.benchmarks.addResult({
        suiteId,
        backend: c.backend as BackendId,
        workers: c.workers,
        batchSize: c.batchSize,
        spikeGradient: config.model.spikeGradient,
        trainSamplesPerSec: result.trainSamplesPerSec,
        forwardSamplesPerSec: result.forwardSamplesPerSec,
        fingerprint: { ...fingerprint, backend: c.backend, precision: config.precision },
      });
    }
  }
  o.onProgress({ suiteId, done: total, total, label: 'done' });
}

/** One PyTorch configuration of a suite: bench/pytorch-reference.py, its result stored with torch's details. */
async function benchPytorch(o: SuiteOptions, config: EngineConfig, fingerprint: Record<string, string>): Promise<void> {
  const result = await runPytorchBench({
    probe: await o.probePytorch(),
    batchSize: config.batchSize,
    spikeGradient: config.model.spikeGradient,
    fieldSize: config.model.fieldSize,
    precision: config.precision === 'mixed' ? 'mixed' : 'fp32',
    warmup: o.request.warmup ?? 5,
    iterations: o.request.iterations ?? 20,
    repeats: o.request.repeats ?? 3,
  });
  o.store.benchmarks.addResult({
    suiteId: o.suiteId,
    backend: PYTORCH,
    workers: 1,
    batchSize: config.batchSize,
    spikeGradient: result.spikeGradient,
    trainSamplesPerSec: result.trainSamplesPerSec,
    forwardSamplesPerSec: result.forwardSamplesPerSec,
    fingerprint: { ...fingerprint, backend: PYTORCH, precision: result.precision, ...pytorchFingerprint(result) },
  });
}

/** The machine and software a benchmark result was measured on, stored beside it. */
export function fingerprintOf(hardware: HardwareInfo): Record<string, string> {
  return {
    cpu: `${hardware.cpu.model} (${hardware.cpu.physicalCores} cores)`,
    gpus: hardware.gpus.map((g) => g.name).join(', ') || 'none',
    driver: hardware.gpus[0]?.driverVersion ?? 'none',
    cuda: hardware.gpus[0]?.cudaVersion ?? 'none',
    os: `${hardware.platform} ${hardware.arch} ${os.release()}`,
    ...versions(),
  };
}
