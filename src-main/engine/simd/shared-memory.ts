import type { ModelConfig } from '../../../src-shared/engine-config';
import type { UpdateChunk } from '../kernel';
import type { ParamLayout } from '../layout';
import type { SimdModule } from './module';
import { FORWARD_CHUNK } from './simd-kernel';

/**
 * One WebAssembly.Memory for every worker thread's simd kernel in a data-parallel run: parameters,
 * Adam moments and the Wᵀ copies exist once (at sharedBase), each worker's gradients and
 * activations in its own region (ownBases[rank], gradients first). After a step every worker
 * takes chunks of the update (all-reduce of that range straight from every worker's gradients,
 * AdamW, its Wᵀ rows) until none is left, so there is no copy into slots or between kernels, the
 * update is balanced by whoever is free, and the field network's chunks start while a slower
 * worker still runs its spiking backward.
 */
export interface SimdSharedMemory {
  memory: WebAssembly.Memory;
  sharedBase: number;
  ownBases: number[];
  /** Rows each worker's regions hold: its shard of the global batch, and the forward chunk. */
  capacity: number;
  chunks: UpdateChunk[];
}

const PAGE = 65536;
/** wasm32 addresses 4 GiB; the memory stays a page under it. */
const MAX_PAGES = 65535;
/** A chunk holds about this many values (32 KiB per array): tens of chunks per step, a few µs of overhead each. */
const CHUNK_VALUES = 8192;

/** The weight matrices the kernel keeps a Wᵀ copy of: its number for them, and the rows a copy is written in. */
const TRANSPOSED: Readonly<Record<string, { matrix: number; unit: number }>> = {
  'field_network.encoder.0.weight': { matrix: 0, unit: 8 },
  'field_network.encoder.4.weight': { matrix: 1, unit: 8 },
  'field_network.decoder.0.weight': { matrix: 2, unit: 8 },
  'field_network.decoder.4.weight': { matrix: 3, unit: 8 },
  'spike_network.fc1.weight': { matrix: 4, unit: 8 },
  'spike_network.fc2.weight': { matrix: 5, unit: 4 },
  'spike_network.fc3.weight': { matrix: 6, unit: 4 },
};

interface LayoutExports {
  heapBase(): number;
  configureShared(fieldSize: number, hidden: number, spiking: number, steps: number, capacity: number, sharedBase: number, ownBase: number): number;
  sharedEnd(): number;
}

const align64 = (n: number): number => Math.ceil(n / 64) * 64;

/**
 * Plans (and allocates) the shared memory for `workers` kernels of `rowsPerWorker` rows; null when
 * the runtime has no shared-memory build, the run would pass wasm32's 4 GiB, or the memory cannot be
 * allocated (the caller then gives each kernel its own memory and exchanges through slots).
 */
export function planSimdSharedMemory(module: SimdModule, model: ModelConfig, layout: ParamLayout, workers: number, rowsPerWorker: number, updated: number): SimdSharedMemory | null {
  if (!module.shared) return null;
  const capacity = Math.ceil(Math.max(rowsPerWorker, FORWARD_CHUNK) / 64) * 64;
  // A throwaway instance answers the layout questions (configureShared only computes addresses).
  const probe = new WebAssembly.Instance(module.shared, {
    env: { memory: new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }), abort: () => undefined },
  }).exports as unknown as LayoutExports;
  const sharedBase = align64(probe.heapBase());
  const ownBytes = align64(probe.configureShared(model.fieldSize, model.hiddenSize, model.spikingHiddenSize, model.spikingSteps, capacity, sharedBase, 0));
  const sharedEnd = align64(probe.sharedEnd());
  const pages = Math.ceil((sharedEnd + workers * ownBytes) / PAGE);
  if (pages > MAX_PAGES) return null;
  let memory: WebAssembly.Memory;
  try {
    memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  } catch {
    // Not this much memory to spare: the slot exchange needs far less (two gradients per worker).
    return null;
  }
  return {
    memory,
    sharedBase,
    ownBases: Array.from({ length: workers }, (_, rank) => sharedEnd + rank * ownBytes),
    capacity,
    chunks: updateChunks(layout, updated),
  };
}

/**
 * Cuts [0, updated) of the layout into update chunks in layout order (the field network's first):
 * a transposed weight matrix in whole units of rows (its Wᵀ rows go with them), the vectors
 * between matrices joined, anything longer than `target` values split.
 */
export function updateChunks(layout: ParamLayout, updated: number, target = CHUNK_VALUES): UpdateChunk[] {
  const chunks: UpdateChunk[] = [];
  let open: { start: number; end: number; group: string } | null = null;
  const flush = (): void => {
    if (!open) return;
    for (let start = open.start; start < open.end; start += target) chunks.push({ start, end: Math.min(open.end, start + target), matrix: -1, rows: [0, 0] });
    open = null;
  };
  for (const entry of layout.entries) {
    if (entry.offset >= updated) break;
    const transposed = TRANSPOSED[entry.name];
    if (transposed) {
      flush();
      const [rows = 0, columns = 0] = entry.shape;
      const unit = transposed.unit;
      const rowsPerChunk = Math.max(unit, Math.floor(target / (columns * unit)) * unit);
      for (let r0 = 0; r0 < rows; r0 += rowsPerChunk) {
        const r1 = Math.min(rows, r0 + rowsPerChunk);
        chunks.push({ start: entry.offset + r0 * columns, end: entry.offset + r1 * columns, matrix: transposed.matrix, rows: [r0, r1] });
      }
    } else {
      if (open && open.group !== entry.group) flush();
      if (open) open.end = entry.offset + entry.size;
      else open = { start: entry.offset, end: entry.offset + entry.size, group: entry.group };
    }
  }
  flush();
  return chunks;
}
