import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { isApiMethod, validateRequest, type ApiEvent, type ApiMethod, type ApiResult, type WorkstationApi, type WorkstationEvents } from '../../src-shared/api';
import { QuadraError, toErrorData } from '../../src-shared/errors';
import { decodeWire, encodeWire, type WireCall } from '../../src-shared/wire';

/**
 * Serve mode: the renderer over HTTP and the WorkstationApi over a WebSocket, for GPU servers
 * without a display and for end-to-end tests. Binds 127.0.0.1 unless told otherwise; every HTTP
 * and WebSocket request must carry the random token printed in the URL (the first page load turns
 * it into an HttpOnly, SameSite=Strict cookie); the WebSocket's Origin must be this server's own.
 * The browser never names a server path: files travel as bytes.
 */

export interface ServeOptions {
  api: WorkstationApi;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** The built renderer (index.html and assets); without it a page says the UI is not built. */
  staticDir?: string | null;
  token?: string;
}

export interface RunningServer {
  url: string;
  token: string;
  port: number;
  host: string;
  emit<E extends ApiEvent>(event: E, payload: WorkstationEvents[E]): void;
  close(): Promise<void>;
}

const COOKIE = 'quadra_token';
const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.wasm': 'application/wasm',
  '.woff2': 'font/woff2',
};

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  const token = options.token ?? randomBytes(24).toString('base64url');
  const sockets = new Set<WebSocket>();
  let origin = '';

  const authorised = (req: IncomingMessage): boolean => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const given = url.searchParams.get('token') ?? cookie(req, COOKIE) ?? bearer(req);
    return given !== null && sameSecret(given, token);
  };

  const http = createServer((req, res) => {
    securityHeaders(res);
    if (!authorised(req)) return plain(res, 401, 'Unauthorised: open the URL printed by `quadra serve` (it carries the access token).');
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.searchParams.has('token')) res.setHeader('Set-Cookie', `${COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, 'Method not allowed');
    serveStatic(options.staticDir ?? null, url.pathname, res);
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: 512 * 1024 * 1024 });
  http.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const refuse = (status: string) => {
      socket.write(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
      socket.destroy();
    };
    if (url.pathname !== '/api') return refuse('404 Not Found');
    if (!authorised(req)) return refuse('401 Unauthorized');
    // Only pages this server served may connect: another site's page cannot drive the API.
    if (req.headers.origin !== origin) return refuse('403 Forbidden');
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      ws.on('message', (data) => void handleCall(options.api, ws, data.toString()));
    });
  });

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (http.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  origin = `http://${shownHost}:${port}`;
  return {
    url: `${origin}/?token=${token}`,
    token,
    port,
    host,
    emit: (event, payload) => {
      const text = encodeWire({ event, payload });
      for (const ws of sockets) if (ws.readyState === ws.OPEN) ws.send(text);
    },
    close: async () => {
      for (const ws of sockets) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

/** One call: validate, dispatch through the typed table, answer with data (never a thrown error). */
async function handleCall(api: WorkstationApi, ws: WebSocket, text: string): Promise<void> {
  let call: WireCall;
  try {
    call = decodeWire(text) as WireCall;
    if (!call || typeof call.id !== 'number' || typeof call.method !== 'string') throw new Error('expected { id, method, request }');
  } catch (error) {
    ws.send(encodeWire({ id: null, result: { ok: false, error: { code: 'INVALID_ARGUMENT', message: `malformed call: ${(error as Error).message}` } } }));
    return;
  }
  let result: ApiResult<unknown>;
  try {
    if (!isApiMethod(call.method)) throw new QuadraError('INVALID_ARGUMENT', `unknown method '${call.method}'`);
    const method: ApiMethod = call.method;
    const request = validateRequest(method, call.request);
    const handler = api[method] as (request: unknown) => Promise<unknown>;
    result = { ok: true, value: await handler.call(api, request) };
  } catch (error) {
    result = { ok: false, error: toErrorData(error) };
  }
  if (ws.readyState === ws.OPEN) ws.send(encodeWire({ id: call.id, result }));
}

function serveStatic(dir: string | null, pathname: string, res: ServerResponse): void {
  if (!dir || !existsSync(path.join(dir, 'index.html'))) {
    return plain(res, 200, 'Quadra Matrix Workstation is running, but the UI has not been built yet (npm run build).');
  }
  const relative = decodeURIComponent(pathname === '/' ? '/index.html' : pathname);
  const file = path.resolve(dir, `.${relative}`);
  // Never outside the renderer folder, whatever the path says.
  if (!file.startsWith(path.resolve(dir) + path.sep) || !existsSync(file) || !statSync(file).isFile()) return plain(res, 404, 'Not found');
  res.writeHead(200, { 'Content-Type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream' });
  createReadStream(file).pipe(res);
}

function securityHeaders(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'no-store');
}

function plain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(`${text}\n`);
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
