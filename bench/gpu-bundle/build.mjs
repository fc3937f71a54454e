// `npm run bundle:gpu-bench`: one self-contained folder (and a .tar.gz of it) that measures the
// webgpu backend on a linux-x64 GPU server with no internet access and no Node. See README.md here.
//
//   node bench/gpu-bundle/build.mjs [--out DIR] [--no-archive] [--xz]
//
// Layout (mirrors the repository, so the sources' own path logic finds everything unchanged):
//   bin/node, bin/quadra          this machine's Node binary and a wrapper running the CLI bundle
//   dist/cli/quadra.mjs           the whole `quadra` CLI (entry.ts), esbuild-bundled: no tsx, no node_modules
//   dist/cli/worker-main.mjs      the training worker; transport.ts finds it next to the CLI bundle
//   dist/cli/offload-main.mjs     serve mode's offload thread (checkpoint, dataset and metrics work)
//   dist/wasm/*.wasm              the simd kernel (simd/module.ts looks in <bundle>/../wasm)
//   package.json                  name, version, "type": "module" (versions.ts reads ../../package.json)
//   node_modules/webgpu/          index.js + dist/linux-x64/dawn.node only (kept external: native)
//   lib/libvulkan.so.1            Debian's Vulkan loader (libvulkan1), put on LD_LIBRARY_PATH by run.sh
//   run.sh, table.mjs, pytorch-reference.py, model.py, README.md, licenses/, BUILD-INFO.json
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const here = fileURLToPath(new URL('.', import.meta.url));

/** The .tar.gz must fit the GPU machine's 64 MiB working-tree limit with room to spare. */
const ARCHIVE_LIMIT_BYTES = 60 * 1000 * 1000;
const VULKAN_LOADER_DIR = '/usr/lib/x86_64-linux-gnu';

function parseArgs(argv) {
  const options = { out: path.join(root, 'out', 'gpu-bench'), archive: true, xz: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--out' && argv[i + 1]) options.out = path.resolve(argv[++i]);
    else if (arg.startsWith('--out=')) options.out = path.resolve(arg.slice('--out='.length));
    else if (arg === '--no-archive') options.archive = false;
    else if (arg === '--xz') options.xz = true;
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: node bench/gpu-bundle/build.mjs [--out DIR (default out/gpu-bench)] [--no-archive] [--xz (.tar.xz: ~30 MB instead of ~45, a minute slower)]\n');
      process.exit(0);
    } else {
      process.stderr.write(`build.mjs: unknown argument '${arg}'\n`);
      process.exit(2);
    }
  }
  return options;
}

function fail(message) {
  process.stderr.write(`bundle:gpu-bench: ${message}\n`);
  process.exit(1);
}

function note(message) {
  process.stderr.write(`bundle:gpu-bench: ${message}\n`);
}

function copy(from, to, mode) {
  mkdirSync(path.dirname(to), { recursive: true });
  copyFileSync(from, to);
  if (mode !== undefined) chmodSync(to, mode);
}

function sizeOf(target) {
  const stat = statSync(target);
  if (!stat.isDirectory()) return stat.size;
  return readdirSync(target).reduce((sum, name) => sum + sizeOf(path.join(target, name)), 0);
}

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

/**
 * better-sqlite3 is native and only the record-keeping commands (train, runs, checkpoints,
 * datasets, serve) open the database; bench and hardware never do. The CLI imports the store
 * module statically, so the package is replaced by a stub that refuses when it is used.
 */
const noDatabase = {
  name: 'no-better-sqlite3',
  setup(b) {
    b.onResolve({ filter: /^better-sqlite3$/ }, () => ({ path: 'better-sqlite3', namespace: 'gpu-bench-stub' }));
    b.onLoad({ filter: /.*/, namespace: 'gpu-bench-stub' }, () => ({
      loader: 'js',
      contents: `export default class Database {
  constructor() {
    throw new Error('this GPU benchmark bundle has no database (better-sqlite3 is left out): only bench, hardware, demo and predict work here');
  }
}`,
    }));
  },
};

async function bundleCli(out) {
  const common = {
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    absWorkingDir: root,
    logLevel: 'warning',
    // Native or optional at run time; each is looked up (and its absence reported) by backends.ts.
    // tfjs-backend-wasm stays out too: the webgpu benchmark does not need it (`quadra hardware`
    // then reports wasm as unavailable).
    external: ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-backend-wasm', 'bufferutil', 'utf-8-validate'],
    plugins: [noDatabase],
    // Bundled CommonJS (tfjs, ws) calls require(); an ES module has none, so give it one.
    banner: { js: "import { createRequire as __quadraCreateRequire } from 'node:module'; const require = __quadraCreateRequire(import.meta.url);" },
    legalComments: 'linked',
  };
  await Promise.all([
    build({ ...common, entryPoints: ['src-main/cli/entry.ts'], outfile: path.join(out, 'dist/cli/quadra.mjs') }),
    build({ ...common, entryPoints: ['src-main/training/worker-main.ts'], outfile: path.join(out, 'dist/cli/worker-main.mjs') }),
    // quadra serve's offload thread (services/offload/offload.ts finds it next to the CLI bundle).
    build({ ...common, entryPoints: ['src-main/services/offload/offload-main.ts'], outfile: path.join(out, 'dist/cli/offload-main.mjs') }),
  ]);
}

function copyWasm(out) {
  const wasmDir = path.join(root, 'dist', 'wasm');
  const files = ['quadra-simd.wasm', 'quadra-simd-relaxed.wasm', 'quadra-simd-shared.wasm', 'quadra-simd-relaxed-shared.wasm'];
  if (!files.every((f) => existsSync(path.join(wasmDir, f)))) {
    note('dist/wasm is missing: running npm run build:wasm');
    const result = spawnSync(process.execPath, [path.join(root, 'src-main/engine/simd/build-wasm.mjs')], { cwd: root, stdio: 'inherit' });
    if (result.status !== 0) fail('npm run build:wasm failed');
  }
  for (const f of files) copy(path.join(wasmDir, f), path.join(out, 'dist/wasm', f));
}

function copyWebGpu(out) {
  const pkgDir = path.join(root, 'node_modules', 'webgpu');
  const dawn = path.join(pkgDir, 'dist', 'linux-x64', 'dawn.node');
  if (!existsSync(dawn)) fail(`${path.relative(root, dawn)} is missing (the optional webgpu package is not installed)`);
  // index.js loads dist/<platform>-<arch>/dawn.node next to itself and imports only node built-ins.
  const target = path.join(out, 'node_modules', 'webgpu');
  for (const f of ['package.json', 'index.js', 'LICENSE.md']) copy(path.join(pkgDir, f), path.join(target, f));
  copy(dawn, path.join(target, 'dist', 'linux-x64', 'dawn.node'));
  return JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version;
}

function copyVulkanLoader(out) {
  const real = readdirSync(VULKAN_LOADER_DIR).find((name) => /^libvulkan\.so\.1\.\d+\.\d+$/.test(name));
  if (!real) fail(`no ${VULKAN_LOADER_DIR}/libvulkan.so.1.* (install Debian's libvulkan1)`);
  // Dawn dlopens "libvulkan.so.1": one real file under that name is enough.
  copy(path.join(VULKAN_LOADER_DIR, real), path.join(out, 'lib', 'libvulkan.so.1'));
  return real.replace(/^libvulkan\.so\./, '');
}

function copyLicenses(out) {
  const licenses = [
    ['/usr/share/doc/nodejs/LICENSE', 'node-LICENSE'],
    ['/usr/share/doc/libvulkan1/copyright', 'libvulkan1-copyright'],
    [path.join(root, 'node_modules/webgpu/LICENSE.md'), 'webgpu-dawn-LICENSE.md'],
  ];
  for (const [from, name] of licenses) if (existsSync(from)) copy(from, path.join(out, 'licenses', name));
}

function writeLaunchers(out, version) {
  const quadra = `#!/bin/sh
# The quadra CLI on the bundled Node (workers are forked with the same binary).
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/node" "$here/../dist/cli/quadra.mjs" "$@"
`;
  writeFileSync(path.join(out, 'bin', 'quadra'), quadra, { mode: 0o755 });
  // versions.ts reads ../../package.json from the bundle; "type": "module" keeps .mjs semantics plain.
  writeFileSync(path.join(out, 'package.json'), `${JSON.stringify({ name: 'quadra-gpu-bench', version, private: true, type: 'module' }, null, 2)}\n`);
  copy(path.join(here, 'run.sh'), path.join(out, 'run.sh'), 0o755);
  copy(path.join(here, 'table.mjs'), path.join(out, 'table.mjs'));
  copy(path.join(here, 'README.md'), path.join(out, 'README.md'));
  copy(path.join(root, 'bench', 'pytorch-reference.py'), path.join(out, 'pytorch-reference.py'), 0o755);
  // The model the script imports (resources/torchrun/model.py, its one copy); it looks beside itself first.
  copy(path.join(root, 'resources', 'torchrun', 'model.py'), path.join(out, 'model.py'));
}

/** The commit built, and whether tracked files differed from it (read-only git plumbing). */
function gitState() {
  const head = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' });
  if (head.status !== 0) return { commit: 'unknown', uncommittedChanges: null };
  const diff = spawnSync('git', ['diff-index', '--quiet', 'HEAD', '--'], { cwd: root });
  return { commit: head.stdout.trim(), uncommittedChanges: diff.status === 0 ? false : diff.status === 1 ? true : null };
}

function archive(out, xz) {
  const file = `${out}.tar.${xz ? 'xz' : 'gz'}`;
  rmSync(file, { force: true });
  const result = spawnSync('tar', [xz ? '-cJf' : '-czf', file, '-C', path.dirname(out), path.basename(out)], { stdio: 'inherit' });
  if (result.status !== 0) fail('tar failed');
  return file;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  if (process.platform !== 'linux' || process.arch !== 'x64') fail(`the GPU servers are linux-x64; this is ${process.platform}-${process.arch}`);
  const out = options.out;
  // Replaces only an earlier bundle (or an empty folder), never a folder that holds anything else.
  if (existsSync(out) && readdirSync(out).length > 0 && !existsSync(path.join(out, 'BUILD-INFO.json'))) {
    fail(`refusing to replace ${out}: it is not empty and not an earlier bundle (no BUILD-INFO.json)`);
  }
  rmSync(out, { recursive: true, force: true });
  mkdirSync(path.join(out, 'bin'), { recursive: true });

  const version = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version;
  await bundleCli(out);
  copyWasm(out);
  const webgpuVersion = copyWebGpu(out);
  const vulkanVersion = copyVulkanLoader(out);
  copy(process.execPath, path.join(out, 'bin', 'node'), 0o755);
  copyLicenses(out);
  writeLaunchers(out, version);

  const parts = {
    'bin/node': sizeOf(path.join(out, 'bin', 'node')),
    'dist/cli': sizeOf(path.join(out, 'dist', 'cli')),
    'dist/wasm': sizeOf(path.join(out, 'dist', 'wasm')),
    'node_modules/webgpu': sizeOf(path.join(out, 'node_modules', 'webgpu')),
    lib: sizeOf(path.join(out, 'lib')),
  };
  const info = {
    quadra: version,
    ...gitState(),
    builtAt: new Date().toISOString(),
    node: process.version,
    webgpu: webgpuVersion,
    libvulkan: vulkanVersion,
    platform: `${process.platform}-${process.arch}`,
    bytes: parts,
  };
  writeFileSync(path.join(out, 'BUILD-INFO.json'), `${JSON.stringify(info, null, 2)}\n`);

  const total = sizeOf(out);
  process.stdout.write(`${path.relative(root, out) || out}/  ${mb(total)}\n`);
  for (const [name, bytes] of Object.entries(parts)) process.stdout.write(`  ${name.padEnd(22)} ${mb(bytes)}\n`);
  if (options.archive) {
    const file = archive(out, options.xz);
    const bytes = statSync(file).size;
    process.stdout.write(`${path.relative(root, file) || file}  ${mb(bytes)}\n`);
    if (bytes > ARCHIVE_LIMIT_BYTES) fail(`${file} is ${mb(bytes)}, over the ${mb(ARCHIVE_LIMIT_BYTES)} limit (try --xz)`);
  }
  process.stdout.write(`run it there: tar -xf ${path.basename(out)}.tar.${options.xz ? 'xz' : 'gz'} && ./${path.basename(out)}/run.sh\n`);
}

await main();
