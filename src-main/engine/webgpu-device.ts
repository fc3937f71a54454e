/// <reference types="@webgpu/types" />

/**
 * What every host of the webgpu kernel does with its adapter, with no Node import: dawn.node
 * (webgpu-node.ts) and a Chromium page's navigator.gpu (the browser worker) alike.
 */

/**
 * A device on the adapter with its largest buffer limits, so big batches fit, and native f16
 * arithmetic ('shader-f16') where the adapter has it, for mixed precision.
 */
export function requestLargestDevice(adapter: GPUAdapter): Promise<GPUDevice> {
  const { maxStorageBufferBindingSize, maxBufferSize } = adapter.limits;
  const requiredFeatures: GPUFeatureName[] = adapter.features.has('shader-f16') ? ['shader-f16'] : [];
  return adapter.requestDevice({ label: 'quadra', requiredLimits: { maxStorageBufferBindingSize, maxBufferSize }, requiredFeatures });
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
