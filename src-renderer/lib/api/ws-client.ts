import type { ApiEvent, ApiMethod, ApiRequest, ApiResult, WorkstationEvents } from '../../../src-shared/api';
import type { ErrorData } from '../../../src-shared/errors';
import { formatBytes } from '../../../src-shared/format';
import { decodeWire, encodeWire } from '../../../src-shared/wire';
import { downloadFile } from '../save-file';
import { ApiError, type ApiClient, type ApiResponse, type ConnectionState, type UploadProgressListener } from './client';

/**
 * Serve mode: the API over the page's own WebSocket, files by `POST /upload`. The access token
 * travels as the HttpOnly cookie the server set on the first page load; reconnects with backoff
 * when the server restarts.
 *
 * A call is never sent twice unless it only reads: when the connection drops after a call went
 * out, the server may have acted on it (started a run) without the answer arriving, so such a call
 * fails and says so; reads are sent again on the next connection, and calls not yet sent go once.
 */

/** The parts of the browser's WebSocket this client uses (tests pass a fake). */
export interface SocketLike {
  send(data: string): void;
  close(): void;
  onopen: (() => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: (() => void) | null;
}

/** The parts of XMLHttpRequest used for uploads: unlike fetch, it reports upload progress. */
export interface RequestLike {
  open(method: string, url: string): void;
  setRequestHeader(name: string, value: string): void;
  send(body?: Blob | null): void;
  readonly status: number;
  readonly responseText: string;
  readonly upload: { onprogress: ((event: { loaded: number; total: number; lengthComputable: boolean }) => void) | null };
  onload: (() => void) | null;
  onerror: (() => void) | null;
  onabort: (() => void) | null;
}

/** One upload in flight, for a progress bar anywhere on the page. */
export interface UploadState {
  fileName: string;
  sent: number;
  total: number;
  done: boolean;
}

export interface WebSocketClientOptions {
  url?: string;
  uploadUrl?: string;
  createSocket?: (url: string) => SocketLike;
  createRequest?: () => RequestLike;
  /** Every upload's progress, including those made for a call that carried `bytes`. */
  onUploadProgress?: (state: UploadState) => void;
}

/** Calls that only read (or set a state to a value): safe to send again after a lost connection. */
export function isRetryable(method: ApiMethod): boolean {
  return /^(get|list)[A-Z]/.test(method) || method === 'previewDataset' || method === 'exportCheckpoint' || method === 'setMonitoring';
}

/** A read is sent at most this many times (a message the server refuses by closing must not loop). */
const MAX_SENDS = 3;
/** Calls whose file travels by upload; the server deletes the upload once import* used it. */
const FILE_METHODS = new Set<ApiMethod>(['previewDataset', 'importDataset', 'importCheckpoint']);

interface PendingCall {
  method: ApiMethod;
  message: string;
  sent: boolean;
  sends: number;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

export function createWebSocketClient(options: WebSocketClientOptions = {}): ApiClient {
  const url = options.url ?? defaultUrl();
  const uploadUrl = options.uploadUrl ?? '/upload';
  const createSocket = options.createSocket ?? ((to: string) => new (globalThis as unknown as { WebSocket: new (url: string) => SocketLike }).WebSocket(to));
  const createRequest = options.createRequest ?? (() => new (globalThis as unknown as { XMLHttpRequest: new () => RequestLike }).XMLHttpRequest());
  let socket: SocketLike | null = null;
  let next = 1;
  let retry = 500;
  const pending = new Map<number, PendingCall>();
  const listeners = new Map<string, Set<(payload: unknown) => void>>();
  const connectionListeners = new Set<(state: ConnectionState) => void>();
  // One upload per file's bytes: the preview's upload serves the import that follows.
  const uploaded = new WeakMap<Uint8Array, Promise<string>>();
  let uploadLimit: Promise<number | null> | null = null;

  const setState = (state: ConnectionState) => connectionListeners.forEach((l) => l(state));

  const transmit = (ws: SocketLike, call: PendingCall) => {
    call.sent = true;
    call.sends++;
    ws.send(call.message);
  };

  const connect = (): void => {
    setState('connecting');
    let ws: SocketLike;
    try {
      ws = createSocket(url);
    } catch {
      scheduleReconnect();
      return;
    }
    ws.onopen = () => {
      socket = ws;
      retry = 500;
      // Calls made while disconnected (and reads to repeat) go out first; a listener below may make new ones.
      for (const call of pending.values()) if (!call.sent) transmit(ws, call);
      setState('open');
    };
    ws.onmessage = (event) => {
      let message: { id?: unknown; result?: ApiResult<unknown>; event?: unknown; payload?: unknown };
      try {
        message = decodeWire(String(event.data)) as typeof message;
      } catch {
        return;
      }
      if (!message || typeof message !== 'object') return;
      if (typeof message.event === 'string') {
        listeners.get(message.event)?.forEach((l) => l(message.payload));
      } else if (typeof message.id === 'number') {
        const call = pending.get(message.id);
        if (!call || !message.result) return;
        pending.delete(message.id);
        if (message.result.ok) call.resolve(message.result.value);
        else call.reject(new ApiError(message.result.error));
      }
    };
    ws.onclose = () => {
      if (socket === ws) socket = null;
      for (const [id, call] of pending) {
        if (!call.sent) continue;
        if (isRetryable(call.method) && call.sends < MAX_SENDS) {
          call.sent = false;
          continue;
        }
        // The server may have acted on it: sending it again could, say, start a run twice.
        pending.delete(id);
        call.reject(connectionLost(call.method));
      }
      setState('closed');
      scheduleReconnect();
    };
  };

  const scheduleReconnect = () => {
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 10_000);
  };

  const send = (method: ApiMethod, request: unknown): Promise<unknown> => {
    const id = next++;
    const message = encodeWire({ id, method, request });
    return new Promise((resolve, reject) => {
      const call: PendingCall = { method, message, sent: false, sends: 0, resolve, reject };
      pending.set(id, call);
      if (socket) transmit(socket, call);
    });
  };

  const report = (fileName: string, sent: number, total: number, done: boolean) => options.onUploadProgress?.({ fileName, sent, total, done });

  /** The server's upload limit (asked once), so that a file over it is refused before it is sent. */
  const limit = (): Promise<number | null> => {
    if (uploadLimit) return uploadLimit;
    const asked = new Promise<number | null>((resolve) => {
      const xhr = createRequest();
      xhr.open('GET', uploadUrl);
      xhr.onload = () => {
        const answer = parseJson(xhr.responseText) as { maxBytes?: unknown } | null;
        resolve(xhr.status === 200 && typeof answer?.maxBytes === 'number' ? answer.maxBytes : null);
      };
      xhr.onerror = xhr.onabort = () => resolve(null);
      xhr.send();
    });
    uploadLimit = asked;
    // Not known (an older server, a network hiccup): the upload goes ahead and the server decides; ask again next time.
    void asked.then((value) => {
      if (value === null && uploadLimit === asked) uploadLimit = null;
    });
    return asked;
  };

  /** Streams one file to POST /upload and resolves with its id. */
  const httpUpload = async (body: Blob, fileName: string, onProgress?: UploadProgressListener): Promise<string> => {
    const maxBytes = await limit();
    if (maxBytes !== null && body.size > maxBytes) {
      throw new ApiError({ code: 'INVALID_FILE', message: `${fileName} is ${formatBytes(body.size)}, larger than this server's upload limit of ${formatBytes(maxBytes)} (quadra serve --max-upload-mib)` });
    }
    const progress = (sent: number, done = false) => {
      onProgress?.(sent, body.size);
      report(fileName, sent, body.size, done);
    };
    progress(0);
    return new Promise<string>((resolve, reject) => {
      const fail = (data: ErrorData) => {
        progress(0, true);
        reject(new ApiError(data));
      };
      const xhr = createRequest();
      xhr.open('POST', uploadUrl);
      xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      xhr.upload.onprogress = (event) => progress(Math.min(event.loaded, body.size));
      xhr.onload = () => {
        const answer = parseJson(xhr.responseText) as { uploadId?: unknown; error?: Partial<ErrorData> } | null;
        if (xhr.status === 200 && typeof answer?.uploadId === 'string') {
          progress(body.size, true);
          resolve(answer.uploadId);
        } else if (typeof answer?.error?.message === 'string') {
          fail({ code: answer.error.code ?? 'IO_ERROR', message: `${fileName}: ${answer.error.message}` });
        } else {
          fail({ code: 'IO_ERROR', message: `${fileName}: the upload failed (HTTP ${xhr.status})` });
        }
      };
      xhr.onerror = () => fail({ code: 'IO_ERROR', message: `${fileName}: the upload failed: the connection to the workstation was lost` });
      xhr.onabort = () => fail({ code: 'IO_ERROR', message: `${fileName}: the upload was cancelled` });
      xhr.send(body);
    });
  };

  /** A call that carries a file's bytes: the bytes go by upload, the call names the upload. */
  const callWithUpload = async (method: ApiMethod, request: { bytes: Uint8Array; fileName: string }): Promise<unknown> => {
    const { bytes, ...rest } = request;
    const usesUp = method !== 'previewDataset';
    for (let attempt = 1; ; attempt++) {
      let upload = uploaded.get(bytes);
      if (!upload) {
        upload = httpUpload(new Blob([bytes as Uint8Array<ArrayBuffer>]), request.fileName);
        uploaded.set(bytes, upload);
        upload.catch(() => uploaded.delete(bytes));
      }
      const uploadId = await upload;
      try {
        return await send(method, { ...rest, uploadId });
      } catch (error) {
        // The upload expired (or the server lost it): once more, with a fresh one.
        const gone = error instanceof ApiError && error.code === 'NOT_FOUND' && error.details?.uploadId === uploadId;
        if (!gone || attempt > 1) throw error;
        uploaded.delete(bytes);
      } finally {
        if (usesUp) uploaded.delete(bytes);
      }
    }
  };

  connect();

  return {
    call<M extends ApiMethod>(method: M, request: ApiRequest<M>): Promise<ApiResponse<M>> {
      const fileRequest = request as { bytes?: unknown; fileName?: unknown };
      if (FILE_METHODS.has(method) && fileRequest.bytes instanceof Uint8Array && typeof fileRequest.fileName === 'string') {
        return callWithUpload(method, fileRequest as { bytes: Uint8Array; fileName: string }) as Promise<ApiResponse<M>>;
      }
      return send(method, request) as Promise<ApiResponse<M>>;
    },
    on<E extends ApiEvent>(event: E, listener: (payload: WorkstationEvents[E]) => void) {
      const set = listeners.get(event) ?? new Set();
      set.add(listener as (payload: unknown) => void);
      listeners.set(event, set);
      return () => set.delete(listener as (payload: unknown) => void);
    },
    onConnection(listener) {
      connectionListeners.add(listener);
      listener(socket ? 'open' : 'connecting');
      return () => connectionListeners.delete(listener);
    },
    async upload(file, onProgress) {
      const fileName = (file as Blob & { name?: string }).name ?? 'file';
      return { uploadId: await httpUpload(file, fileName, onProgress) };
    },
    // The server cannot write on the browser's machine: the browser downloads the file.
    async saveFile(fileName, bytes, type = 'application/octet-stream') {
      downloadFile(fileName, bytes, type);
      return { kind: 'downloaded' };
    },
  };
}

function connectionLost(method: ApiMethod): ApiError {
  if (isRetryable(method)) {
    return new ApiError({ code: 'IO_ERROR', message: `connection lost ${MAX_SENDS} times before the server answered ${method}; try again once the workstation is connected` });
  }
  const check = method === 'startRun' || method === 'resumeRun' || method === 'controlRun' ? 'check the Runs view' : 'check whether it took effect';
  return new ApiError({ code: 'IO_ERROR', message: `connection lost before the server answered ${method}; ${check} before trying again` });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function defaultUrl(): string {
  const { location } = globalThis as unknown as { location: { protocol: string; host: string } };
  const protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${protocol}//${location.host}/api`;
}
