import { QuadraError } from '../../src-shared/errors';

/**
 * Which adapter a webgpu worker uses, by the name Dawn lists it under: the coordinator sets it per
 * worker in multi-GPU runs, as CUDA_VISIBLE_DEVICES is set for CUDA. dawn.node's `adapter=NAME`
 * flag is the one way it lets a process pick among several adapters. (No dawn.node import here:
 * the coordinator reads this without loading Dawn.)
 */
export const ADAPTER_ENV = 'QUADRA_WEBGPU_ADAPTER';

export interface AdapterEntry {
  backend: string;
  name: string;
}

/** Dawn's list of adapters: lines like ` * backend: 'vulkan', name: 'NVIDIA H200'`. */
export function parseAdapterList(text: string): AdapterEntry[] {
  const entries: AdapterEntry[] = [];
  for (const match of text.matchAll(/^\s*\*\s*backend:\s*'([^']*)',\s*name:\s*'(.*)'\s*$/gm)) entries.push({ backend: match[1]!, name: match[2]! });
  return entries;
}

/**
 * One adapter per worker for a multi-GPU webgpu run, by name. Two adapters of one name cannot be
 * told apart by Dawn, so two workers could land on one GPU: refused, with the reason.
 */
export function chooseAdapters(adapters: readonly AdapterEntry[], workers: number | undefined): string[] {
  const names = adapters.map((a) => a.name);
  const listed = names.map((n) => `'${n}'`).join(', ') || 'none';
  const twin = names.find((name, i) => names.indexOf(name) !== i);
  if (twin !== undefined) {
    const count = names.filter((n) => n === twin).length;
    throw new QuadraError(
      'BACKEND_UNAVAILABLE',
      `multi-gpu on webgpu: Dawn lists ${count} adapters named '${twin}' and picks adapters only by name, so two workers could share one GPU; use --mode single (one GPU), or the tensorflow-gpu backend on NVIDIA (one CUDA device per worker)`,
      { adapters: names },
    );
  }
  const wanted = workers ?? names.length;
  if (wanted < 1 || names.length < wanted) {
    throw new QuadraError('BACKEND_UNAVAILABLE', `multi-gpu on webgpu with ${wanted} workers needs ${wanted} GPU adapters; Dawn offers ${names.length} (${listed})`, {
      field: 'workers',
      adapters: names,
    });
  }
  return names.slice(0, wanted);
}
