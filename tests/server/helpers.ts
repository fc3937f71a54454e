import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { QuadraError } from '../../src-shared/errors';
import { decodeWire, encodeWire } from '../../src-shared/wire';
import type { MonitorSource } from '../../src-main/hardware/gpu-monitor';
import { startServer, type RunningServer } from '../../src-main/server/serve';
import { UploadStore } from '../../src-main/server/uploads';
import { WorkstationService } from '../../src-main/services/workstation';
import { openStore, type Store } from '../../src-main/store/database';

/** A real `quadra serve` stack in this process: WorkstationService over a temporary SQLite store, uploads, the server. */
export interface Workstation {
  server: RunningServer;
  service: WorkstationService;
  store: Store;
  uploads: UploadStore;
  dir: string;
  base: string;
  close(): Promise<void>;
}

export async function startWorkstation(
  options: { maxUploadBytes?: number; maxMessageBytes?: number; uploadTtlMs?: number; host?: string; monitor?: MonitorSource } = {},
): Promise<Workstation> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'quadra-serve-test-'));
  const staticDir = path.join(dir, 'static');
  mkdirSync(staticDir);
  writeFileSync(path.join(staticDir, 'index.html'), '<!doctype html><title>Quadra</title>');
  const store = openStore(path.join(dir, 'serve.sqlite'));
  const uploads = new UploadStore({ dir: path.join(dir, 'uploads'), maxBytes: options.maxUploadBytes ?? 64 * 1024, ...(options.uploadTtlMs === undefined ? {} : { ttlMs: options.uploadTtlMs }) });
  let server: RunningServer | null = null;
  const service = new WorkstationService({
    store,
    // Hardware detection is not under test here, and must stay cheap for thousands of calls.
    hardware: async () => {
      throw new QuadraError('UNSUPPORTED', 'no hardware detection in this test');
    },
    dataDir: dir,
    emit: (event, payload) => server?.emit(event, payload),
    uploads,
    ...(options.monitor ? { monitor: options.monitor } : {}),
  });
  server = await startServer({
    api: service,
    port: 0,
    staticDir,
    uploads,
    ...(options.host ? { host: options.host } : {}),
    ...(options.maxMessageBytes ? { maxMessageBytes: options.maxMessageBytes } : {}),
  });
  const running = server;
  return {
    server: running,
    service,
    store,
    uploads,
    dir,
    base: `http://127.0.0.1:${running.port}`,
    close: async () => {
      await running.close();
      await service.shutdown();
      uploads.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Seeded, so a failing case can be replayed (mulberry32). */
export function prng(seed: number): { next(): number; int(n: number): number; pick<T>(items: readonly T[]): T; bytes(n: number): Buffer; chance(p: number): boolean } {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    pick: (items) => items[int(items.length)]!,
    bytes: (n) => Buffer.from(Array.from({ length: n }, () => int(256))),
    chance: (p) => next() < p,
  };
}

export interface RawAnswer {
  /** Everything the server sent before it closed or the wait ended. */
  data: Buffer;
  /** The HTTP status of the first response, or null when none came. */
  status: number | null;
  closed: boolean;
}

/**
 * Writes bytes to a fresh TCP connection and collects what comes back until one whole response
 * arrived, the server hung up or the wait ended. Half-closing after the write (the default) makes
 * the server answer and hang up; an upload must not half-close (Node then drops its request).
 * Never rejects.
 */
export function rawExchange(port: number, request: Buffer | string, { waitMs = 3000, halfClose = true }: { waitMs?: number; halfClose?: boolean } = {}): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(port, '127.0.0.1');
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const data = Buffer.concat(chunks);
      const match = /^HTTP\/1\.1 (\d{3})/.exec(data.subarray(0, 16).toString('latin1'));
      resolve({ data, status: match ? Number(match[1]) : null, closed });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (completeResponse(Buffer.concat(chunks))) finish(false);
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('connect', () => {
      socket.write(request, () => {
        if (halfClose) socket.end();
      });
    });
  });
}

/** Whether `data` holds one whole HTTP response (by Content-Length, chunked end, or no body). */
function completeResponse(data: Buffer): boolean {
  const text = data.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const head = text.slice(0, end).toLowerCase();
  const length = /\r\ncontent-length: *(\d+)/.exec(head);
  if (length) return data.length - end - 4 >= Number(length[1]);
  if (/\r\ntransfer-encoding: *chunked/.test(head)) return text.endsWith('\r\n0\r\n\r\n');
  return /^http\/1\.1 (101|1\d\d|204|304)/.test(head);
}

/** A WebSocket upgrade over a raw socket, so that hand-built (and broken) frames can follow it. */
export function rawWebSocket(port: number, token: string): Promise<{ socket: net.Socket; received: () => Buffer; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let upgraded = false;
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (upgraded) return;
      const text = Buffer.concat(chunks).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (!text.startsWith('HTTP/1.1 101')) return reject(new Error(`upgrade refused: ${text.slice(0, 40)}`));
      upgraded = true;
      const rest = Buffer.concat(chunks).subarray(end + 4);
      chunks.length = 0;
      if (rest.length) chunks.push(rest);
      resolve({ socket, received: () => Buffer.concat(chunks), closed });
    });
    socket.once('close', () => {
      if (!upgraded) reject(new Error('closed before the upgrade'));
    });
    socket.on('connect', () => {
      socket.write(
        `GET /api?token=${token} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOrigin: http://127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
  });
}

export interface FrameSpec {
  fin?: boolean;
  rsv?: number;
  opcode: number;
  payload?: Buffer;
  masked?: boolean;
  /** Declares this length instead of the payload's (as a 64-bit length when over 65535). */
  declaredLength?: bigint;
}

/** One WebSocket frame, built by hand so that it can be wrong in any way. */
export function frame({ fin = true, rsv = 0, opcode, payload = Buffer.alloc(0), masked = true, declaredLength }: FrameSpec): Buffer {
  const length = declaredLength ?? BigInt(payload.length);
  const head = [((fin ? 1 : 0) << 7) | ((rsv & 7) << 4) | (opcode & 15)];
  let extended = Buffer.alloc(0);
  if (length < 126n) head.push(Number(length));
  else if (length < 65536n) {
    head.push(126);
    extended = Buffer.alloc(2);
    extended.writeUInt16BE(Number(length));
  } else {
    head.push(127);
    extended = Buffer.alloc(8);
    extended.writeBigUInt64BE(length);
  }
  if (masked) head[1]! |= 0x80;
  const mask = masked ? randomBytes(4) : Buffer.alloc(0);
  const body = Buffer.from(payload);
  if (masked) for (let i = 0; i < body.length; i++) body[i]! ^= mask[i % 4]!;
  return Buffer.concat([Buffer.from(head), extended, mask, body]);
}

/** The close code in the first close frame the server sent, if any (server frames are unmasked). */
export function closeCode(data: Buffer): number | null {
  let offset = 0;
  while (offset + 2 <= data.length) {
    const opcode = data[offset]! & 15;
    let length = data[offset + 1]! & 127;
    let start = offset + 2;
    if (length === 126) {
      length = data.readUInt16BE(start);
      start += 2;
    } else if (length === 127) {
      length = Number(data.readBigUInt64BE(start));
      start += 8;
    }
    if (opcode === 8) return length >= 2 ? data.readUInt16BE(start) : 1005;
    offset = start + length;
  }
  return null;
}

/** Sends one frame after a valid upgrade and resolves with the close code the server answered (null: none) once it hung up. */
export async function sendFrames(port: number, token: string, frames: Buffer[], waitMs = 3000): Promise<{ code: number | null; data: Buffer }> {
  const ws = await rawWebSocket(port, token);
  for (const bytes of frames) ws.socket.write(bytes);
  const timer = setTimeout(() => ws.socket.destroy(), waitMs);
  // A frame cut short would keep the server waiting for the rest: half-close, as a client that gave up.
  ws.socket.end();
  await ws.closed;
  clearTimeout(timer);
  return { code: closeCode(ws.received()), data: ws.received() };
}

/** A WebSocket client as the UI's: the page's Origin, the token, numbered calls. */
export async function apiClient(port: number, token: string): Promise<{ ws: WebSocket; call(method: string, request?: unknown): Promise<{ ok: boolean; value?: unknown; error?: { code: string; message: string } }>; close(): void }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api?token=${token}`, { headers: { origin: `http://127.0.0.1:${port}` } });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  let next = 1;
  const waiting = new Map<number, (result: never) => void>();
  ws.on('message', (data) => {
    const message = decodeWire(data.toString()) as { id?: number; result?: never };
    if (typeof message.id === 'number') waiting.get(message.id)?.(message.result!);
  });
  return {
    ws,
    call: (method, request = {}) =>
      new Promise((resolve) => {
        const id = next++;
        waiting.set(id, resolve as never);
        ws.send(encodeWire({ id, method, request }));
      }),
    close: () => ws.close(),
  };
}

/** The server still serves: the page with the token, and a listRuns over a fresh WebSocket. */
export async function expectAlive(workstation: Workstation): Promise<void> {
  const page = await fetch(`${workstation.base}/?token=${workstation.server.token}`);
  if (page.status !== 200) throw new Error(`GET / answered ${page.status}`);
  await page.text();
  const client = await apiClient(workstation.server.port, workstation.server.token);
  const runs = await client.call('listRuns', {});
  client.close();
  if (!runs.ok || !Array.isArray(runs.value)) throw new Error(`listRuns answered ${JSON.stringify(runs)}`);
}

/** Runs `tasks` with at most `limit` in flight. */
export async function inParallel<T>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      await task(items[index]!, index);
    }
  });
  await Promise.all(lanes);
}
