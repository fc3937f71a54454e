// Compiles the fused kernel (assembly/quadra.ts, AssemblyScript) into dist/wasm: a plain wasm SIMD
// module and one with relaxed SIMD, each also as a build that imports one shared memory (the
// worker threads of a data-parallel run keep parameters, moments and gradients there, once). Runs in `npm install` (postinstall) and `npm run build`; the
// assemblyscript compiler is plain JavaScript + wasm (binaryen), so it works offline. Skips the
// work when both modules are newer than the source, unless --force.
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const source = 'src-main/engine/simd/assembly/quadra.ts';
const outDir = path.join(root, 'dist/wasm');
/** An imported, shared memory of up to wasm32's 4 GiB (65,536 pages); the coordinator sizes it. */
const SHARED_MEMORY = ['--importMemory', '--sharedMemory', '--initialMemory', '1', '--maximumMemory', '65536'];
const outputs = [
  { file: 'quadra-simd.wasm', features: ['simd'], flags: [] },
  { file: 'quadra-simd-relaxed.wasm', features: ['simd', 'relaxed-simd'], flags: [] },
  { file: 'quadra-simd-shared.wasm', features: ['simd', 'threads'], flags: SHARED_MEMORY },
  { file: 'quadra-simd-relaxed-shared.wasm', features: ['simd', 'relaxed-simd', 'threads'], flags: SHARED_MEMORY },
];

/** Builds what is missing or stale; returns a one-line summary. Throws when the compiler fails. */
export async function buildWasm({ force = false } = {}) {
  const sourceTime = statSync(path.join(root, source)).mtimeMs;
  const fresh = (file) => existsSync(path.join(outDir, file)) && statSync(path.join(outDir, file)).mtimeMs >= sourceTime;
  if (!force && outputs.every((o) => fresh(o.file))) return 'simd kernel: up to date (dist/wasm)';
  const asc = (await import('assemblyscript/asc')).default;
  mkdirSync(outDir, { recursive: true });
  for (const output of outputs) {
    const args = [source, '-O3', '--noAssert', '--runtime', 'stub', ...output.features.flatMap((f) => ['--enable', f]), ...output.flags, '--outFile', path.join('dist/wasm', output.file)];
    let errors = '';
    const { error } = await asc.main(args, { stdout: { write: () => true }, stderr: { write: (text) => ((errors += text), true) }, baseDir: root });
    if (error) throw new Error(`assemblyscript failed on ${source} (${output.file}): ${error.message}\n${errors}`);
  }
  return `simd kernel: built ${outputs.map((o) => o.file).join(', ')} (dist/wasm)`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  try {
    console.log(await buildWasm({ force: process.argv.includes('--force') }));
  } catch (error) {
    console.error(String(error instanceof Error ? error.message : error));
    process.exit(1);
  }
}
