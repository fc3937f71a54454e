import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { decodeWire, encodeWire } from '../../src-shared/wire';
import { ApiError } from '../../src-renderer/lib/api/client';
import { createWebSocketClient, isRetryable, type RequestLike, type SocketLike, type UploadState } from '../../src-renderer/lib/api/ws-client';

/**
 * The serve-mode client against fakes of its two boundaries, the browser's WebSocket and
 * XMLHttpRequest: what it sends, what it sends again after a dropped connection (only reads),
 * and how files go by upload.
 */

class FakeSocket implements SocketLike {
  static all: FakeSocket[] = [];
  sent: Array<{ id: number; method: string; request: Record<string, unknown> }> = [];
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: (() => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(data: string): void {
    this.sent.push(decodeWire(data) as never);
  }
  close(): void {
    this.onclose?.();
  }
  open(): void {
    this.onopen?.();
  }
  answer(id: number, value: unknown): void {
    this.onmessage?.({ data: encodeWire({ id, result: { ok: true, value } }) });
  }
  fail(id: number, error: { code: string; message: string; details?: Record<string, unknown> }): void {
    this.onmessage?.({ data: encodeWire({ id, result: { ok: false, error } }) });
  }
  static get last(): FakeSocket {
    return FakeSocket.all.at(-1)!;
  }
}

/** Answers like `quadra serve`'s /upload, unless a test replaces `respond`. */
class FakeRequest implements RequestLike {
  static all: FakeRequest[] = [];
  static maxBytes: number | null = 1000;
  static likeTheServer(request: FakeRequest): void {
    if (request.method === 'GET') return request.reply(200, { maxBytes: FakeRequest.maxBytes });
    const size = (request.body as Blob).size;
    request.upload.onprogress?.({ loaded: Math.floor(size / 2), total: size, lengthComputable: true });
    request.reply(200, { uploadId: `${'0'.repeat(31)}${FakeRequest.all.length % 10}`, bytes: size });
  }
  static respond: (request: FakeRequest) => void = FakeRequest.likeTheServer;
  method = '';
  url = '';
  body: Blob | null | undefined;
  status = 0;
  responseText = '';
  headers: Record<string, string> = {};
  upload: RequestLike['upload'] = { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;
  constructor() {
    FakeRequest.all.push(this);
  }
  open(method: string, url: string): void {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(name: string, value: string): void {
    this.headers[name] = value;
  }
  send(body?: Blob | null): void {
    this.body = body;
    queueMicrotask(() => FakeRequest.respond(this));
  }
  reply(status: number, body: unknown): void {
    this.status = status;
    this.responseText = JSON.stringify(body);
    this.onload?.();
  }
}

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));
let progress: UploadState[];

function client() {
  progress = [];
  return createWebSocketClient({
    url: 'ws://test/api',
    uploadUrl: '/upload',
    createSocket: (url) => new FakeSocket(url),
    createRequest: () => new FakeRequest(),
    onUploadProgress: (state) => progress.push(state),
  });
}

beforeEach(() => {
  FakeSocket.all = [];
  FakeRequest.all = [];
  FakeRequest.maxBytes = 1000;
  FakeRequest.respond = FakeRequest.likeTheServer;
  vi.useFakeTimers({ toFake: ['setTimeout'] });
});
afterEach(() => vi.useRealTimers());

/** Drops the connection and lets the client reconnect to a fresh fake socket. */
function reconnect(): FakeSocket {
  FakeSocket.last.close();
  vi.advanceTimersByTime(10_000);
  FakeSocket.last.open();
  return FakeSocket.last;
}

describe('the WebSocket client after a dropped connection', () => {
  it('never sends startRun twice: a sent call fails with a message that says what to check', async () => {
    const api = client();
    FakeSocket.last.open();
    const started = api.call('startRun', { mode: 'single', backend: 'wasm', engine: {}, epochs: 1, dataset: 'synthetic:100' });
    expect(FakeSocket.last.sent.map((m) => m.method)).toEqual(['startRun']);
    const outcome = started.catch((error: unknown) => error);
    const second = reconnect();
    const error = (await outcome) as ApiError;
    expect(error).toBeInstanceOf(ApiError);
    expect(error.code).toBe('IO_ERROR');
    expect(error.message).toBe('connection lost before the server answered startRun; check the Runs view before trying again');
    expect(second.sent).toEqual([]);
  });

  it('fails every sent call that changes something (importDataset, controlRun, resumeRun…), sends reads again', async () => {
    const api = client();
    const first = FakeSocket.last;
    first.open();
    const control = api.call('controlRun', { runId: 1, action: 'cancel' }).catch((error: Error) => error.message);
    const runs = api.call('listRuns', {});
    const run = api.call('getRun', { runId: 3 });
    const second = reconnect();
    expect(await control).toBe('connection lost before the server answered controlRun; check the Runs view before trying again');
    expect(second.sent.map((m) => m.method)).toEqual(['listRuns', 'getRun']);
    second.answer(second.sent[0]!.id, [{ id: 1 }]);
    second.answer(second.sent[1]!.id, { run: { id: 3 } });
    expect(await runs).toEqual([{ id: 1 }]);
    expect(await run).toEqual({ run: { id: 3 } });
  });

  it('sends calls made while disconnected once, when the connection opens', async () => {
    const api = client();
    const started = api.call('startRun', { mode: 'single', backend: 'wasm', engine: {}, epochs: 1, dataset: 'synthetic:100' });
    FakeSocket.last.close(); // the first attempt never opened
    vi.advanceTimersByTime(10_000);
    const socket = FakeSocket.last;
    socket.open();
    expect(socket.sent.map((m) => m.method)).toEqual(['startRun']);
    socket.answer(socket.sent[0]!.id, { runId: 7 });
    expect(await started).toEqual({ runId: 7 });
    // Answered: nothing is left to send on the next connection.
    expect(reconnect().sent).toEqual([]);
  });

  it('gives up on a read after three sends (a message the server refuses by closing must not loop)', async () => {
    const api = client();
    FakeSocket.last.open();
    const runs = api.call('listRuns', {}).catch((error: ApiError) => error);
    reconnect();
    reconnect();
    const fourth = reconnect();
    const error = (await runs) as ApiError;
    expect(error.code).toBe('IO_ERROR');
    expect(error.message).toBe('connection lost 3 times before the server answered listRuns; try again once the workstation is connected');
    expect(FakeSocket.all.map((s) => s.sent.length)).toEqual([1, 1, 1, 0]);
    expect(fourth.sent).toEqual([]);
  });

  it('retries only calls that read', () => {
    expect(['getRun', 'listRuns', 'getMetrics', 'listCheckpoints', 'previewDataset', 'getHardware'].every((m) => isRetryable(m as never))).toBe(true);
    expect(['startRun', 'resumeRun', 'controlRun', 'importDataset', 'importCheckpoint', 'runBenchmarkSuite'].some((m) => isRetryable(m as never))).toBe(false);
  });
});

describe('files, by upload', () => {
  it('upload() streams a file with progress and answers its id', async () => {
    const api = client();
    const seen: Array<[number, number]> = [];
    const result = await api.upload(new File([new Uint8Array(600)], 'data.csv'), (sent, total) => seen.push([sent, total]));
    expect(result).toEqual({ uploadId: expect.stringMatching(/^[0-9a-f]{32}$/) });
    const post = FakeRequest.all.find((r) => r.method === 'POST')!;
    expect(post.url).toBe('/upload');
    expect((post.body as Blob).size).toBe(600);
    expect(seen).toEqual([[0, 600], [300, 600], [600, 600]]);
    expect(progress.at(-1)).toEqual({ fileName: 'data.csv', sent: 600, total: 600, done: true });
  });

  it('refuses a file over the server’s limit before sending it, naming both sizes', async () => {
    const api = client();
    const error = (await api.upload(new File([new Uint8Array(5000)], 'big.csv')).catch((e: unknown) => e)) as ApiError;
    expect(error.code).toBe('INVALID_FILE');
    expect(error.message).toBe("big.csv is 4.9 KiB, larger than this server's upload limit of 1000 B (quadra serve --max-upload-mib)");
    expect(FakeRequest.all.filter((r) => r.method === 'POST')).toEqual([]);
  });

  it('shows the server’s refusal, or a lost connection, as the error', async () => {
    const api = client();
    FakeRequest.respond = (request) => (request.method === 'GET' ? request.reply(200, { maxBytes: 1000 }) : request.reply(413, { error: { code: 'INVALID_FILE', message: 'the file is larger than the limit' } }));
    await expect(api.upload(new File(['x'], 'a.csv'))).rejects.toThrow('a.csv: the file is larger than the limit');
    FakeRequest.respond = (request) => (request.method === 'GET' ? request.reply(200, { maxBytes: 1000 }) : request.onerror?.());
    await expect(api.upload(new File(['x'], 'a.csv'))).rejects.toThrow('a.csv: the upload failed: the connection to the workstation was lost');
    expect(progress.at(-1)!.done).toBe(true);
  });

  it('a call that carries bytes sends them by upload and the call names the upload; the preview’s upload serves the import', async () => {
    const api = client();
    const socket = FakeSocket.last;
    socket.open();
    const bytes = new Uint8Array(100);
    const preview = api.call('previewDataset', { fileName: 'rows.csv', bytes });
    await vi.waitFor(() => expect(socket.sent).toHaveLength(1));
    const call = socket.sent[0]!;
    expect(call.method).toBe('previewDataset');
    expect(call.request).toEqual({ fileName: 'rows.csv', uploadId: expect.stringMatching(/^[0-9a-f]{32}$/) });
    socket.answer(call.id, { rows: 1 });
    expect(await preview).toEqual({ rows: 1 });
    const imported = api.call('importDataset', { fileName: 'rows.csv', bytes, name: 'rows' });
    await vi.waitFor(() => expect(socket.sent).toHaveLength(2));
    expect(socket.sent[1]!.request).toEqual({ fileName: 'rows.csv', uploadId: call.request.uploadId, name: 'rows' });
    socket.answer(socket.sent[1]!.id, { id: 1 });
    await imported;
    expect(FakeRequest.all.filter((r) => r.method === 'POST')).toHaveLength(1);
    expect(progress.map((p) => [p.fileName, p.sent, p.done])).toEqual([['rows.csv', 0, false], ['rows.csv', 50, false], ['rows.csv', 100, true]]);
  });

  it('uploads again, once, when the server no longer has the upload', async () => {
    const api = client();
    const socket = FakeSocket.last;
    socket.open();
    const bytes = new Uint8Array(10);
    const imported = api.call('importCheckpoint', { fileName: 'model.safetensors', bytes });
    await vi.waitFor(() => expect(socket.sent).toHaveLength(1));
    const first = socket.sent[0]!;
    socket.fail(first.id, { code: 'NOT_FOUND', message: 'upload gone', details: { uploadId: first.request.uploadId } });
    await vi.waitFor(() => expect(socket.sent).toHaveLength(2));
    expect(FakeRequest.all.filter((r) => r.method === 'POST')).toHaveLength(2);
    socket.answer(socket.sent[1]!.id, { runId: 1, checkpointId: 2 });
    expect(await imported).toEqual({ runId: 1, checkpointId: 2 });
  });

  it('ignores messages that are not JSON instead of throwing in the page', async () => {
    client();
    const socket = FakeSocket.last;
    socket.open();
    expect(() => socket.onmessage?.({ data: '{not json' })).not.toThrow();
    expect(() => socket.onmessage?.({ data: 'null' })).not.toThrow();
    await flush();
  });
});
