import { z } from 'zod';
import { BENCHMARK_BACKENDS, BENCHMARK_SUITE_LIMITS, type PytorchAvailability } from './benchmarks';
import { SPIKE_GRADIENTS } from './engine-config';
import { QuadraError, toErrorData, type ErrorData } from './errors';
import type { HardwareInfo } from './hardware';
import type { MonitorSample } from './monitor';
import type { RunProgress } from './progress';
import type { BenchmarkResultRecord, BenchmarkSuiteRecord, CheckpointRecord, DatasetRecord, MetricPoint, RunRecord } from './records';
import { StartRunSchema } from './run-config';

/**
 * The one contract between the workstation's services and every client (DESIGN.md §2, STYLE.md
 * "One contract, two ends"): the Electron preload bridge, the main-process handler table, the
 * serve-mode WebSocket server and the renderer's clients are all typed by WorkstationApi, and
 * every request is validated against API_REQUESTS before a handler sees it.
 */

const id = z.number().int().min(1);

/** What controlRun asks of a live run. */
export const RUN_CONTROL_ACTIONS = ['pause', 'resume', 'cancel'] as const;
export type RunControlAction = (typeof RUN_CONTROL_ACTIONS)[number];

/** The monitor intervals a client may ask for, and the one it gets when it names none. */
export const MIN_MONITOR_INTERVAL_MS = 250;
export const MAX_MONITOR_INTERVAL_MS = 10_000;
export const DEFAULT_MONITOR_INTERVAL_MS = 1000;
const bytes = z.instanceof(Uint8Array);
const suiteNumber = (field: keyof typeof BENCHMARK_SUITE_LIMITS) => z.number().int().min(BENCHMARK_SUITE_LIMITS[field].min).max(BENCHMARK_SUITE_LIMITS[field].max);
/** An opaque id from serve mode's `POST /upload`; the server alone knows where its file lies. */
export const UPLOAD_ID_PATTERN = /^[0-9a-f]{32}$/;
const uploadId = z.string().regex(UPLOAD_ID_PATTERN, 'expected the id answered by POST /upload (32 hex digits)');
/**
 * A file's contents arrive as `bytes` (Electron IPC: structured clone passes a Uint8Array without
 * copies) or as `uploadId` (serve mode: the file was streamed by HTTP first), exactly one of them.
 */
const ONE_FILE = {
  check: (request: { bytes?: unknown; uploadId?: unknown }) => (request.bytes === undefined) !== (request.uploadId === undefined),
  message: { message: 'give exactly one of bytes (the file itself) or uploadId (from POST /upload)', path: ['bytes'] },
};

export const API_REQUESTS = {
  getHardware: z.object({}),
  listDatasets: z.object({}),
  /** Validates a file completely and returns its shape, first rows and the width question, importing nothing. */
  previewDataset: z
    .object({ fileName: z.string().min(1), bytes: bytes.optional(), uploadId: uploadId.optional(), fieldSize: z.number().int().min(1).optional() })
    .refine(ONE_FILE.check, ONE_FILE.message),
  importDataset: z
    .object({ fileName: z.string().min(1), bytes: bytes.optional(), uploadId: uploadId.optional(), name: z.string().min(1).max(200).optional(), fieldSize: z.number().int().min(1).optional() })
    .refine(ONE_FILE.check, ONE_FILE.message),
  startRun: StartRunSchema,
  listRuns: z.object({ limit: z.number().int().min(1).max(100_000).optional() }),
  getRun: z.object({ runId: id }),
  getMetrics: z.object({ runId: id, fromStep: z.number().int().min(0).optional(), toStep: z.number().int().min(0).optional(), maxPoints: z.number().int().min(10).max(100_000).optional() }),
  /**
   * A run trained by another process (`quadra train`, another workstation) gets the request through
   * the database and applies it within a second; refused for a run that is not live anywhere.
   */
  controlRun: z.object({ runId: id, action: z.enum(RUN_CONTROL_ACTIONS) }),
  resumeRun: z.object({ runId: id, fromCheckpointId: id.optional() }),
  listCheckpoints: z.object({ runId: id }),
  /** torchrun comes back as one .zip of its folder. */
  exportCheckpoint: z.object({ checkpointId: id, format: z.enum(['safetensors', 'pth', 'onnx', 'torchrun']).optional(), fp16: z.boolean().optional() }),
  importCheckpoint: z
    .object({ fileName: z.string().min(1), bytes: bytes.optional(), uploadId: uploadId.optional(), name: z.string().max(200).optional() })
    .refine(ONE_FILE.check, ONE_FILE.message),
  runBenchmarkSuite: z.object({
    name: z.string().min(1).max(200),
    /** Our backends and 'pytorch'; worker counts do not apply to pytorch (see suiteConfigurations). */
    backends: z.array(z.enum(BENCHMARK_BACKENDS)).min(1),
    workerCounts: z.array(suiteNumber('workers')).min(1),
    batchSizes: z.array(suiteNumber('batchSize')).min(1),
    spikeGradient: z.enum(SPIKE_GRADIENTS).optional(),
    precision: z.enum(['fp32', 'mixed']).optional(),
    warmup: suiteNumber('warmup').optional(),
    iterations: suiteNumber('iterations').optional(),
    repeats: suiteNumber('repeats').optional(),
  }),
  /** Whether a Python with torch is found, for the suite form (imports torch once: about a second). */
  getPytorchAvailability: z.object({}),
  listBenchmarkSuites: z.object({}),
  getBenchmarkResults: z.object({ suiteId: id }),
  /** For the calling client only (a browser tab, an app window): each has its own switch and interval (default 1000 ms). */
  setMonitoring: z.object({ enabled: z.boolean(), intervalMs: z.number().int().min(MIN_MONITOR_INTERVAL_MS).max(MAX_MONITOR_INTERVAL_MS).optional() }),
} as const;

export type ApiMethod = keyof typeof API_REQUESTS;
export type ApiRequest<M extends ApiMethod> = z.input<(typeof API_REQUESTS)[M]>;

export interface HardwareReport {
  hardware: HardwareInfo;
  backends: Array<{ id: string; available: boolean; reason: string }>;
  recommended: { batchSize: number; workers: number; mode: string; reasons: Record<string, string> };
}

export interface DatasetPreview {
  rows: number;
  width: number;
  kind: DatasetRecord['kind'];
  firstRows: number[][];
  /** Set when the width differs from the requested field size: the wizard offers to adopt it. */
  widthMismatch: { width: number; fieldSize: number } | null;
}

export interface RunDetail {
  run: RunRecord;
  checkpoints: CheckpointRecord[];
}

export interface ExportedFile {
  fileName: string;
  bytes: Uint8Array;
}

/** Every method, with its result. Requests are the zod schemas' input types. */
export interface WorkstationApi {
  getHardware(request: ApiRequest<'getHardware'>): Promise<HardwareReport>;
  listDatasets(request: ApiRequest<'listDatasets'>): Promise<DatasetRecord[]>;
  previewDataset(request: ApiRequest<'previewDataset'>): Promise<DatasetPreview>;
  importDataset(request: ApiRequest<'importDataset'>): Promise<DatasetRecord>;
  startRun(request: ApiRequest<'startRun'>): Promise<{ runId: number }>;
  listRuns(request: ApiRequest<'listRuns'>): Promise<RunRecord[]>;
  getRun(request: ApiRequest<'getRun'>): Promise<RunDetail>;
  getMetrics(request: ApiRequest<'getMetrics'>): Promise<MetricPoint[]>;
  controlRun(request: ApiRequest<'controlRun'>): Promise<RunRecord>;
  resumeRun(request: ApiRequest<'resumeRun'>): Promise<{ runId: number }>;
  listCheckpoints(request: ApiRequest<'listCheckpoints'>): Promise<CheckpointRecord[]>;
  exportCheckpoint(request: ApiRequest<'exportCheckpoint'>): Promise<ExportedFile>;
  importCheckpoint(request: ApiRequest<'importCheckpoint'>): Promise<{ runId: number; checkpointId: number }>;
  runBenchmarkSuite(request: ApiRequest<'runBenchmarkSuite'>): Promise<{ suiteId: number }>;
  getPytorchAvailability(request: ApiRequest<'getPytorchAvailability'>): Promise<PytorchAvailability>;
  listBenchmarkSuites(request: ApiRequest<'listBenchmarkSuites'>): Promise<BenchmarkSuiteRecord[]>;
  getBenchmarkResults(request: ApiRequest<'getBenchmarkResults'>): Promise<BenchmarkResultRecord[]>;
  /** Whether this client now receives samples, and at what interval (null when it does not). */
  setMonitoring(request: ApiRequest<'setMonitoring'>): Promise<{ enabled: boolean; intervalMs: number | null }>;
}

/** Compile-time check that the schema table and the interface list the same methods. */
type SameKeys<A, B> = [Exclude<keyof A, keyof B>, Exclude<keyof B, keyof A>] extends [never, never] ? true : never;
export const API_METHODS_MATCH: SameKeys<WorkstationApi, typeof API_REQUESTS> = true;

/** Events pushed to clients, named like VS Code's onDidX. Payloads are plain data. */
export interface WorkstationEvents {
  /** Live training progress, 2–10 a second per running run (see RunProgress). */
  onDidProgress: RunProgress;
  /** A run changed status or summary. */
  onDidChangeRun: RunRecord;
  /** One monitor tick: only to the clients that turned monitoring on, each at its own interval. */
  onDidSampleMonitor: MonitorSample;
  /** `error` names why the configuration in `label` failed (it is then left out of the results). */
  onDidProgressBenchmark: { suiteId: number; done: number; total: number; label: string; error?: string };
}

export type { RunProgress, WorkerProgress } from './progress';

export type ApiEvent = keyof WorkstationEvents;

/**
 * The client a call came from (a WebSocket session, an app window), as the server end knows it: for
 * what the workstation keeps per client (monitoring). Transports make one per client and pass it
 * to dispatchCall; the renderer never sees it.
 */
export interface ApiCaller {
  /** Sends an event to this client alone. */
  send<E extends ApiEvent>(event: E, payload: WorkstationEvents[E]): void;
  /** Calls `listener` once when the client goes away (socket closed, window closed or reloaded); at once if it already has. */
  onDidDisconnect(listener: () => void): void;
}

/** Results cross process boundaries as data; the UI shows `error.message`. */
export type ApiResult<T> = { ok: true; value: T } | { ok: false; error: ErrorData };

export const API_METHOD_NAMES = Object.keys(API_REQUESTS) as ApiMethod[];

/** Validates a request for `method`; a bad one is INVALID_ARGUMENT naming each field at fault. */
export function validateRequest<M extends ApiMethod>(method: M, raw: unknown): z.output<(typeof API_REQUESTS)[M]> {
  const schema = API_REQUESTS[method] as unknown as z.ZodType<z.output<(typeof API_REQUESTS)[M]>> | undefined;
  if (!schema) throw new QuadraError('INVALID_ARGUMENT', `unknown method '${String(method)}'`);
  const result = schema.safeParse(raw ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${issue.path.join('.') || '(request)'}: ${issue.message}`);
  throw new QuadraError('INVALID_ARGUMENT', `${String(method)}: ${problems.join('; ')}`, { fields: result.error.issues.map((i) => i.path.join('.')) });
}

export function isApiMethod(name: string): name is ApiMethod {
  return Object.prototype.hasOwnProperty.call(API_REQUESTS, name);
}

/**
 * The one request handler of both ends (Electron IPC and serve mode's WebSocket): an unknown
 * method or a bad request is INVALID_ARGUMENT, anything the handler throws comes back as data.
 * `caller` goes to the handler as its second argument. Never rejects, whatever `method` and
 * `request` are.
 */
export async function dispatchCall(api: WorkstationApi, method: unknown, request: unknown, caller?: ApiCaller): Promise<ApiResult<unknown>> {
  try {
    if (typeof method !== 'string' || !isApiMethod(method)) {
      const shown = typeof method === 'string' ? method.slice(0, 100) : typeof method;
      throw new QuadraError('INVALID_ARGUMENT', `unknown method '${shown}'`);
    }
    const valid = validateRequest(method, request);
    const handler = api[method] as (request: unknown, caller?: ApiCaller) => Promise<unknown>;
    return { ok: true, value: await handler.call(api, valid, caller) };
  } catch (error) {
    return { ok: false, error: toErrorData(error) };
  }
}

/** A file the page made (an exported checkpoint, benchmark results) for the desktop app to save: a name to suggest, never a path. */
export interface SaveFileRequest {
  fileName: string;
  bytes: Uint8Array;
}

/** Where the desktop app wrote a file, as the user chose it in the save dialog. */
export interface SavedFile {
  path: string;
}

/** What the Electron preload exposes as window.quadra (contextBridge): calls, event subscriptions and the save dialog. */
export interface QuadraBridge {
  invoke(method: ApiMethod, request: unknown): Promise<ApiResult<unknown>>;
  on(event: ApiEvent, listener: (payload: unknown) => void): () => void;
  /** Shows the native save dialog and writes the file there; null when the user cancelled. */
  saveFile(request: SaveFileRequest): Promise<ApiResult<SavedFile | null>>;
}
