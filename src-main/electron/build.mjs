// Bundles the Electron main process, the preload and the training worker into dist/electron.
// Native and wasm-loading packages stay external: electron-builder ships them (asar-unpacked).
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const external = ['electron', 'better-sqlite3', '@tensorflow/*', 'ws', 'bufferutil', 'utf-8-validate'];
const common = { bundle: true, platform: 'node', target: 'node20', absWorkingDir: root, external, logLevel: 'warning', sourcemap: true };

await Promise.all([
  // ESM so import.meta.url locates the renderer and the worker next to the bundle.
  build({ ...common, entryPoints: ['src-main/electron/main.ts'], outfile: 'dist/electron/main.mjs', format: 'esm' }),
  build({ ...common, entryPoints: ['src-main/training/worker-main.ts'], outfile: 'dist/electron/worker-main.mjs', format: 'esm' }),
  // Sandboxed preloads are plain CommonJS with only 'electron' available.
  build({ ...common, entryPoints: ['src-main/electron/preload.ts'], outfile: 'dist/electron/preload.cjs', format: 'cjs' }),
]);
