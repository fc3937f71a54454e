import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkstationApi } from '../../src-shared/api';
import { CONTENT_SECURITY_POLICY } from '../../src-shared/content-security-policy';
import { QuadraError } from '../../src-shared/errors';
import { decodeWire, encodeWire } from '../../src-shared/wire';
import { startServer, type RunningServer } from '../../src-main/server/serve';

/**
 * The serve-mode transport against a small API object: what is under test is authentication,
 * origin checks, validation, dispatch and the wire format, not the services behind it.
 */
const calls: string[] = [];
const api = new Proxy({} as WorkstationApi, {
  get: (_target, method: string) => async (request: Record<string, unknown>) => {
    calls.push(method);
    if (method === 'importDataset') {
      const bytes = request.bytes as Uint8Array;
      return { id: 1, name: request.name ?? request.fileName, kind: 'csv', sourcePath: null, rows: bytes.length, width: 1, sha256: 'x', createdAt: 'now' };
    }
    if (method === 'exportCheckpoint') return { fileName: 'a.safetensors', bytes: Uint8Array.from([0, 1, 2, 250, 251, 252, 253, 254, 255]) };
    if (method === 'getRun') throw new QuadraError('NOT_FOUND', `run ${request.runId} does not exist`);
    return [];
  },
});

let server: RunningServer;
const staticDir = mkdtempSync(path.join(os.tmpdir(), 'quadra-static-'));

beforeAll(async () => {
  writeFileSync(path.join(staticDir, 'index.html'), '<!doctype html><title>Quadra</title>');
  server = await startServer({ api, port: 0, staticDir });
});
afterAll(async () => {
  await server.close();
  rmSync(staticDir, { recursive: true, force: true });
});

function connect(headers: Record<string, string>, query = `?token=${server.token}`): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/api${query}`, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

function call(ws: WebSocket, id: number, method: string, request: unknown): Promise<{ id: number; result: { ok: boolean; value?: unknown; error?: { code: string; message: string } } }> {
  return new Promise((resolve) => {
    const onMessage = (data: Buffer) => {
      const message = decodeWire(data.toString()) as { id: number; result: never };
      if (message.id === id) {
        ws.off('message', onMessage);
        resolve(message);
      }
    };
    ws.on('message', onMessage);
    ws.send(encodeWire({ id, method, request }));
  });
}

describe('quadra serve transport', () => {
  it('binds 127.0.0.1 and prints a URL carrying a random token', () => {
    expect(server.host).toBe('127.0.0.1');
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{32}$/);
  });

  it('refuses HTTP without the token, serves the UI with it and sets a strict cookie', async () => {
    const base = `http://127.0.0.1:${server.port}`;
    expect((await fetch(`${base}/`)).status).toBe(401);
    expect((await fetch(`${base}/?token=wrong`)).status).toBe(401);
    const page = await fetch(server.url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>Quadra</title>');
    expect(page.headers.get('set-cookie')).toMatch(/quadra_token=.*HttpOnly; SameSite=Strict/);
    // The one policy (src-shared), which the built page also carries as its <meta>.
    expect(page.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
    const withCookie = await fetch(`${base}/index.html`, { headers: { cookie: `quadra_token=${server.token}` } });
    expect(withCookie.status).toBe(200);
    const escape = await fetch(`${base}/..%2F..%2Fetc%2Fpasswd`, { headers: { cookie: `quadra_token=${server.token}` } });
    expect(escape.status).toBe(404);
  });

  it('refuses WebSockets without the token or from another origin', async () => {
    const origin = `http://127.0.0.1:${server.port}`;
    await expect(connect({ origin }, '')).rejects.toThrow('HTTP 401');
    await expect(connect({}, '')).rejects.toThrow('HTTP 401');
    await expect(connect({ origin: 'http://evil.example' })).rejects.toThrow('HTTP 403');
    // Cookies do not isolate ports: a page on another port of this host is another site.
    await expect(connect({ origin: 'http://127.0.0.1:1' })).rejects.toThrow('HTTP 403');
    await expect(connect({ origin: 'null' })).rejects.toThrow('HTTP 403');
    await expect(connect({ origin: `https://evil.example:${server.port}` })).rejects.toThrow('HTTP 403');
    const ws = await connect({ origin });
    ws.close();
  });

  it("accepts the page's own origin under any name it was opened by: Origin's host:port equal to Host", async () => {
    // The printed URL opened as localhost, or a --host 0.0.0.0 server opened by the machine's address.
    for (const name of ['localhost', 'workstation.lan', '10.1.2.3', '[::1]']) {
      const host = `${name}:${server.port}`;
      const ws = await connect({ host, origin: `http://${host}` });
      ws.close();
      await expect(connect({ host, origin: `http://${name}:1` })).rejects.toThrow('HTTP 403');
      await expect(connect({ host, origin: `http://127.0.0.1:${server.port}` })).rejects.toThrow('HTTP 403');
    }
  });

  it('lets a client without an Origin (a script, never a browser) connect only with the token', async () => {
    const ws = await connect({});
    ws.close();
    const bearer = await connect({ authorization: `Bearer ${server.token}` }, '');
    bearer.close();
  });

  it('takes no uploads when it was started without an upload folder', async () => {
    const refused = await fetch(`http://127.0.0.1:${server.port}/upload`, { method: 'POST', body: 'x', headers: { cookie: `quadra_token=${server.token}` } });
    expect(refused.status).toBe(404);
  });

  it('validates requests, dispatches through the API, carries bytes both ways and returns errors as data', async () => {
    const ws = await connect({ origin: `http://127.0.0.1:${server.port}` });
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => i % 256);
    const imported = await call(ws, 1, 'importDataset', { fileName: 'x.csv', bytes });
    expect(imported.result).toMatchObject({ ok: true, value: { rows: 1000, name: 'x.csv' } });
    const exported = await call(ws, 2, 'exportCheckpoint', { checkpointId: 3 });
    expect(Array.from((exported.result.value as { bytes: Uint8Array }).bytes)).toEqual([0, 1, 2, 250, 251, 252, 253, 254, 255]);
    const invalid = await call(ws, 3, 'controlRun', { runId: 1, action: 'explode' });
    expect(invalid.result).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(invalid.result.error!.message).toContain('action');
    const unknown = await call(ws, 4, 'rm -rf', {});
    expect(unknown.result.error).toMatchObject({ code: 'INVALID_ARGUMENT', message: "unknown method 'rm -rf'" });
    const failing = await call(ws, 5, 'getRun', { runId: 9 });
    expect(failing.result.error).toMatchObject({ code: 'NOT_FOUND', message: 'run 9 does not exist' });
    expect(calls).not.toContain('controlRun');
    const event = new Promise((resolve) => ws.once('message', (data) => resolve(decodeWire(data.toString()))));
    server.emit('onDidProgressBenchmark', { suiteId: 1, done: 2, total: 4, label: 'wasm × 2' });
    expect(await event).toEqual({ event: 'onDidProgressBenchmark', payload: { suiteId: 1, done: 2, total: 4, label: 'wasm × 2' } });
    ws.close();
  });
});
