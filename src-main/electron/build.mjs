// Bundles the Electron main process, the preloads, the training worker, the offload thread and the
// page webgpu workers run in into dist/electron. Native and wasm-loading packages stay external: electron-builder ships
// them (asar-unpacked).
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const external = ['electron', 'better-sqlite3', '@tensorflow/*', 'ws', 'bufferutil', 'utf-8-validate'];
const common = { bundle: true, platform: 'node', target: 'node20', absWorkingDir: root, external, logLevel: 'warning', sourcemap: true };

await mkdir(new URL('../../dist/electron/', import.meta.url), { recursive: true });
const [, , , , , gpuWorker] = await Promise.all([
  // ESM so import.meta.url locates the renderer and the worker next to the bundle.
  build({ ...common, entryPoints: ['src-main/electron/main.ts'], outfile: 'dist/electron/main.mjs', format: 'esm' }),
  build({ ...common, entryPoints: ['src-main/training/worker-main.ts'], outfile: 'dist/electron/worker-main.mjs', format: 'esm' }),
  // The main process's worker thread for checkpoint, dataset and metrics work (services/offload).
  build({ ...common, entryPoints: ['src-main/services/offload/offload-main.ts'], outfile: 'dist/electron/offload-main.mjs', format: 'esm' }),
  // Sandboxed preloads are plain CommonJS with only 'electron' available.
  build({ ...common, entryPoints: ['src-main/electron/preload.ts'], outfile: 'dist/electron/preload.cjs', format: 'cjs' }),
  build({ ...common, entryPoints: ['src-main/electron/gpu-worker-preload.ts'], outfile: 'dist/electron/gpu-worker-preload.cjs', format: 'cjs' }),
  // The webgpu worker's page (a hidden window in the app): browser code, nothing external, so any
  // Node built-in or Node-only package reached from browser-worker.ts fails this build.
  build({
    entryPoints: ['src-main/training/browser-worker.ts'],
    outfile: 'dist/electron/gpu-worker.js',
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'chrome120',
    absWorkingDir: root,
    logLevel: 'warning',
    sourcemap: true,
    metafile: true,
  }),
  copyFile(new URL('./gpu-worker.html', import.meta.url), new URL('../../dist/electron/gpu-worker.html', import.meta.url)),
]);

// esbuild's browser platform already refuses 'node:*'; this also names a bare built-in or a
// Node-only package that a future shim might let through.
const nodeOnly = new RegExp(`^(node:|(${builtinModules.join('|')})$)|node_modules/(@tensorflow|webgpu|better-sqlite3)/`);
const leaked = Object.keys(gpuWorker.metafile.inputs).filter((input) => nodeOnly.test(input));
if (leaked.length > 0) throw new Error(`dist/electron/gpu-worker.js must run in a page, but bundles Node-only code: ${leaked.join(', ')}`);
