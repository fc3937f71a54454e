/// <reference types="@webgpu/types" />
import { create, globals } from 'webgpu';
import { ADAPTER_ENV, parseAdapterList, type AdapterEntry } from './webgpu-adapters';
import { requestLargestDevice } from './webgpu-device';

export { adapterName, isSoftwareAdapter } from './webgpu-device';

/**
 * dawn.node's GPU entry point. Kept in a module variable for the life of the process: when it is
 * collected while a device lives, dawn.node aborts the process.
 */
let gpu: GPU | null = null;
/** Instances made only to list adapters: kept too, as dawn.node wants. */
const listers: GPU[] = [];


function dawn(flags: string[]): GPU {
  // GPUBufferUsage and friends as globals, as in a browser, for code that uses them.
  Object.assign(globalThis, globals);
  return create(flags);
}

/**
 * The adapter Dawn offers this process (Node only; in Chromium the page's navigator.gpu serves),
 * or null when there is none. Which Vulkan driver Dawn uses follows VK_ICD_FILENAMES (tests point
 * it at SwiftShader, the software driver Debian's chromium ships); which adapter, ADAPTER_ENV.
 */
export async function nodeGpuAdapter(options: { powerPreference?: GPUPowerPreference } = {}): Promise<GPUAdapter | null> {
  const wanted = process.env[ADAPTER_ENV];
  gpu ??= dawn(wanted ? [`adapter=${wanted}`] : []);
  try {
    return await gpu.requestAdapter(options);
  } catch (error) {
    if (!wanted) throw error;
    const available = parseAdapterList(error instanceof Error ? error.message : String(error));
    throw new Error(`${ADAPTER_ENV}='${wanted}' names no adapter; Dawn offers ${available.map((a) => `'${a.name}' (${a.backend})`).join(', ') || 'none'}`);
  }
}

/**
 * Every adapter Dawn can open, by backend and name: dawn.node's `adapter=NAME` flag is the one way
 * it lets a process pick among several, and asking for a name no adapter has makes it list them.
 */
export async function listNodeAdapters(): Promise<AdapterEntry[]> {
  const lister = dawn(['adapter=\u0001quadra: list the adapters']);
  listers.push(lister);
  try {
    await lister.requestAdapter();
    return [];
  } catch (error) {
    return parseAdapterList(error instanceof Error ? error.message : String(error));
  }
}

/** A device on that adapter with its largest buffer limits, so big batches fit; null without an adapter. */
export async function nodeGpuDevice(options: { powerPreference?: GPUPowerPreference } = {}): Promise<GPUDevice | null> {
  const adapter = await nodeGpuAdapter(options);
  return adapter ? requestLargestDevice(adapter) : null;
}
