import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { SpikeGradient } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import type { ThroughputSpread } from '../../src-shared/records';

/**
 * PyTorch beside us: runs bench/pytorch-reference.py (the same model, batch and gradient mode,
 * timed the same way as `quadra bench`) in a Python that can import torch, and reads its one JSON
 * line. $QUADRA_PYTHON, when set, is the only Python tried (an explicit choice is never quietly
 * replaced by another torch); otherwise `python3` on PATH, then Debian's /usr/bin/python3. When
 * none imports torch, the error names each one tried and why it failed.
 */

/** Pythons tried after `python3` on PATH (when $QUADRA_PYTHON is not set). */
export const SYSTEM_PYTHONS: readonly string[] = ['/usr/bin/python3'];
const PROBE_TIMEOUT_MS = 60_000;
/** A suite's default; `quadra bench` passes its own. Large batches on a slow CPU take minutes. */
export const DEFAULT_PYTORCH_TIMEOUT_MS = 30 * 60_000;
const INSTALL_HINT = "install PyTorch (pip install torch, or Debian's python3-torch), or set QUADRA_PYTHON to a Python that has it";

export class PytorchUnavailableError extends QuadraError {
  constructor(message: string, tried: PythonTried[]) {
    super('BACKEND_UNAVAILABLE', message, { tried });
    this.name = 'PytorchUnavailableError';
  }
}

/** The script exited with an error (argparse's refusals included: their message is kept). */
export class PytorchCrashError extends QuadraError {
  constructor(message: string, details: Record<string, unknown>) {
    super('INTERNAL', message, details);
    this.name = 'PytorchCrashError';
  }
}

export class PytorchTimeoutError extends QuadraError {
  constructor(message: string, details: Record<string, unknown>) {
    super('INTERNAL', message, details);
    this.name = 'PytorchTimeoutError';
  }
}

/** The script finished but did not print the JSON object it promises. */
export class PytorchOutputError extends QuadraError {
  constructor(message: string, details: Record<string, unknown>) {
    super('INTERNAL', message, details);
    this.name = 'PytorchOutputError';
  }
}

export interface PythonTried {
  /** How it was found, e.g. "$QUADRA_PYTHON (/opt/py/bin/python3)". */
  label: string;
  problem: string;
}

export type PytorchProbe =
  | { available: true; python: string; torch: string; cuda: boolean; gpu: string | null; cores: number; reason: string }
  | { available: false; reason: string; tried: PythonTried[] };

export interface FindPythonOptions {
  /** Where QUADRA_PYTHON and PATH are read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Tried last (default SYSTEM_PYTHONS); tests replace it. */
  systemPythons?: readonly string[];
}

const ProbeSchema = z.object({ torch: z.string(), cuda: z.boolean(), gpu: z.string().nullable(), cores: z.number().int().min(1) });

// Exits 1 with Python's own ModuleNotFoundError line when torch is missing.
const PROBE_SCRIPT = `
import json, os, torch
cuda = torch.cuda.is_available()
cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
print(json.dumps({"torch": torch.__version__, "cuda": cuda, "gpu": torch.cuda.get_device_name() if cuda else None, "cores": cores}))
`;

/** The first Python that imports torch, with torch's version and whether it sees a CUDA GPU. */
export async function probePytorch(options: FindPythonOptions = {}): Promise<PytorchProbe> {
  const tried: PythonTried[] = [];
  for (const candidate of pythonCandidates(options)) {
    if ('problem' in candidate) {
      tried.push({ label: candidate.label, problem: candidate.problem });
      continue;
    }
    const run = await execute(candidate.command, ['-c', PROBE_SCRIPT], { timeoutMs: PROBE_TIMEOUT_MS, env: options.env ?? process.env });
    const parsed = run.error ? null : ProbeSchema.safeParse(lastJsonLine(run.stdout));
    if (parsed?.success) {
      const p = parsed.data;
      const where = p.cuda ? `CUDA on ${p.gpu}` : `CPU, ${p.cores} core${p.cores === 1 ? '' : 's'}`;
      return { available: true, python: candidate.command, ...p, reason: `torch ${p.torch} in ${candidate.label}; ${where}` };
    }
    tried.push({ label: candidate.label, problem: run.error ? describeFailure(run, PROBE_TIMEOUT_MS) : 'printed no torch version' });
  }
  const list = tried.map((t) => `${t.label}: ${t.problem}`).join('; ');
  const none = tried.length === 1 ? 'it cannot import torch' : 'none of them can import torch';
  return { available: false, tried, reason: `no Python with PyTorch found (tried ${list}); ${none}: ${INSTALL_HINT}` };
}

type Candidate = { label: string; command: string } | { label: string; problem: string };

function pythonCandidates({ env = process.env, systemPythons = SYSTEM_PYTHONS }: FindPythonOptions): Candidate[] {
  const candidates: Candidate[] = [];
  const seen = new Set<string>();
  const add = (label: string, command: string) => {
    if (seen.has(command)) return;
    seen.add(command);
    candidates.push({ label, command });
  };
  const chosen = env.QUADRA_PYTHON?.trim();
  if (chosen) return [{ label: `$QUADRA_PYTHON (${chosen})`, command: chosen }];
  const onPath = findOnPath('python3', env.PATH ?? '');
  if (onPath) add(`python3 on PATH (${onPath})`, onPath);
  else candidates.push({ label: 'python3 on PATH', problem: 'not found' });
  for (const system of systemPythons) {
    if (existsSync(system)) add(system, system);
    else candidates.push({ label: system, problem: 'not found' });
  }
  return candidates;
}

function findOnPath(name: string, searchPath: string): string | null {
  for (const dir of searchPath.split(path.delimiter)) {
    if (dir === '') continue;
    const file = path.join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

/** bench/pytorch-reference.py: in the checkout, next to the app (asar-unpacked), or in the GPU bundle. */
export function referenceScript(env: NodeJS.ProcessEnv = process.env): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // src-main/bench and dist/electron (or dist/cli) are both two folders below the root.
  const inRoot = path.resolve(here, '../../bench/pytorch-reference.py');
  const candidates = [
    ...(env.QUADRA_PYTORCH_SCRIPT ? [path.resolve(env.QUADRA_PYTORCH_SCRIPT)] : []),
    inRoot.replace(`app.asar${path.sep}`, `app.asar.unpacked${path.sep}`),
    inRoot,
    // The GPU bundle keeps the script at its top (bench/gpu-bundle/build.mjs).
    path.resolve(here, '../../pytorch-reference.py'),
  ];
  const found = candidates.find((file) => existsSync(file));
  if (!found) throw new QuadraError('NOT_FOUND', `bench/pytorch-reference.py not found (looked at ${[...new Set(candidates)].join(', ')}); QUADRA_PYTORCH_SCRIPT may point at it`);
  return found;
}

export interface PytorchBenchOptions extends FindPythonOptions {
  batchSize: number;
  spikeGradient: SpikeGradient;
  fieldSize?: number;
  iterations: number;
  repeats: number;
  warmup: number;
  /** 'mixed' is float16 autocast with a GradScaler: CUDA only. */
  precision?: 'fp32' | 'mixed';
  /** A probe already made (the service keeps one); otherwise Python is found first. */
  probe?: PytorchProbe;
  timeoutMs?: number;
}

export interface PytorchBenchResult {
  python: string;
  script: string;
  torch: string;
  blas: string;
  /** The thread count used: the fastest of those tried on the CPU, torch's default on CUDA. */
  threads: number;
  threadTrials: Array<{ threads: number; trainSamplesPerSec: number }>;
  device: 'cpu' | 'cuda';
  gpu: string | null;
  cuda: string | null;
  precision: 'fp32' | 'mixed';
  batchSize: number;
  fieldSize: number;
  spikeGradient: SpikeGradient;
  iterations: number;
  repeats: number;
  warmup: number;
  trainSamplesPerSec: ThroughputSpread;
  forwardSamplesPerSec: ThroughputSpread;
  msPerTrainStep: ThroughputSpread;
  msPerForward: ThroughputSpread;
  cpu: string;
}

const spread = z.object({ median: z.number().finite(), min: z.number().finite(), max: z.number().finite() });
const ScriptOutput = z.object({
  torch: z.string(),
  blas: z.string(),
  threads: z.number().int().min(1),
  threadTrials: z.array(z.object({ threads: z.number().int(), trainSamplesPerSec: z.number() })).optional(),
  batchSize: z.number().int(),
  fieldSize: z.number().int(),
  spikeGradient: z.enum(['surrogate', 'none']),
  iterations: z.number().int(),
  repeats: z.number().int(),
  warmup: z.number().int(),
  trainSamplesPerSec: spread,
  forwardSamplesPerSec: spread,
  msPerTrainStep: spread,
  msPerForward: spread,
  cpu: z.string(),
  device: z.literal('cuda').optional(),
  gpu: z.string().optional(),
  cuda: z.string().nullable().optional(),
});

/**
 * Runs the reference script with the fastest thread count (`--threads auto`), on CUDA where torch
 * sees a GPU. Throws PytorchUnavailableError (no Python with torch), PytorchCrashError,
 * PytorchTimeoutError or PytorchOutputError.
 */
export async function runPytorchBench(options: PytorchBenchOptions): Promise<PytorchBenchResult> {
  const probe = options.probe ?? (await probePytorch(options));
  if (!probe.available) throw new PytorchUnavailableError(probe.reason, probe.tried);
  const precision = options.precision ?? 'fp32';
  if (precision === 'mixed' && !probe.cuda) {
    throw new QuadraError('UNSUPPORTED', `precision 'mixed' on pytorch is torch.autocast float16 on CUDA; torch ${probe.torch} here sees no CUDA GPU`);
  }
  const script = referenceScript(options.env);
  const args = [
    script,
    '--batch-size', String(options.batchSize),
    '--spike-gradient', options.spikeGradient,
    '--field-size', String(options.fieldSize ?? 100),
    '--iterations', String(options.iterations),
    '--repeats', String(options.repeats),
    '--warmup', String(options.warmup),
    '--threads', 'auto',
    '--device', probe.cuda ? 'cuda' : 'cpu',
    ...(precision === 'mixed' ? ['--amp'] : []),
    '--json',
  ];
  const timeoutMs = options.timeoutMs ?? DEFAULT_PYTORCH_TIMEOUT_MS;
  const run = await execute(probe.python, args, { timeoutMs, env: options.env ?? process.env });
  const details = { python: probe.python, args, stderr: tail(run.stderr, 2_000) };
  const what = `bench/pytorch-reference.py (${probe.python}, batch ${options.batchSize})`;
  if (run.error?.timedOut) {
    throw new PytorchTimeoutError(`${what} did not finish within ${Math.round(timeoutMs / 1000)} s (${options.repeats} × ${options.iterations} steps after ${options.warmup} warm-up) and was stopped; try fewer iterations or a smaller batch`, details);
  }
  if (run.error) throw new PytorchCrashError(`${what} failed: ${describeFailure(run, timeoutMs)}`, { ...details, exitCode: run.error.exitCode, signal: run.error.signal });
  const parsed = ScriptOutput.safeParse(lastJsonLine(run.stdout));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new PytorchOutputError(`${what} printed no benchmark result (${issue ? `${issue.path.join('.') || 'output'}: ${issue.message}` : 'unreadable output'}): ${tail(run.stdout, 300) || 'nothing on stdout'}`, { ...details, stdout: tail(run.stdout, 2_000) });
  }
  const out = parsed.data;
  return {
    python: probe.python,
    script,
    torch: out.torch,
    blas: out.blas,
    threads: out.threads,
    threadTrials: out.threadTrials ?? [],
    device: out.device ?? 'cpu',
    gpu: out.gpu ?? null,
    cuda: out.cuda ?? null,
    precision,
    batchSize: out.batchSize,
    fieldSize: out.fieldSize,
    spikeGradient: out.spikeGradient,
    iterations: out.iterations,
    repeats: out.repeats,
    warmup: out.warmup,
    trainSamplesPerSec: out.trainSamplesPerSec,
    forwardSamplesPerSec: out.forwardSamplesPerSec,
    msPerTrainStep: out.msPerTrainStep,
    msPerForward: out.msPerForward,
    cpu: out.cpu,
  };
}

/** "2 (fastest of 1, 2)" or "8 (torch default)": how the thread count came about. */
export function describeThreads(result: Pick<PytorchBenchResult, 'threads' | 'threadTrials'>): string {
  return result.threadTrials.length > 0 ? `${result.threads} (fastest of ${result.threadTrials.map((t) => t.threads).join(', ')})` : `${result.threads} (torch default)`;
}

/**
 * The fingerprint fields a PyTorch result adds to the machine's: torch, its BLAS, threads, device.
 * Not the Python's path: results are exported and shared, and a virtualenv's path names its user.
 */
export function pytorchFingerprint(result: PytorchBenchResult): Record<string, string> {
  return {
    torch: result.torch,
    blas: result.blas,
    threads: describeThreads(result),
    device: result.device === 'cuda' ? `cuda (${result.gpu ?? 'GPU'}, CUDA ${result.cuda ?? '?'})` : 'cpu',
  };
}

interface Execution {
  stdout: string;
  stderr: string;
  error: { timedOut: boolean; exitCode: number | null; signal: string | null; message: string } | null;
}

function execute(command: string, args: string[], { timeoutMs, env }: { timeoutMs: number; env: NodeJS.ProcessEnv }): Promise<Execution> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, env, windowsHide: true }, (error, stdout, stderr) => {
      if (!error) return resolve({ stdout, stderr, error: null });
      const e = error as NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null; code?: number | string | null };
      resolve({
        stdout,
        stderr,
        error: {
          timedOut: Boolean(e.killed) && e.signal === 'SIGKILL',
          exitCode: typeof e.code === 'number' ? e.code : null,
          signal: e.signal ?? null,
          message: typeof e.code === 'string' ? `${e.code}: ${e.message}` : e.message,
        },
      });
    });
  });
}

/** Why a Python run failed, in one line: not found, timed out, or the last line of its stderr. */
function describeFailure(run: Execution, timeoutMs: number): string {
  const error = run.error!;
  if (error.message.startsWith('ENOENT')) return 'not found';
  if (error.message.startsWith('EACCES')) return 'not executable';
  if (error.timedOut) return `no answer within ${Math.round(timeoutMs / 1000)} s`;
  const last = run.stderr.trim().split('\n').pop()?.trim();
  if (last) return last;
  return error.signal ? `killed by ${error.signal}` : `exit code ${error.exitCode ?? '?'}`;
}

function lastJsonLine(stdout: string): unknown {
  const line = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

function tail(text: string, chars: number): string {
  const trimmed = text.trim();
  return trimmed.length <= chars ? trimmed : `…${trimmed.slice(-chars)}`;
}
