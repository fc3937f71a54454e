import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';

/**
 * Finds, validates and compiles the fused kernel (built from assembly/quadra.ts by
 * src-main/engine/simd/build-wasm.mjs into dist/wasm). Two builds: plain wasm SIMD, and one with
 * relaxed SIMD (f32x4.relaxed_madd) used where the runtime validates it; each also as a build that
 * imports one shared memory (data-parallel worker threads). Compiled once per process (and per
 * worker thread, which compiles its own copy from the same bytes).
 */

export const WASM_FILES = { plain: 'quadra-simd.wasm', relaxed: 'quadra-simd-relaxed.wasm' } as const;
/** The same kernels built to import one shared memory (data-parallel worker threads share it). */
const SHARED_FILES = { plain: 'quadra-simd-shared.wasm', relaxed: 'quadra-simd-relaxed-shared.wasm' } as const;

export interface SimdModule {
  module: WebAssembly.Module;
  relaxed: boolean;
  file: string;
  /** The shared-memory build of the same kernel, where it exists and validates (null: each worker keeps its own memory). */
  shared: WebAssembly.Module | null;
}

export type SimdProbe = { available: true; module: SimdModule; reason: string } | { available: false; reason: string };

let cached: SimdProbe | null = null;

/** Folders searched for the .wasm files: an override, the source checkout and the bundled app. */
export function wasmFolders(): string[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const folders = [
    // src-main/engine/simd → dist/wasm (tsx, tests, the CLI)
    path.resolve(here, '../../../dist/wasm'),
    // dist/electron → dist/wasm (the bundled app; asar-unpacked, read through Electron's fs)
    path.resolve(here, '../wasm'),
  ];
  // Inside a packaged app the files are asar-unpacked; a worker thread may not see through the
  // archive, so the unpacked folder is tried first.
  const unpacked = folders.filter((dir) => dir.includes(`app.asar${path.sep}`)).map((dir) => dir.replace(`app.asar${path.sep}`, `app.asar.unpacked${path.sep}`));
  const override = process.env.QUADRA_SIMD_WASM_DIR;
  return [...(override ? [path.resolve(override)] : []), ...unpacked, ...folders];
}

/**
 * Relaxed SIMD: Node 20's V8 has it behind --experimental-wasm-relaxed-simd. The flag is turned on
 * here (it only widens what validates) unless QUADRA_SIMD_RELAXED=0; the module is then used only
 * if WebAssembly.validate accepts it, so an engine without the feature falls back to plain SIMD.
 */
function relaxedWanted(): boolean {
  if (process.env.QUADRA_SIMD_RELAXED === '0') return false;
  try {
    v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  } catch {
    // Not fatal: validation below decides.
  }
  return true;
}

/** Loads the best module this runtime can run, or says why none can be used. Cached. */
export function probeSimd(): SimdProbe {
  if (cached) return cached;
  cached = probeUncached();
  return cached;
}

function probeUncached(): SimdProbe {
  const folder = wasmFolders().find((dir) => existsSync(path.join(dir, WASM_FILES.plain)));
  if (!folder) {
    return { available: false, reason: `kernel not built (${WASM_FILES.plain} not found in ${wasmFolders().join(' or ')}; run \`npm run build:wasm\`)` };
  }
  const plainFile = path.join(folder, WASM_FILES.plain);
  const relaxedFile = path.join(folder, WASM_FILES.relaxed);
  try {
    if (relaxedWanted() && existsSync(relaxedFile)) {
      const bytes = readFileSync(relaxedFile);
      if (WebAssembly.validate(bytes)) {
        const module: SimdModule = { module: new WebAssembly.Module(bytes), relaxed: true, file: relaxedFile, shared: sharedBuild(folder, SHARED_FILES.relaxed) };
        return { available: true, module, reason: 'fused Quadra Matrix kernel, WebAssembly SIMD with relaxed SIMD (f32x4.relaxed_madd)' };
      }
    }
    const bytes = readFileSync(plainFile);
    if (!WebAssembly.validate(bytes)) {
      return { available: false, reason: 'this JavaScript engine has no WebAssembly SIMD (128-bit) support' };
    }
    const module: SimdModule = { module: new WebAssembly.Module(bytes), relaxed: false, file: plainFile, shared: sharedBuild(folder, SHARED_FILES.plain) };
    const why = process.env.QUADRA_SIMD_RELAXED === '0' ? 'relaxed SIMD turned off by QUADRA_SIMD_RELAXED=0' : 'relaxed SIMD not supported here';
    return { available: true, module, reason: `fused Quadra Matrix kernel, WebAssembly SIMD (${why})` };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { available: false, reason: `the kernel failed to load: ${message.split('\n')[0]}` };
  }
}

/** The shared-memory build beside the chosen one, or null where it is missing or this runtime has no wasm threads. */
function sharedBuild(folder: string, file: string): WebAssembly.Module | null {
  const full = path.join(folder, file);
  if (!existsSync(full) || typeof SharedArrayBuffer === 'undefined') return null;
  const bytes = readFileSync(full);
  return WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
}

/** The widths the kernel's SIMD loops need: multiples of 4. Null when the model fits. */
export function simdModelProblem(model: { fieldSize: number; hiddenSize: number; spikingHiddenSize: number }): string | null {
  const bad = (['fieldSize', 'hiddenSize', 'spikingHiddenSize'] as const).filter((key) => model[key] % 4 !== 0);
  if (bad.length === 0) return null;
  return `the fused kernel needs ${bad.map((key) => `${key} (${model[key]})`).join(', ')} to be a multiple of 4`;
}
