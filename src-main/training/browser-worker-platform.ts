/// <reference types="@webgpu/types" />
import { QuadraError } from '../../src-shared/errors';
import type { BackendSelection } from '../engine/backends';
import { EngineCore, type HostMemory } from '../engine/engine-core';
import { initialParameters } from '../engine/init';
import type { ModelKernel } from '../engine/kernel';
import { buildLayout } from '../engine/layout';
import { assertPrecisionSupported, PRECISION_NOTE } from '../engine/precision';
import { createWebGpuKernel } from '../engine/webgpu/webgpu-kernel';
import { adapterName, isSoftwareAdapter, requestLargestDevice } from '../engine/webgpu-device';
import type { WorkerEngineOptions, WorkerPlatform } from './worker-runtime';

/**
 * The worker's platform in a page (browser-worker.ts): the webgpu kernel on the page's
 * navigator.gpu, every other backend refused by name; no file system, so no file exchange. No Node
 * import here or below.
 */

/** The page's globals this file uses, typed here (the project compiles without lib.dom). */
interface PageGlobals {
  navigator?: { gpu?: GPU };
  performance: { memory?: { usedJSHeapSize: number } };
}

const page = globalThis as unknown as PageGlobals;

/** One device for the page's life: an engine per 'init', all on the same adapter. */
let device: Promise<{ device: GPUDevice; adapter: GPUAdapter }> | null = null;

async function pageDevice(): Promise<{ device: GPUDevice; adapter: GPUAdapter }> {
  const gpu = page.navigator?.gpu;
  if (!gpu) throw new QuadraError('BACKEND_UNAVAILABLE', "webgpu: this page has no navigator.gpu (WebGPU is off in this Chromium; on Linux it needs --enable-unsafe-webgpu)");
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new QuadraError('BACKEND_UNAVAILABLE', 'webgpu: Chromium found no WebGPU adapter');
  const opened = await requestLargestDevice(adapter);
  // A lost device is not reused: the next 'init' asks for a new one.
  void opened.lost.then(() => (device = null));
  return { device: opened, adapter };
}

/**
 * The webgpu engine on this page's device; any other backend is refused by name. The config comes
 * parsed from the coordinator (not parsed again: zod would be most of this page's bundle).
 */
async function createEngine({ config, backend: requested, rank }: WorkerEngineOptions): Promise<EngineCore<ModelKernel>> {
  if (requested !== 'webgpu') {
    throw new QuadraError('BACKEND_UNAVAILABLE', `backend '${requested}' does not run in a page: the browser worker serves only 'webgpu' (Chromium's WebGPU); the others train in Node workers`, {
      backend: requested,
    });
  }
  assertPrecisionSupported(config.precision, 'webgpu');
  device ??= pageDevice();
  const opened = await device.catch((error: unknown) => {
    device = null;
    throw error;
  });
  const layout = buildLayout(config.model);
  const kernel = await createWebGpuKernel(opened.device, config.model, layout, initialParameters(layout, config.seed), {
    capacity: config.batchSize,
    precision: config.precision === 'mixed' ? 'mixed' : 'fp32',
  });
  const name = adapterName(opened.adapter.info);
  const software = isSoftwareAdapter(opened.adapter.info) ? ' (a software adapter: correct, but slow)' : '';
  const selection: BackendSelection = {
    id: 'webgpu',
    tfjsName: 'none',
    capabilities: { precisions: ['fp32'], precisionNote: PRECISION_NOTE, simd: false, threads: 1 },
    report: [{ id: 'webgpu', available: true, reason: `selected: ${name}, fused WGSL kernels through Chromium's WebGPU${software}` }],
  };
  return new EngineCore({ config, backend: selection, kernel, rank, hostMemory: pageMemory });
}

/** Chromium's (non-standard) JS heap size; a page cannot see its process's resident memory. */
function pageMemory(): HostMemory {
  return { rssBytes: 0, heapUsedBytes: page.performance.memory?.usedJSHeapSize ?? 0 };
}

export const BROWSER_WORKER_PLATFORM: WorkerPlatform = {
  createEngine,
  openFileExchange: () => {
    throw new QuadraError('UNSUPPORTED', "a browser worker cannot join the file gradient exchange (a page has no file system); train webgpu in the app with one worker, or use 'quadra train' (dawn.node workers) for several", {
      exchange: 'file',
    });
  },
  // A page's main thread must not block: the shared-memory barrier waits with Atomics.waitAsync.
  mayBlock: false,
};
