import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { dispatchCall, type ApiCaller, type ApiEvent, type ApiResult, type WorkstationApi, type WorkstationEvents } from '../../src-shared/api';
import { CONTENT_SECURITY_POLICY } from '../../src-shared/content-security-policy';
import { QuadraError, type ErrorData } from '../../src-shared/errors';
import { decodeWire, encodeWire } from '../../src-shared/wire';
import type { UploadStore } from './uploads';

/**
 * Serve mode: the renderer over HTTP and the WorkstationApi over a WebSocket, for GPU servers
 * without a display and for end-to-end tests. Binds 127.0.0.1 unless told otherwise; every HTTP
 * and WebSocket request must carry the random token printed in the URL (the first page load turns
 * it into an HttpOnly, SameSite=Strict cookie); a browser's Origin must be the page's own (its
 * host:port equal to the Host header). Files arrive by `POST /upload` into the server's own
 * folder and API calls name them by a random id: the browser never names a server path.
 * No request, frame or message of any shape stops the server: a bad one gets a 4xx or a close code.
 */

export interface ServeOptions {
  api: WorkstationApi;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** The built renderer (index.html and assets); without it a page says the UI is not built. */
  staticDir?: string | null;
  token?: string;
  /** Where `POST /upload` streams files (the same store the WorkstationService resolves ids with); without it uploads are refused. */
  uploads?: UploadStore | null;
  /** The largest WebSocket message accepted; a larger one closes that socket with 1009 (files travel by /upload). */
  maxMessageBytes?: number;
  /** Where unexpected errors are reported (they answer 500 and the server carries on). */
  log?: (line: string) => void;
}

export interface RunningServer {
  /** A URL a user can open, token included (for 0.0.0.0 or ::, through this machine's address). */
  url: string;
  token: string;
  port: number;
  /** The address bound. */
  host: string;
  emit<E extends ApiEvent>(event: E, payload: WorkstationEvents[E]): void;
  close(): Promise<void>;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024;
const COOKIE = 'quadra_token';
const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  // favicon.ico, which browsers ask for on their own; the renderer's public/ folder provides it.
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.woff2': 'font/woff2',
};

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 0;
  const token = options.token ?? randomBytes(24).toString('base64url');
  const log = options.log ?? (() => undefined);
  const uploads = options.uploads ?? null;
  const sockets = new Set<WebSocket>();

  const authorised = (req: IncomingMessage, target: URL): boolean => {
    const given = target.searchParams.get('token') ?? cookie(req, COOKIE) ?? bearer(req);
    return given !== null && sameSecret(given, token);
  };

  const handleRequest = (req: IncomingMessage, res: ServerResponse): void => {
    securityHeaders(res);
    const target = requestTarget(req.url);
    if (!target) return plain(res, 400, 'Bad request: malformed URL');
    if (!authorised(req, target)) {
      const message = 'Unauthorised: open the URL printed by `quadra serve` (it carries the access token).';
      return target.pathname === '/upload' ? json(res, 401, { error: { code: 'INVALID_ARGUMENT', message } }) : plain(res, 401, message);
    }
    if (target.searchParams.has('token')) res.setHeader('Set-Cookie', `${COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/`);
    if (target.pathname === '/upload') return handleUpload(req, res);
    if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, 'Method not allowed');
    serveStatic(options.staticDir ?? null, target.pathname, res);
  };

  const handleUpload = (req: IncomingMessage, res: ServerResponse): void => {
    if (!uploads) return json(res, 404, { error: { code: 'UNSUPPORTED', message: 'this server takes no uploads' } });
    // Another site's page may not send files here (cookies do not isolate ports, so SameSite alone is not enough).
    if (!ownOrigin(req)) return json(res, 403, { error: { code: 'UNSUPPORTED', message: 'refused an upload from another site' } });
    if (req.method === 'GET') return json(res, 200, { maxBytes: uploads.maxBytes });
    if (req.method !== 'POST') return json(res, 405, { error: { code: 'INVALID_ARGUMENT', message: 'upload with POST' } });
    uploads.receive(req).then(
      (outcome) => {
        if (outcome.ok) return json(res, 200, { uploadId: outcome.uploadId, bytes: outcome.bytes });
        // The rest of a refused body is not read: the connection closes after the answer.
        res.setHeader('Connection', 'close');
        json(res, outcome.status, { error: { code: outcome.status === 413 ? 'INVALID_FILE' : outcome.status === 500 ? 'IO_ERROR' : 'INVALID_ARGUMENT', message: outcome.message } });
      },
      (error: unknown) => failed(res, error),
    );
  };

  const failed = (res: ServerResponse, error: unknown): void => {
    log(`quadra serve: unexpected error answering a request: ${error instanceof Error ? error.message : String(error)}`);
    if (!res.headersSent) {
      res.setHeader('Connection', 'close');
      plain(res, 500, 'Internal error');
    } else res.destroy();
  };

  // No limit on a whole request's time (Node's default is 5 minutes): an upload of gigabytes takes
  // longer. Headers still have 60 s, and an upload that stops sending is dropped (uploads.ts).
  const http = createServer({ requestTimeout: 0 }, (req, res) => {
    try {
      handleRequest(req, res);
    } catch (error) {
      failed(res, error);
    }
  });
  // Malformed request lines, headers over the size limit, bad chunking: answer if the socket still can, then drop it.
  http.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    if (error.code === 'ECONNRESET' || !socket.writable || (socket as Socket).bytesWritten > 0) {
      socket.destroy();
      return;
    }
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES });
  wss.on('error', (error) => log(`quadra serve: WebSocket server error: ${error.message}`));
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const refuse = (status: string) => {
      if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
      else socket.destroy();
    };
    try {
      const target = requestTarget(req.url);
      if (!target) return refuse('400 Bad Request');
      if (!authorised(req, target)) return refuse('401 Unauthorized');
      if (target.pathname !== '/api') return refuse('404 Not Found');
      // Only this server's own pages may connect: another site's page cannot drive the API. Browsers
      // always send Origin on a WebSocket; a client without one (a script) has shown the token above.
      if (!ownOrigin(req)) return refuse('403 Forbidden');
      wss.handleUpgrade(req, socket, head, (ws) => {
        sockets.add(ws);
        // A bad frame (reserved opcode, RSV bits, a message over maxPayload…): ws has already sent
        // the close code (1002, 1009…) and closes this socket; the listener keeps it from being fatal.
        ws.on('error', () => undefined);
        ws.on('close', () => sockets.delete(ws));
        // One session per socket: what the workstation keeps per client (monitoring) ends with it.
        const caller = socketCaller(ws);
        ws.on('message', (data: RawData) => void answer(options.api, ws, data, caller));
      });
    } catch (error) {
      log(`quadra serve: unexpected error during a WebSocket upgrade: ${error instanceof Error ? error.message : String(error)}`);
      refuse('500 Internal Server Error');
    }
  });

  await new Promise<void>((resolve, reject) => {
    http.once('error', (error: NodeJS.ErrnoException) => reject(listenError(error, host, port)));
    http.listen(port, host, () => resolve());
  });
  http.on('error', (error) => log(`quadra serve: server error: ${error.message}`));
  const bound = (http.address() as AddressInfo).port;
  const shown = reachableHost(host);
  return {
    url: `http://${shown.includes(':') ? `[${shown}]` : shown}:${bound}/?token=${token}`,
    token,
    port: bound,
    host,
    emit: (event, payload) => {
      const text = encodeWire({ event, payload });
      for (const ws of sockets) if (ws.readyState === ws.OPEN) ws.send(text);
    },
    close: async () => {
      for (const ws of sockets) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

/** A WebSocket session as the workstation sees its caller: events to this socket alone, and its end. */
function socketCaller(ws: WebSocket): ApiCaller {
  return {
    send: (event, payload) => {
      if (ws.readyState === ws.OPEN) ws.send(encodeWire({ event, payload }));
    },
    onDidDisconnect: (listener) => {
      if (ws.readyState === ws.CLOSED) queueMicrotask(listener);
      else ws.once('close', () => listener());
    },
  };
}

/** One message: decode, dispatch through the shared handler, answer with data (never a thrown error). */
async function answer(api: WorkstationApi, ws: WebSocket, data: RawData, caller: ApiCaller): Promise<void> {
  const send = (id: number | null, result: ApiResult<unknown>) => {
    if (ws.readyState !== ws.OPEN) return;
    let text: string;
    try {
      text = encodeWire({ id, result });
    } catch (error) {
      text = encodeWire({ id, result: { ok: false, error: { code: 'INTERNAL', message: `could not encode the answer: ${(error as Error).message}` } } });
    }
    ws.send(text);
  };
  let call: { id: number; method: unknown; request: unknown };
  try {
    const text = (Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)).toString();
    const decoded = decodeWire(text) as { id?: unknown; method?: unknown; request?: unknown } | null;
    if (!decoded || typeof decoded !== 'object' || typeof decoded.id !== 'number') throw new Error('expected { id, method, request }');
    call = { id: decoded.id, method: decoded.method, request: decoded.request };
  } catch (error) {
    // Deeply nested JSON ends here too, as a RangeError from the parser.
    send(null, { ok: false, error: { code: 'INVALID_ARGUMENT', message: `malformed call: ${error instanceof Error ? error.message : String(error)}` } });
    return;
  }
  send(call.id, await dispatchCall(api, call.method, call.request, caller));
}

/** The request target as a URL on a fixed origin, or null when it is not an origin-form path ('//', '*', 'http://…'). */
function requestTarget(raw: string | undefined): URL | null {
  if (!raw || !raw.startsWith('/')) return null;
  try {
    // Prefixed rather than resolved against a base: '//host/…' would otherwise name another host.
    const url = new URL(`http://localhost${raw}`);
    return url.host === 'localhost' ? url : null;
  } catch {
    return null;
  }
}

/**
 * Whether the request comes from this server's own page: Origin's host:port equals the Host
 * header, whatever name or address the user opened (127.0.0.1, localhost, the machine's address).
 * Other sites cannot forge Origin; a client that sends none must have shown the token.
 */
function ownOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return req.headers['sec-fetch-site'] !== 'cross-site';
  const host = req.headers.host;
  if (!host) return false;
  try {
    const from = new URL(origin);
    const to = new URL(`${from.protocol}//${host}`);
    return (from.protocol === 'http:' || from.protocol === 'https:') && from.host === to.host && to.pathname === '/' && to.username === '' && to.password === '';
  } catch {
    return false;
  }
}

/** A bind failure in the user's words: which port and address, and what to do. */
function listenError(error: NodeJS.ErrnoException, host: string, port: number): Error {
  if (error.code === 'EADDRINUSE') {
    return new QuadraError('IO_ERROR', `port ${port} on ${host} is already in use (another quadra serve?); choose another with --port N, or --port 0 for a free one`, { port, host });
  }
  if (error.code === 'EACCES') {
    return new QuadraError('IO_ERROR', `not allowed to listen on port ${port} on ${host} (ports below 1024 need privileges); choose another with --port N`, { port, host });
  }
  if (error.code === 'EADDRNOTAVAIL' || error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN') {
    return new QuadraError('IO_ERROR', `cannot listen on ${host}: no network interface of this machine has that address (--host)`, { host });
  }
  return error;
}

/** What to print for a wildcard bind: this machine's first external IPv4 address, else its host name. */
export function reachableHost(host: string): string {
  if (host !== '0.0.0.0' && host !== '::' && host !== '') return host;
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const address of addresses ?? []) if (address.family === 'IPv4' && !address.internal) return address.address;
  }
  return os.hostname();
}

function serveStatic(dir: string | null, pathname: string, res: ServerResponse): void {
  if (!dir || !existsSync(path.join(dir, 'index.html'))) {
    return plain(res, 200, 'Quadra Matrix Workstation is running, but the UI has not been built yet (npm run build).');
  }
  let relative: string;
  try {
    relative = decodeURIComponent(pathname === '/' ? '/index.html' : pathname);
  } catch {
    return plain(res, 400, 'Bad request: malformed percent-encoding in the path');
  }
  if (relative.includes('\0')) return plain(res, 404, 'Not found');
  const file = path.resolve(dir, `.${relative}`);
  // Never outside the renderer folder, whatever the path says.
  if (!file.startsWith(path.resolve(dir) + path.sep) || !existsSync(file) || !statSync(file).isFile()) return plain(res, 404, 'Not found');
  res.writeHead(200, { 'Content-Type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream' });
  createReadStream(file)
    .on('error', () => res.destroy())
    .pipe(res);
}

function securityHeaders(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'no-store');
}

function plain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(`${text}\n`);
}

function json(res: ServerResponse, status: number, body: { uploadId: string; bytes: number } | { maxBytes: number } | { error: ErrorData }): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function cookie(req: IncomingMessage, name: string): string | null {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return rest.join('=');
  }
  return null;
}

function bearer(req: IncomingMessage): string | null {
  const header = req.headers.authorization ?? '';
  return header.startsWith('Bearer ') ? header.slice(7) : null;
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
