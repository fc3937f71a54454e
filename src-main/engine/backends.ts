import * as tf from '@tensorflow/tfjs';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { BACKEND_IDS, type BackendId, type Precision } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import type { GpuInfo, NvidiaSmiStatus } from '../../src-shared/hardware';
import { PRECISION_NOTE } from './precision';
import { probeSimd, simdModelProblem } from './simd/module';

export { assertPrecisionSupported } from './precision';

/** The widths that decide whether the fused kernel can run a model. */
export interface ModelWidths {
  fieldSize: number;
  hiddenSize: number;
  spikingHiddenSize: number;
}

/**
 * The one place that chooses the compute backend. Chain: tfjs-node-gpu (CUDA) → simd (our fused
 * WebAssembly SIMD kernel: the default on CPUs, ~4× tfjs wasm and ahead of tfjs-node's per-op
 * overhead at these sizes) → tfjs-node (native CPU) → tfjs wasm → tfjs cpu (pure JS, ~20× slower
 * than wasm: only when nothing else loads).
 */

export interface BackendStatus {
  id: BackendId;
  available: boolean;
  /** Why it is or is not usable, in one line a user can act on. */
  reason: string;
}

export interface BackendCapabilities {
  /** tfjs computes in float32 only, on every backend. */
  precisions: Precision[];
  precisionNote: string;
  simd: boolean | null;
  /** Compute threads one engine uses: libtensorflow runs its own pool; wasm in Node has one thread. */
  threads: number;
}

export interface BackendSelection {
  id: BackendId;
  /** tfjs's own name for it ('tensorflow', 'wasm' or 'cpu'). */
  tfjsName: string;
  capabilities: BackendCapabilities;
  /** One line per backend tried: the chosen one and why each earlier one was skipped. */
  report: BackendStatus[];
}

export interface GpuSituation {
  gpus: GpuInfo[];
  nvidiaSmi: NvidiaSmiStatus;
}

const TFJS_NAME: Record<BackendId, string> = {
  'tensorflow-gpu': 'tensorflow',
  // The fused kernels need no tfjs backend at all.
  webgpu: 'none',
  simd: 'none',
  tensorflow: 'tensorflow',
  wasm: 'wasm',
  cpu: 'cpu',
};

const require = createRequire(import.meta.url);

let nativePackageLoaded: 'gpu' | 'cpu' | null = null;
let selected: BackendSelection | null = null;

/**
 * Initialises the requested backend, or with 'auto' the first of the chain that works. Safe to call
 * again: the backend chosen first stays (tfjs keeps one native binding per process).
 */
export async function selectBackend(requested: BackendId | 'auto', gpu: GpuSituation, model?: ModelWidths): Promise<BackendSelection> {
  // The simd choice depends on the model's widths, so it is only reused for a model it can run.
  const reusable = selected && (selected.id !== 'simd' || !model || simdModelProblem(model) === null);
  if (selected && reusable && (requested === 'auto' || requested === selected.id)) return selected;
  allowGpuMemoryGrowth();
  const order: BackendId[] = requested === 'auto' ? [...BACKEND_IDS] : [requested];
  const report: BackendStatus[] = [];
  for (const id of order) {
    const status = await tryBackend(id, gpu, model, requested === id);
    if (!status.available) {
      report.push(status);
      continue;
    }
    await activate(id);
    report.push({ id, available: true, reason: `selected: ${status.reason}` });
    selected = { id, tfjsName: TFJS_NAME[id], capabilities: await capabilities(id), report };
    return selected;
  }
  throw unavailable(requested, report);
}

/**
 * The backend a run will get, decided without starting it in this process: selectBackend's choice,
 * with tfjs-node(-gpu) asked of a child process (the training workers load it in their own). The
 * process that coordinates a run (Electron's main process) never loads libtensorflow.
 */
export async function chooseBackend(requested: BackendId | 'auto', gpu: GpuSituation, model?: ModelWidths): Promise<BackendId> {
  const order: BackendId[] = requested === 'auto' ? [...BACKEND_IDS] : [requested];
  const report: BackendStatus[] = [];
  for (const id of order) {
    const status = await tryBackend(id, gpu, model, requested === id, true);
    if (status.available) return id;
    report.push(status);
  }
  throw unavailable(requested, report);
}

function unavailable(requested: BackendId | 'auto', report: BackendStatus[]): QuadraError {
  const why = report.map((r) => `${r.id}: ${r.reason}`).join('; ');
  return new QuadraError('BACKEND_UNAVAILABLE', requested === 'auto' ? `no compute backend could start (${why})` : `backend '${requested}' is not available: ${why}`, {
    report,
  });
}

/**
 * What each backend would do on this machine, without changing the active one (`quadra hardware`,
 * the app's hardware report). libtensorflow is never loaded here: whether tfjs-node(-gpu) loads is
 * asked of a short-lived child process (probeNativeInChild), as each training worker is its own
 * process. The caller (Electron's main process) keeps no CUDA context, and a library that crashes
 * on load takes only the child down.
 */
export async function probeBackends(gpu: GpuSituation, model?: ModelWidths): Promise<BackendStatus[]> {
  allowGpuMemoryGrowth();
  const active = tf.getBackend();
  const statuses: BackendStatus[] = [];
  for (const id of BACKEND_IDS) statuses.push(await tryBackend(id, gpu, model, false, true));
  if (active && tf.getBackend() !== active) await tf.setBackend(active);
  return statuses;
}

/** TensorFlow reads this when it loads: GPU memory is allocated as needed, so several processes can share a GPU. */
function allowGpuMemoryGrowth(): void {
  process.env.TF_FORCE_GPU_ALLOW_GROWTH = 'true';
}

export function formatBackendReport(report: BackendStatus[]): string[] {
  return report.map((r) => `${r.id}: ${r.reason}`);
}

async function tryBackend(id: BackendId, gpu: GpuSituation, model?: ModelWidths, named = false, probeOnly = false): Promise<BackendStatus> {
  switch (id) {
    case 'tensorflow-gpu':
      return tryNative('gpu', gpu, probeOnly);
    case 'webgpu':
      return tryWebGpu(named);
    case 'simd':
      return trySimd(model);
    case 'tensorflow':
      return tryNative('cpu', gpu, probeOnly);
    case 'wasm':
      return tryWasm();
    case 'cpu':
      return { id, available: true, reason: 'pure-JavaScript tfjs backend (always works, slowest)' };
  }
}

/** `probeOnly`: whether the package loads is asked of a child process; this one does not load it. */
async function tryNative(kind: 'gpu' | 'cpu', gpu: GpuSituation, probeOnly = false): Promise<BackendStatus> {
  const id: BackendId = kind === 'gpu' ? 'tensorflow-gpu' : 'tensorflow';
  const pkg = kind === 'gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
  if (kind === 'gpu' && gpu.gpus.length === 0) {
    const why = gpu.nvidiaSmi.available ? 'nvidia-smi lists no GPU' : gpu.nvidiaSmi.reason;
    return { id, available: false, reason: `no NVIDIA GPU found (${why})` };
  }
  if (!probeOnly && nativePackageLoaded && nativePackageLoaded !== kind) {
    const other = nativePackageLoaded === 'gpu' ? 'tensorflow-gpu' : 'tensorflow';
    return { id, available: false, reason: `skipped: ${other} is already loaded in this process (one libtensorflow per process)` };
  }
  let resolved: string;
  try {
    resolved = require.resolve(pkg);
  } catch {
    return {
      id,
      available: false,
      reason: `not installed (${pkg} is an optional dependency; npm drops it when its install step — the libtensorflow download — fails)`,
    };
  }
  if (probeOnly && nativePackageLoaded !== kind) {
    const probe = await probeNativeOnce(resolved);
    if (!probe.ok) return { id, available: false, reason: explainNativeFailure(kind, new Error(probe.message)) };
  } else {
    try {
      if (!nativePackageLoaded) {
        require(pkg);
        nativePackageLoaded = kind;
      }
    } catch (error) {
      return { id, available: false, reason: explainNativeFailure(kind, error) };
    }
  }
  const where = kind === 'gpu' ? `CUDA on ${gpu.gpus.map((g) => g.name).join(', ')}` : 'native libtensorflow on the CPU';
  return { id, available: true, reason: `${pkg} loaded (${where})` };
}

export type NativeProbe = { ok: true } | { ok: false; message: string };

/** A package that loaded is not asked again (a child process and libtensorflow's load take seconds); one that failed is, as the user may have fixed it. */
const nativeProbes = new Map<string, Promise<NativeProbe>>();

function probeNativeOnce(modulePath: string): Promise<NativeProbe> {
  const known = nativeProbes.get(modulePath);
  if (known) return known;
  const probe = probeNativeInChild(modulePath);
  nativeProbes.set(modulePath, probe);
  void probe.then((result) => {
    if (!result.ok) nativeProbes.delete(modulePath);
  });
  return probe;
}

/** Loading CUDA's libraries can take long on a first run; past this the probe counts as failed. */
const NATIVE_PROBE_TIMEOUT_MS = 60_000;

// CommonJS run by `node -e`: loads the module and answers over IPC, then exits.
const NATIVE_PROBE_SCRIPT = `
let answer;
try { require(process.argv[1]); answer = { ok: true }; }
catch (error) { answer = { ok: false, message: String(error && error.message ? error.message : error) }; }
process.send(answer, () => process.exit(0));
`;

/**
 * Whether a native module loads, asked of a short-lived child process (this executable as plain
 * Node: ELECTRON_RUN_AS_NODE for Electron's), so this process never loads it. Never rejects: a
 * child that crashes (a library built for other CPU instructions dies on load), hangs or cannot
 * start is an answer with the reason.
 */
export function probeNativeInChild(modulePath: string, timeoutMs = NATIVE_PROBE_TIMEOUT_MS): Promise<NativeProbe> {
  return new Promise((resolve) => {
    let answer: NativeProbe | null = null;
    let stderr = '';
    let timedOut = false;
    const child = spawn(process.execPath, ['-e', NATIVE_PROBE_SCRIPT, modulePath], {
      // TF_FORCE_GPU_ALLOW_GROWTH (allowGpuMemoryGrowth) travels in the environment.
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      windowsHide: true,
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    child.on('message', (message: NativeProbe) => {
      answer = message;
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve({ ok: false, message: `could not start a process to load it in: ${error.message}` });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (answer) return resolve(answer);
      const lastLine = stderr.trim().split('\n').at(-1)?.trim();
      const ended = timedOut ? `did not load within ${timeoutMs / 1000} s` : `the process loading it ended with ${signal ?? `exit code ${code}`}`;
      resolve({ ok: false, message: lastLine ? `${ended}: ${lastLine}` : ended });
    });
  });
}

/** Turns a native load error into the action a user can take. */
export function explainNativeFailure(kind: 'gpu' | 'cpu', error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const firstLine = message.split('\n')[0] ?? message;
  const lib = /(lib(?:cudart|cudnn|cublas|cufft|curand|cusolver|cusparse)[\w.]*\.so[\w.]*)/.exec(message)?.[1];
  if (kind === 'gpu' && lib) {
    return `NVIDIA GPU found but ${lib} missing — tfjs-node-gpu needs CUDA 11.2 and cuDNN 8.1`;
  }
  if (/tfjs_binding\.node/.test(message)) {
    return 'installed but its native binding is missing (its install step, which downloads libtensorflow, did not run or failed; run `npm rebuild` where the download works)';
  }
  if (/libtensorflow/.test(message)) {
    return `libtensorflow could not be loaded: ${firstLine}`;
  }
  return `failed to load: ${firstLine}`;
}

/**
 * Our fused WGSL kernels through Dawn's dawn.node. A hardware adapter is used by 'auto'; a
 * software one (SwiftShader, llvmpipe) only when asked for by name: there simd is faster.
 */
async function tryWebGpu(named: boolean): Promise<BackendStatus> {
  const absent = named ? null : noGpuDeviceNode();
  if (absent) return { id: 'webgpu', available: false, reason: absent };
  let node: typeof import('./webgpu-node');
  try {
    node = await import('./webgpu-node');
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    return { id: 'webgpu', available: false, reason: `not installed (the webgpu package, Dawn's dawn.node, is an optional dependency: ${message})` };
  }
  try {
    const adapter = await node.nodeGpuAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return { id: 'webgpu', available: false, reason: 'no WebGPU adapter found (Dawn found no usable Vulkan, Metal or D3D12 driver)' };
    const name = node.adapterName(adapter.info);
    if (node.isSoftwareAdapter(adapter.info) && !named) {
      return { id: 'webgpu', available: false, reason: `only a software adapter (${name}); simd is faster on this CPU — ask for --backend webgpu to use it anyway` };
    }
    return { id: 'webgpu', available: true, reason: `${name}, fused WGSL kernels through Dawn${node.isSoftwareAdapter(adapter.info) ? ' (a software adapter: correct, but slow)' : ''}` };
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    return { id: 'webgpu', available: false, reason: `Dawn failed to start: ${message}` };
  }
}

/**
 * On Linux a GPU shows up as a device node (/dev/dri/renderD*, /dev/nvidia*). Without one, 'auto'
 * does not start Dawn at all: its Vulkan drivers would only find software rasterisers, and say so
 * on stderr. VK_ICD_FILENAMES (a chosen Vulkan driver, e.g. SwiftShader) always starts it.
 */
function noGpuDeviceNode(): string | null {
  if (process.platform !== 'linux' || process.env.VK_ICD_FILENAMES) return null;
  const has = (folder: string, pattern: RegExp) => {
    try {
      return readdirSync(folder).some((name) => pattern.test(name));
    } catch {
      return false;
    }
  };
  if (has('/dev/dri', /^renderD\d+$/) || has('/dev', /^nvidia\d+$/)) return null;
  return 'no GPU device on this machine (no /dev/dri render node, no /dev/nvidia*); --backend webgpu tries Dawn anyway';
}

function trySimd(model?: ModelWidths): BackendStatus {
  const probe = probeSimd();
  if (!probe.available) return { id: 'simd', available: false, reason: probe.reason };
  const problem = model ? simdModelProblem(model) : null;
  if (problem) return { id: 'simd', available: false, reason: `skipped for this model: ${problem}` };
  return { id: 'simd', available: true, reason: `${probe.reason}, one thread per worker` };
}

let wasmConfigured = false;

async function tryWasm(): Promise<BackendStatus> {
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    if (!wasmConfigured) {
      // In Node the .wasm binaries are read from the package's dist folder (asar-unpacked when packaged).
      const dist = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
      wasm.setWasmPaths(dist + path.sep);
      wasmConfigured = true;
    }
    const before = tf.getBackend();
    const ok = await tf.setBackend('wasm');
    if (!ok) return { id: 'wasm', available: false, reason: 'the wasm backend failed to initialise (see the warning above)' };
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    if (before && before !== 'wasm') await tf.setBackend(before);
    return { id: 'wasm', available: true, reason: `WebAssembly${simd ? ' with SIMD' : ' without SIMD (slower)'}, single thread (no wasm threads in Node)` };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { id: 'wasm', available: false, reason: `failed to initialise: ${message.split('\n')[0]}` };
  }
}

async function activate(id: BackendId): Promise<void> {
  if (id === 'simd' || id === 'webgpu') return;
  const ok = await tf.setBackend(TFJS_NAME[id]);
  if (!ok) throw new QuadraError('BACKEND_UNAVAILABLE', `backend '${id}' failed to initialise`);
  await tf.ready();
}

async function capabilities(id: BackendId): Promise<BackendCapabilities> {
  const simd = id === 'simd' ? true : id === 'wasm' ? Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) : id === 'webgpu' ? false : null;
  const threads = id === 'tensorflow' || id === 'tensorflow-gpu' ? os.availableParallelism() : 1;
  return { precisions: id === 'webgpu' ? ['fp32', 'mixed'] : ['fp32'], precisionNote: PRECISION_NOTE, simd, threads };
}

/** Only for tests that switch backends inside one process. */
export function resetBackendSelectionForTests(): void {
  selected = null;
}
