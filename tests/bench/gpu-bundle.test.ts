import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `npm run bundle:gpu-bench`: the folder it builds runs the CLI and run.sh from outside the
 * repository, with no node_modules and a bare environment, on SwiftShader (a software Vulkan
 * driver standing in for the GPU: one step at batch 64, so it stays quick).
 */

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
const needs: Array<[boolean, string]> = [
  [process.platform === 'linux' && process.arch === 'x64', 'the bundle is linux-x64 only'],
  [existsSync(path.join(root, 'node_modules/webgpu/dist/linux-x64/dawn.node')), 'the optional webgpu package is not installed'],
  [existsSync('/usr/lib/x86_64-linux-gnu/libvulkan.so.1'), "no Vulkan loader (Debian's libvulkan1)"],
  [existsSync(SWIFTSHADER), `no SwiftShader (${SWIFTSHADER}, Debian's chromium)`],
];
const why = needs.find(([ok]) => !ok)?.[1] ?? null;
const HAS_TORCH = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;

/** What `env -i PATH=/usr/bin:/bin HOME=…` leaves: nothing of this repository or this process. */
function bareEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: '/usr/bin:/bin', HOME: home, ...extra };
}

describe.skipIf(why !== null)(`the GPU benchmark bundle${why ? ` (skipped: ${why})` : ''}`, () => {
  let tmp = '';
  let bundle = '';

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-gpu-bundle-'));
    bundle = path.join(tmp, 'gpu-bench');
    await run(process.execPath, [path.join(root, 'bench/gpu-bundle/build.mjs'), '--out', bundle, '--no-archive'], { cwd: root, timeout: 60_000 });
  }, 90_000);

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('holds its own Node, the CLI and worker bundles, dawn.node and the Vulkan loader', () => {
    for (const file of ['bin/node', 'bin/quadra', 'dist/cli/quadra.mjs', 'dist/cli/worker-main.mjs', 'dist/wasm/quadra-simd.wasm', 'node_modules/webgpu/index.js', 'node_modules/webgpu/dist/linux-x64/dawn.node', 'lib/libvulkan.so.1', 'run.sh', 'table.mjs', 'pytorch-reference.py', 'model.py']) {
      expect(existsSync(path.join(bundle, file)), file).toBe(true);
    }
    expect(existsSync(path.join(bundle, 'node_modules/better-sqlite3'))).toBe(false);
  });

  it.skipIf(!HAS_TORCH)(`runs pytorch-reference.py from outside the repository, with the model beside it${HAS_TORCH ? '' : ' (skipped: /usr/bin/python3 cannot import torch)'}`, async () => {
    const args = [path.join(bundle, 'pytorch-reference.py'), '--iterations', '1', '--repeats', '1', '--warmup', '0', '--batch-size', '2', '--json'];
    const { stdout } = await run('/usr/bin/python3', args, { cwd: tmp, env: bareEnv(tmp) });
    expect(JSON.parse(stdout)).toMatchObject({ batchSize: 2, fieldSize: 100, threads: 1 });
    expect(existsSync(path.join(bundle, '__pycache__')), 'no bytecode written beside the model').toBe(false);
  });

  it('runs the CLI from outside the repository', async () => {
    const { stdout } = await run(path.join(bundle, 'bin/quadra'), ['--version'], { cwd: tmp, env: bareEnv(tmp) });
    const version = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version as string;
    expect(stdout.trim()).toBe(`quadra ${version}`);
  });

  it('run.sh measures webgpu and writes one table, also as JSON under $OUT', async () => {
    const out = path.join(tmp, 'out');
    const env = bareEnv(tmp, {
      VK_ICD_FILENAMES: SWIFTSHADER,
      OUT: out,
      QUADRA_BENCH_BATCHES: '64',
      QUADRA_BENCH_ITERATIONS: '1',
      QUADRA_BENCH_REPEATS: '1',
      QUADRA_BENCH_WARMUP: '1',
      QUADRA_BENCH_PRECISIONS: 'fp32',
      QUADRA_BENCH_PYTORCH: '0',
    });
    const { stdout } = await run('/bin/bash', [path.join(bundle, 'run.sh')], { cwd: tmp, env, timeout: 100_000 });
    expect(stdout).toMatch(/^\| backend +\| precision \| batch \|/m);
    expect(stdout).toMatch(/^\| webgpu +\| fp32 +\| +64 \|.*\| ok +\|$/m);
    const results = JSON.parse(readFileSync(path.join(out, 'gpu-bench-results.json'), 'utf8'));
    expect(results.rows).toHaveLength(1);
    expect(results.rows[0]).toMatchObject({ backend: 'webgpu', precision: 'fp32', batch: 64, status: 'ok' });
    expect(results.rows[0].train.median).toBeGreaterThan(0);
    expect(results.webgpu.reason).toMatch(/SwiftShader/i);
  }, 120_000);
});
