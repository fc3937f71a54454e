import { execFile } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { QuadraError } from '../../src-shared/errors';
import type { GpuInfo, NvidiaSmiStatus } from '../../src-shared/hardware';

/** The columns we ask nvidia-smi for, in the order it prints them. */
export const GPU_QUERY_FIELDS = ['index', 'name', 'uuid', 'memory.total', 'memory.used', 'driver_version'] as const;
export const GPU_QUERY_ARGS: readonly string[] = [
  `--query-gpu=${GPU_QUERY_FIELDS.join(',')}`,
  '--format=csv,noheader,nounits',
];

export const DEFAULT_NVIDIA_SMI_TIMEOUT_MS = 5000;
export const NOT_ON_PATH_REASON = 'nvidia-smi not found on PATH (no NVIDIA driver installed?)';

/** Explicit path to nvidia-smi, for tests and for installs outside PATH. */
export const NVIDIA_SMI_ENV = 'QUADRA_NVIDIA_SMI';

const MAX_OUTPUT_BYTES = 1024 * 1024;

function isRunnableFile(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    // Windows has no execute bit; existence is all that can be checked there.
    if (process.platform !== 'win32') accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Reads PATH the way Windows spells it too (`Path`), since a copied env object is case-sensitive. */
function pathVariable(env: NodeJS.ProcessEnv): string {
  const key = Object.keys(env).find((name) => name.toUpperCase() === 'PATH');
  return (key === undefined ? undefined : env[key]) ?? '';
}

/**
 * Where nvidia-smi is: $QUADRA_NVIDIA_SMI if set (trusted as given, so a wrong path is reported
 * as such when it is run), else the first runnable `nvidia-smi` on PATH; null when there is none.
 */
export function resolveNvidiaSmi(env: NodeJS.ProcessEnv = process.env): string | null {
  const explicit = env[NVIDIA_SMI_ENV]?.trim();
  if (explicit) return explicit;

  const windows = process.platform === 'win32';
  const exe = windows ? 'nvidia-smi.exe' : 'nvidia-smi';
  const candidates = pathVariable(env)
    .split(path.delimiter)
    // Windows PATH entries may be quoted; an empty entry would mean the current directory: skip it.
    .map((dir) => dir.trim().replace(/^"(.*)"$/, '$1'))
    .filter((dir) => dir !== '')
    .map((dir) => path.join(dir, exe));
  if (windows) {
    // DCH drivers install it in System32, which a GUI app's PATH usually has, but not always;
    // older drivers used the NVSMI folder, which was never on PATH.
    const systemRoot = env.SystemRoot ?? env.SYSTEMROOT ?? env.windir ?? 'C:\\Windows';
    candidates.push(path.win32.join(systemRoot, 'System32', exe));
    const programFiles = env.ProgramW6432 ?? env.ProgramFiles ?? 'C:\\Program Files';
    candidates.push(path.win32.join(programFiles, 'NVIDIA Corporation', 'NVSMI', exe));
  }
  return candidates.find(isRunnableFile) ?? null;
}

/** nvidia-smi's spellings of "no value": [N/A], [Not Supported], [Unknown Error], and bare N/A in old drivers. */
export function isMissing(value: string): boolean {
  return value === 'N/A' || /^\[.*\]$/.test(value);
}

/**
 * Parses `nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.used,driver_version
 * --format=csv,noheader,nounits`: one GPU per line, fields separated by ", ", memory in MiB.
 */
export function parseGpuQueryCsv(text: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  text.split(/\r?\n/).forEach((rawLine, lineIndex) => {
    const line = rawLine.trim();
    if (line === '') return;
    const lineNumber = lineIndex + 1;
    const fail = (what: string): never => {
      throw new QuadraError('INVALID_FILE', `nvidia-smi: line ${lineNumber}: ${what}`, { line: lineNumber, text: line });
    };

    const parts = line.split(', ');
    if (parts.length < GPU_QUERY_FIELDS.length) {
      fail(`expected ${GPU_QUERY_FIELDS.length} fields separated by ", " (${GPU_QUERY_FIELDS.join(', ')}), got ${parts.length}`);
    }
    // nvidia-smi does not quote; should a name ever contain ", ", the fixed fields on both sides still place it.
    const [indexText, ...rest] = parts as [string, ...string[]];
    const [uuidText, totalText, usedText, driverText] = rest.slice(-4) as [string, string, string, string];
    const name = rest.slice(0, -4).join(', ');

    const mebibytes = (field: string, value: string): number => {
      if (!/^\d+(\.\d+)?$/.test(value)) fail(`${field} must be a number of MiB, got "${value}"`);
      return Number(value);
    };

    if (!/^\d+$/.test(indexText)) fail(`index must be a whole number, got "${indexText}"`);
    if (name === '') fail('name is empty');
    // Without a memory size a GPU cannot be sized for training; report it rather than guess.
    if (isMissing(totalText)) fail(`memory.total is ${totalText}; expected a number of MiB`);
    if (isMissing(driverText) || driverText === '') fail(`driver_version is "${driverText}"; expected a version`);

    gpus.push({
      index: Number(indexText),
      name,
      uuid: isMissing(uuidText) ? null : uuidText,
      memoryTotalMiB: mebibytes('memory.total', totalText),
      memoryUsedMiB: isMissing(usedText) ? null : mebibytes('memory.used', usedText),
      driverVersion: driverText,
      cudaVersion: null,
    });
  });
  return gpus;
}

/**
 * The CUDA version from plain `nvidia-smi`'s header (`CUDA Version: 12.2`); R610+ drivers print
 * `CUDA UMD Version: 13.3`, and `nvidia-smi -q` puts spaces before the colon.
 */
export function parseCudaVersion(bannerText: string): string | null {
  return /CUDA (?:UMD )?Version\s*:\s*(\d+(?:\.\d+)+)/.exec(bannerText)?.[1] ?? null;
}

type RunResult = { ok: true; stdout: string } | { ok: false; reason: string };

/** The first non-blank line, trimmed: what nvidia-smi's (or the OS's) message says, in one line. */
export function firstLine(text: string): string {
  return text.split(/\r?\n/).map((line) => line.trim()).find((line) => line !== '') ?? '';
}

/** Runs nvidia-smi without a shell; every failure becomes a one-line reason a user can act on. */
function runNvidiaSmi(file: string, args: readonly string[], timeoutMs: number, env: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { encoding: 'utf8', timeout: timeoutMs, env, windowsHide: true, maxBuffer: MAX_OUTPUT_BYTES },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve({ ok: true, stdout });
          return;
        }
        const code: unknown = error.code;
        if (code === 'ENOENT') {
          resolve({ ok: false, reason: `nvidia-smi not found at ${file}` });
        } else if (code === 'EACCES' || code === 'EISDIR' || code === 'ENOEXEC') {
          resolve({ ok: false, reason: `nvidia-smi at ${file} cannot be run (${code})` });
        } else if (error.killed) {
          resolve({ ok: false, reason: `nvidia-smi did not answer within ${timeoutMs} ms (a hung driver?)` });
        } else if (typeof code === 'number') {
          const message = firstLine(stderr) || firstLine(stdout);
          resolve({ ok: false, reason: `nvidia-smi exited with code ${code}${message ? `: ${message}` : ''}` });
        } else if (error.signal) {
          resolve({ ok: false, reason: `nvidia-smi was killed by ${error.signal}` });
        } else {
          resolve({ ok: false, reason: `nvidia-smi could not be run: ${firstLine(error.message)}` });
        }
      },
    );
  });
}

export interface QueryGpusOptions {
  /** nvidia-smi to run; default: resolveNvidiaSmi(env). */
  path?: string;
  timeoutMs?: number;
  /** Used to find nvidia-smi and passed to it. */
  env?: NodeJS.ProcessEnv;
}

/**
 * The NVIDIA GPUs nvidia-smi reports, with the driver's CUDA version. Never throws for a machine
 * without a working NVIDIA driver: a missing binary, a failing or hung nvidia-smi, or output we
 * cannot read all give `available: false` with a one-line reason, and no GPUs.
 */
export async function queryGpus(options: QueryGpusOptions = {}): Promise<{ status: NvidiaSmiStatus; gpus: GpuInfo[] }> {
  const env = options.env ?? process.env;
  const timeoutMs = options.timeoutMs ?? DEFAULT_NVIDIA_SMI_TIMEOUT_MS;
  const unavailable = (reason: string) => ({ status: { available: false as const, reason }, gpus: [] });

  const file = options.path ?? resolveNvidiaSmi(env);
  if (file === null) return unavailable(NOT_ON_PATH_REASON);

  const query = await runNvidiaSmi(file, GPU_QUERY_ARGS, timeoutMs, env);
  if (!query.ok) return unavailable(query.reason);
  let gpus: GpuInfo[];
  try {
    gpus = parseGpuQueryCsv(query.stdout);
  } catch (error) {
    if (error instanceof QuadraError) return unavailable(error.message);
    throw error;
  }

  // The CSV query has no CUDA version field; the banner has it once for the whole driver.
  const banner = await runNvidiaSmi(file, [], timeoutMs, env);
  const cudaVersion = banner.ok ? parseCudaVersion(banner.stdout) : null;
  return { status: { available: true, path: file }, gpus: gpus.map((gpu) => ({ ...gpu, cudaVersion })) };
}
