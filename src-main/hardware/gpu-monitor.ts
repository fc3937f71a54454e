import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { QuadraError } from '../../src-shared/errors';
import type { GpuMonitorStatus, GpuProcessSample, GpuSample, MonitorSample } from '../../src-shared/monitor';
import { CpuUsageSampler } from './cpu-usage';
import { firstLine, isMissing, NOT_ON_PATH_REASON, resolveNvidiaSmi } from './nvidia-smi';

/** The --query-gpu columns of the monitor stream, in the order nvidia-smi prints them. */
export const GPU_SAMPLE_FIELDS = [
  'index',
  'name',
  'uuid',
  'memory.used',
  'memory.total',
  'utilization.gpu',
  'temperature.gpu',
  'power.draw',
  'power.limit',
] as const;

/** The --query-compute-apps columns; `used_memory` is nvidia-smi's documented alias of `used_gpu_memory`. */
export const COMPUTE_APP_FIELDS = ['gpu_uuid', 'pid', 'process_name', 'used_memory'] as const;

const CSV_FORMAT = '--format=csv,noheader,nounits';

/** One long-running nvidia-smi that prints a line per GPU every intervalMs (`-lms`), instead of a process per tick. */
export function gpuSampleArgs(intervalMs: number): string[] {
  return [`--query-gpu=${GPU_SAMPLE_FIELDS.join(',')}`, CSV_FORMAT, '-lms', String(intervalMs)];
}

export function computeAppArgs(intervalMs: number): string[] {
  return [`--query-compute-apps=${COMPUTE_APP_FIELDS.join(',')}`, CSV_FORMAT, '-lms', String(intervalMs)];
}

export const NO_GPU_FOUND = 'no NVIDIA GPU or driver found';

export const DEFAULT_MONITOR_INTERVAL_MS = 1000;
export const DEFAULT_MAX_RESTARTS = 3;
export const DEFAULT_RESTART_DELAY_MS = 1000;

/** How long a killed nvidia-smi gets to exit before SIGKILL (a process stuck in the driver may ignore SIGTERM). */
const KILL_GRACE_MS = 2000;
const MAX_STDERR_CHARS = 4096;
/** A "line" longer than this is not nvidia-smi CSV; drop it rather than buffer without end. */
const MAX_LINE_CHARS = 64 * 1024;

function lineError(line: string, what: string): QuadraError {
  return new QuadraError('INVALID_FILE', `nvidia-smi: ${what} in "${line}"`, { text: line });
}

function numberOrNull(line: string, field: string, value: string): number | null {
  if (isMissing(value)) return null;
  if (!/^\d+(\.\d+)?$/.test(value)) throw lineError(line, `${field} must be a number, got "${value}"`);
  return Number(value);
}

/**
 * One line of `nvidia-smi --query-gpu=index,name,uuid,memory.used,memory.total,utilization.gpu,
 * temperature.gpu,power.draw,power.limit --format=csv,noheader,nounits`. Fields are separated by ", "
 * and never quoted; should a name contain ", ", the fixed fields on both sides still place it.
 */
export function parseGpuSampleLine(line: string): GpuSample {
  const text = line.trim();
  const parts = text.split(', ');
  const count = GPU_SAMPLE_FIELDS.length;
  if (parts.length < count) {
    throw lineError(text, `expected ${count} fields separated by ", " (${GPU_SAMPLE_FIELDS.join(', ')}), got ${parts.length}`);
  }
  const [indexText, ...rest] = parts as [string, ...string[]];
  const fixed = rest.slice(-(count - 2)) as [string, string, string, string, string, string, string];
  const name = rest.slice(0, -(count - 2)).join(', ');
  const [uuidText, usedText, totalText, utilizationText, temperatureText, powerText, powerLimitText] = fixed;

  if (!/^\d+$/.test(indexText)) throw lineError(text, `index must be a whole number, got "${indexText}"`);
  if (name === '') throw lineError(text, 'name is empty');
  return {
    index: Number(indexText),
    name,
    uuid: isMissing(uuidText) ? null : uuidText,
    memoryUsedMiB: numberOrNull(text, 'memory.used', usedText),
    memoryTotalMiB: numberOrNull(text, 'memory.total', totalText),
    utilizationPercent: numberOrNull(text, 'utilization.gpu', utilizationText),
    temperatureC: numberOrNull(text, 'temperature.gpu', temperatureText),
    powerW: numberOrNull(text, 'power.draw', powerText),
    powerLimitW: numberOrNull(text, 'power.limit', powerLimitText),
  };
}

export interface ComputeAppRow {
  gpuUuid: string | null;
  pid: number;
  processName: string;
  /** null where nvidia-smi prints [N/A]: always so on Windows in WDDM mode. */
  usedMemoryMiB: number | null;
}

/**
 * One line of `nvidia-smi --query-compute-apps=gpu_uuid,pid,process_name,used_memory
 * --format=csv,noheader,nounits`. Process names are whatever the process is called (Windows paths
 * have spaces, anything may have ", "), so the name is what lies between pid and memory.
 */
export function parseComputeAppLine(line: string): ComputeAppRow {
  const text = line.trim();
  const parts = text.split(', ');
  const count = COMPUTE_APP_FIELDS.length;
  if (parts.length < count) {
    throw lineError(text, `expected ${count} fields separated by ", " (${COMPUTE_APP_FIELDS.join(', ')}), got ${parts.length}`);
  }
  const [uuidText, pidText] = parts as [string, string];
  const memoryText = parts[parts.length - 1] as string;
  const processName = parts.slice(2, -1).join(', ');
  if (!/^\d+$/.test(pidText)) throw lineError(text, `pid must be a whole number, got "${pidText}"`);
  return {
    gpuUuid: isMissing(uuidText) ? null : uuidText,
    pid: Number(pidText),
    processName,
    usedMemoryMiB: numberOrNull(text, 'used_memory', memoryText),
  };
}

export interface GpuMonitorOptions {
  /** How often samples are emitted and nvidia-smi prints (`-lms`). */
  intervalMs?: number;
  /** nvidia-smi to run; default: resolveNvidiaSmi(env). */
  nvidiaSmiPath?: string;
  /** Used to find nvidia-smi and passed to it. */
  env?: NodeJS.ProcessEnv;
  /** Our worker processes, asked at every sample, to mark them in the GPU process list. */
  ourPids?: () => Iterable<number>;
  /** How often a stopped nvidia-smi is started again before the GPU status becomes `failed`. */
  maxRestarts?: number;
  /** Pause before the first restart; it doubles with every further one. */
  restartDelayMs?: number;
  /** An nvidia-smi that prints no GPU line for this long is killed and counts as a crash. */
  stallTimeoutMs?: number;
}

export type MonitorListener = (sample: MonitorSample) => void;

/** Live samples the workstation turns on while a client watches: GpuMonitor, or a stand-in. */
export interface MonitorSource {
  /** Starts sampling every intervalMs (default: the source's own); a running source asked for another interval restarts at it. */
  start(intervalMs?: number): void;
  stop(): void | Promise<void>;
  onDidSample(listener: MonitorListener): () => void;
}

type StreamKind = 'gpus' | 'apps';

/** One running nvidia-smi -lms process and what it has printed so far. */
interface SmiStream {
  kind: StreamKind;
  child: ChildProcess;
  /** The session it belongs to; events of an older session are ignored. */
  session: number;
  partialLine: string;
  stderr: string;
  /** The first line that did not parse, e.g. nvidia-smi's own error message on stdout. */
  unreadLine: string | null;
  spawnFailed: boolean;
  exited: boolean;
  closed: Promise<void>;
}

function positiveInteger(name: string, value: number, minimum: number): number {
  if (!Number.isInteger(value) || value < minimum) {
    throw new QuadraError('INVALID_ARGUMENT', `GpuMonitor: ${name} must be a whole number ≥ ${minimum}, got ${value}`, { [name]: value });
  }
  return value;
}

/**
 * Live GPU and CPU samples, one per interval. GPU data comes from two long-running `nvidia-smi -lms`
 * processes (GPUs and compute processes); CPU and memory from the os module. Without nvidia-smi the
 * GPU status is `unavailable` and CPU samples go on; an nvidia-smi that exits, fails or hangs is
 * started again after a growing pause, at most maxRestarts times, then the status stays `failed`.
 */
export class GpuMonitor implements MonitorSource {
  #intervalMs: number;
  readonly #maxRestarts: number;
  readonly #restartDelayMs: number;
  readonly #stallTimeoutOption: number | undefined;
  #stallTimeoutMs = 0;
  readonly #env: NodeJS.ProcessEnv;
  readonly #nvidiaSmiPath: string | undefined;
  readonly #ourPids: () => Iterable<number>;
  /** Lines of one nvidia-smi tick arrive within microseconds; a gap this long separates two ticks. */
  #tickGapMs = 0;
  /** nvidia-smi prints nothing at all for a tick with no compute processes, so an old list expires. */
  #processListTtlMs = 0;

  readonly #listeners = new Set<MonitorListener>();
  /** Every child not yet closed, including ones being killed, so stop() can wait for all. */
  readonly #live = new Set<SmiStream>();
  #running = false;
  #timer: NodeJS.Timeout | null = null;
  #restartTimer: NodeJS.Timeout | null = null;
  #file: string | null = null;
  #session = 0;
  #streams: SmiStream[] = [];
  #restarts = 0;
  #status: GpuMonitorStatus = { state: 'starting' };
  #cpu = new CpuUsageSampler();

  #gpuTick: GpuSample[] = [];
  #latestGpus: GpuSample[] = [];
  #lastGpuLineAt = 0;
  #appTick: ComputeAppRow[] = [];
  #lastAppLineAt = 0;

  constructor(options: GpuMonitorOptions = {}) {
    this.#intervalMs = positiveInteger('intervalMs', options.intervalMs ?? DEFAULT_MONITOR_INTERVAL_MS, 10);
    this.#maxRestarts = positiveInteger('maxRestarts', options.maxRestarts ?? DEFAULT_MAX_RESTARTS, 0);
    this.#restartDelayMs = positiveInteger('restartDelayMs', options.restartDelayMs ?? DEFAULT_RESTART_DELAY_MS, 0);
    this.#stallTimeoutOption = options.stallTimeoutMs === undefined ? undefined : positiveInteger('stallTimeoutMs', options.stallTimeoutMs, 1);
    this.#env = options.env ?? process.env;
    this.#nvidiaSmiPath = options.nvidiaSmiPath;
    this.#ourPids = options.ourPids ?? (() => []);
    this.#setInterval(this.#intervalMs);
  }

  /** The interval and the timings that follow from it. */
  #setInterval(intervalMs: number): void {
    this.#intervalMs = intervalMs;
    this.#stallTimeoutMs = this.#stallTimeoutOption ?? Math.max(10_000, 10 * intervalMs);
    this.#tickGapMs = Math.max(20, Math.min(200, intervalMs / 4));
    this.#processListTtlMs = 2 * intervalMs + 500;
  }

  get gpuStatus(): GpuMonitorStatus {
    return this.#status;
  }

  /** Calls listener with every sample until the returned function is called. */
  onDidSample(listener: MonitorListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Starts sampling every intervalMs (default: the current interval); does nothing if already
   * running at that interval, and restarts nvidia-smi at a new one. A new start gets a fresh
   * restart budget.
   */
  start(intervalMs: number = this.#intervalMs): void {
    positiveInteger('intervalMs', intervalMs, 10);
    if (this.#running) {
      if (intervalMs === this.#intervalMs) return;
      void this.stop();
    }
    this.#setInterval(intervalMs);
    this.#running = true;
    this.#restarts = 0;
    this.#status = { state: 'starting' };
    this.#cpu = new CpuUsageSampler();
    this.#timer = setInterval(() => this.#emitSample(), this.#intervalMs);

    this.#file = this.#nvidiaSmiPath ?? resolveNvidiaSmi(this.#env);
    if (this.#file === null) {
      this.#status = { state: 'unavailable', reason: `${NO_GPU_FOUND} (${NOT_ON_PATH_REASON})` };
      return;
    }
    this.#startSession();
  }

  /** Stops sampling and kills nvidia-smi; resolves once every child has exited. Safe to call repeatedly. */
  stop(): Promise<void> {
    if (this.#running) {
      this.#running = false;
      if (this.#timer !== null) clearInterval(this.#timer);
      if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
      this.#timer = null;
      this.#restartTimer = null;
      this.#endStreams();
    }
    return Promise.all([...this.#live].map((stream) => stream.closed)).then(() => undefined);
  }

  #startSession(): void {
    const file = this.#file;
    if (file === null) return;
    this.#session += 1;
    // The watchdog counts from the start, so an nvidia-smi that never prints is caught too.
    this.#lastGpuLineAt = Date.now();
    try {
      for (const kind of ['gpus', 'apps'] as const) this.#streams.push(this.#spawnStream(file, kind));
    } catch (error) {
      // spawn throws only for arguments it rejects outright (e.g. EINVAL on Windows); ENOENT and the like arrive as 'error' events.
      this.#endSession(`nvidia-smi could not be run: ${firstLine(error instanceof Error ? error.message : String(error))}`, 'crash');
    }
  }

  #spawnStream(file: string, kind: StreamKind): SmiStream {
    const args = kind === 'gpus' ? gpuSampleArgs(this.#intervalMs) : computeAppArgs(this.#intervalMs);
    const child = spawn(file, args, { env: this.#env, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    let markClosed!: () => void;
    const stream: SmiStream = {
      kind,
      child,
      session: this.#session,
      partialLine: '',
      stderr: '',
      unreadLine: null,
      spawnFailed: false,
      exited: false,
      closed: new Promise((resolve) => {
        markClosed = resolve;
      }),
    };
    this.#live.add(stream);
    const current = () => this.#running && stream.session === this.#session;

    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      if (!current()) return;
      const lines = (stream.partialLine + chunk).split('\n');
      stream.partialLine = lines.pop() ?? '';
      if (stream.partialLine.length > MAX_LINE_CHARS) {
        stream.unreadLine ??= `${stream.partialLine.slice(0, 200)}…`;
        stream.partialLine = '';
      }
      for (const line of lines) this.#onLine(stream, line);
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      if (stream.stderr.length < MAX_STDERR_CHARS) stream.stderr += chunk;
    });

    child.on('error', (error: NodeJS.ErrnoException) => {
      if (child.pid === undefined) stream.spawnFailed = true;
      if (!current()) return;
      const code = error.code;
      if (code === 'ENOENT') {
        this.#endSession(`nvidia-smi not found at ${file}`, 'unavailable');
      } else if (code === 'EACCES' || code === 'EISDIR' || code === 'ENOEXEC') {
        this.#endSession(`nvidia-smi at ${file} cannot be run (${code})`, 'unavailable');
      } else {
        this.#endSession(`nvidia-smi could not be run: ${firstLine(error.message)}`, 'crash');
      }
    });
    child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
      stream.exited = true;
      this.#live.delete(stream);
      markClosed();
      if (!current() || stream.spawnFailed) return;
      if (stream.partialLine.trim() !== '') this.#onLine(stream, stream.partialLine);
      const message = stream.unreadLine ?? firstLine(stream.stderr);
      const reason =
        signal !== null
          ? `nvidia-smi was killed by ${signal}`
          : `nvidia-smi exited with code ${code ?? 'unknown'}${message ? `: ${message}` : ''}`;
      this.#endSession(reason, 'crash');
    });
    return stream;
  }

  #onLine(stream: SmiStream, rawLine: string): void {
    const line = rawLine.trim();
    if (line === '') return;
    try {
      if (stream.kind === 'gpus') this.#onGpuLine(parseGpuSampleLine(line));
      else this.#onAppLine(parseComputeAppLine(line));
    } catch (error) {
      if (!(error instanceof QuadraError)) throw error;
      // Usually nvidia-smi's own message (the driver failure is printed on stdout); it becomes the reason if it exits.
      stream.unreadLine ??= line;
    }
  }

  /** A tick is one line per GPU in index order: a lower or equal index, or a pause, starts the next tick. */
  #onGpuLine(gpu: GpuSample): void {
    const now = Date.now();
    const last = this.#gpuTick[this.#gpuTick.length - 1];
    if (last !== undefined && (gpu.index <= last.index || now - this.#lastGpuLineAt >= this.#tickGapMs)) this.#completeGpuTick();
    this.#gpuTick.push(gpu);
    this.#lastGpuLineAt = now;
  }

  #completeGpuTick(): void {
    if (this.#gpuTick.length === 0) return;
    this.#latestGpus = this.#gpuTick;
    this.#gpuTick = [];
    if (this.#status.state !== 'ok') this.#status = { state: 'ok' };
  }

  /** Processes have no index to wrap; a pause, or a process seen again, starts the next tick. */
  #onAppLine(row: ComputeAppRow): void {
    const now = Date.now();
    const seenAgain = this.#appTick.some((other) => other.pid === row.pid && other.gpuUuid === row.gpuUuid);
    if (seenAgain || now - this.#lastAppLineAt >= this.#tickGapMs) this.#appTick = [];
    this.#appTick.push(row);
    this.#lastAppLineAt = now;
  }

  /** Kills the current session's children; a crash restarts them after a pause or gives up, `unavailable` never retries. */
  #endSession(reason: string, kind: 'crash' | 'unavailable'): void {
    this.#endStreams();
    if (kind === 'unavailable') {
      this.#status = { state: 'unavailable', reason: `${NO_GPU_FOUND} (${reason})` };
      return;
    }
    if (this.#restarts >= this.#maxRestarts) {
      const gaveUp = this.#maxRestarts === 0 ? '' : ` (gave up after ${this.#restarts} restarts)`;
      this.#status = { state: 'failed', reason: `${reason}${gaveUp}` };
      return;
    }
    this.#restarts += 1;
    this.#status = { state: 'restarting', reason, restart: this.#restarts, maxRestarts: this.#maxRestarts };
    const delay = this.#restartDelayMs * 2 ** (this.#restarts - 1);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#running) this.#startSession();
    }, delay);
  }

  #endStreams(): void {
    // A new session number makes every late event of the old children a no-op.
    this.#session += 1;
    for (const stream of this.#streams) {
      if (stream.exited || stream.spawnFailed) continue;
      stream.child.kill('SIGTERM');
      const escalate = setTimeout(() => {
        if (!stream.exited) stream.child.kill('SIGKILL');
      }, KILL_GRACE_MS);
      escalate.unref();
      void stream.closed.then(() => clearTimeout(escalate));
    }
    this.#streams = [];
    this.#gpuTick = [];
    this.#latestGpus = [];
    this.#appTick = [];
    this.#lastAppLineAt = 0;
  }

  #emitSample(): void {
    const now = Date.now();
    // The last tick's lines are complete once nvidia-smi has paused after them.
    if (this.#gpuTick.length > 0 && now - this.#lastGpuLineAt >= this.#tickGapMs) this.#completeGpuTick();
    if (this.#streams.length > 0 && now - this.#lastGpuLineAt > this.#stallTimeoutMs) {
      this.#endSession(`nvidia-smi printed no GPU line for ${this.#stallTimeoutMs} ms (a hung driver?)`, 'crash');
    }

    const cpu = this.#cpu.sample();

    const ok = this.#status.state === 'ok';
    const gpus = ok ? this.#latestGpus : [];
    const processes = ok && now - this.#lastAppLineAt <= this.#processListTtlMs ? this.#processSamples(gpus) : [];
    const sample: MonitorSample = {
      time: now,
      cpu,
      memory: { totalBytes: os.totalmem(), freeBytes: os.freemem() },
      gpus,
      processes,
      gpuStatus: this.#status,
    };
    for (const listener of [...this.#listeners]) listener(sample);
  }

  #processSamples(gpus: readonly GpuSample[]): GpuProcessSample[] {
    const indexByUuid = new Map<string, number>();
    for (const gpu of gpus) if (gpu.uuid !== null) indexByUuid.set(gpu.uuid, gpu.index);
    const ours = new Set(this.#ourPids());
    return this.#appTick.map((row) => ({
      gpuIndex: row.gpuUuid === null ? null : (indexByUuid.get(row.gpuUuid) ?? null),
      gpuUuid: row.gpuUuid,
      pid: row.pid,
      processName: row.processName,
      usedMemoryMiB: row.usedMemoryMiB,
      ours: ours.has(row.pid),
    }));
  }
}
