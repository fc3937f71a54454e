// Runs after `npm install`. It never fails the install: it tries the optional downloads that
// npm's allowScripts leaves to us (the Electron runtime) and says plainly what is missing and
// what still works without it.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const lines = [];

function resolveDir(pkg) {
  try {
    return path.dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    return null;
  }
}

function electronStatus() {
  const dir = resolveDir('electron');
  if (!dir) return 'Electron: not installed (devDependency missing) — the desktop app cannot start; `npx quadra` works.';
  const binaryPresent = () => {
    const pathFile = path.join(dir, 'path.txt');
    return existsSync(pathFile) && existsSync(path.join(dir, 'dist', readFileSync(pathFile, 'utf8').trim()));
  };
  if (binaryPresent()) return 'Electron: runtime present.';
  if (process.env.ELECTRON_SKIP_BINARY_DOWNLOAD) return 'Electron: runtime download skipped (ELECTRON_SKIP_BINARY_DOWNLOAD is set).';
  try {
    execFileSync(process.execPath, [path.join(dir, 'install.js')], { stdio: 'pipe', timeout: 180_000 });
  } catch (error) {
    const why = String(error.stderr || error.message).split('\n').find((l) => l.trim()) ?? 'unknown error';
    return `Electron: runtime NOT downloaded (${why.trim().slice(0, 160)}). The desktop app cannot start here; \`npx quadra\` (CLI, and serve mode once it exists) works without it. Retry with \`node node_modules/electron/install.js\` where the download host is reachable.`;
  }
  return binaryPresent() ? 'Electron: runtime downloaded.' : 'Electron: install step ran but the runtime is still missing.';
}

function tfjsStatus(pkg, what) {
  const dir = resolveDir(pkg);
  if (!dir) {
    return `${pkg}: not installed — npm drops this optional dependency when its install step (the libtensorflow download) fails. ${what} is unavailable; the wasm backend is used instead.`;
  }
  const binding = path.join(dir, 'lib');
  return existsSync(binding) ? `${pkg}: installed.` : `${pkg}: installed without its native binding (install step skipped or failed) — ${what} will report why at start.`;
}

async function simdStatus() {
  try {
    const { buildWasm } = await import('../engine/simd/build-wasm.mjs');
    return `${await buildWasm()} — the fused WebAssembly SIMD backend (default on CPUs).`;
  } catch (error) {
    const why = String(error instanceof Error ? error.message : error).split('\n')[0];
    return `simd kernel: NOT built (${why}). The simd backend is unavailable; tfjs wasm is used instead. Retry with \`npm run build:wasm\`.`;
  }
}

lines.push(electronStatus());
lines.push(await simdStatus());
lines.push(tfjsStatus('@tensorflow/tfjs-node-gpu', 'CUDA training'));
lines.push(tfjsStatus('@tensorflow/tfjs-node', 'Native CPU training'));
lines.push(resolveDir('@tensorflow/tfjs-backend-wasm') ? '@tensorflow/tfjs-backend-wasm: installed (WebAssembly SIMD backend).' : '@tensorflow/tfjs-backend-wasm: MISSING — run npm install again.');
console.log(['', 'quadra: install report', ...lines.map((l) => `  - ${l}`), '  Run `npx quadra hardware` to see which backend will run.', ''].join('\n'));
