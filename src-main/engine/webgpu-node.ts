/// <reference types="@webgpu/types" />
import { create, globals } from 'webgpu';

/**
 * dawn.node's GPU entry point. Kept in a module variable for the life of the process: when it is
 * collected while a device lives, dawn.node aborts the process.
 */
let gpu: GPU | null = null;

/**
 * The adapter Dawn offers this process (Node only; in Chromium the page's navigator.gpu serves),
 * or null when there is none. Which Vulkan driver Dawn uses follows VK_ICD_FILENAMES (tests point
 * it at SwiftShader, the software driver Debian's chromium ships).
 */
export async function nodeGpuAdapter(options: { powerPreference?: GPUPowerPreference } = {}): Promise<GPUAdapter | null> {
  if (!gpu) {
    // GPUBufferUsage and friends as globals, as in a browser, for code that uses them.
    Object.assign(globalThis, globals);
    gpu = create([]);
  }
  return gpu.requestAdapter(options);
}

/** A device on that adapter with its largest buffer limits, so big batches fit; null without an adapter. */
export async function nodeGpuDevice(options: { powerPreference?: GPUPowerPreference } = {}): Promise<GPUDevice | null> {
  const adapter = await nodeGpuAdapter(options);
  if (!adapter) return null;
  const { maxStorageBufferBindingSize, maxBufferSize } = adapter.limits;
  return adapter.requestDevice({ label: 'quadra', requiredLimits: { maxStorageBufferBindingSize, maxBufferSize } });
}

/** A software rasteriser (SwiftShader, llvmpipe, lavapipe, WARP) rather than a GPU. */
export function isSoftwareAdapter(info: GPUAdapterInfo): boolean {
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`;
  return (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter === true || /swiftshader|llvmpipe|lavapipe|software|microsoft basic render/i.test(text);
}

/** The adapter's name as a user knows it. */
export function adapterName(info: GPUAdapterInfo): string {
  return info.description || [info.vendor, info.device || info.architecture].filter(Boolean).join(' ') || 'unnamed adapter';
}
