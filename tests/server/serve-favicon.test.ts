import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkstationApi } from '../../src-shared/api';
import { startServer, type RunningServer } from '../../src-main/server/serve';

/**
 * The app icon in serve mode: a static folder laid out as vite builds dist/renderer (index.html
 * plus src-renderer/public copied beside it), so browsers get an icon instead of a 404 on every
 * page load.
 */
const ROOT = path.resolve(__dirname, '../..');
const PUBLIC = path.join(ROOT, 'src-renderer/public');
const api = new Proxy({} as WorkstationApi, { get: () => async () => [] });

let server: RunningServer;
const staticDir = mkdtempSync(path.join(os.tmpdir(), 'quadra-static-icon-'));

beforeAll(async () => {
  cpSync(PUBLIC, staticDir, { recursive: true });
  writeFileSync(path.join(staticDir, 'index.html'), '<!doctype html><title>Quadra</title>');
  server = await startServer({ api, port: 0, staticDir });
});
afterAll(async () => {
  await server.close();
  rmSync(staticDir, { recursive: true, force: true });
});

/** As a browser asks after the first page load: with the session cookie. */
async function get(pathname: string): Promise<Response> {
  const first = await fetch(`http://127.0.0.1:${server.port}/?token=${server.token}`);
  const cookie = first.headers.get('set-cookie')!.split(';')[0]!;
  return fetch(`http://127.0.0.1:${server.port}${pathname}`, { headers: { cookie } });
}

describe('serve mode serves the app icon', () => {
  it('GET /favicon.ico answers 200 with an image', async () => {
    const res = await get('/favicon.ico');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/x-icon');
    expect(Buffer.from(await res.arrayBuffer()).equals(readFileSync(path.join(PUBLIC, 'favicon.ico')))).toBe(true);
  });

  it("GET /icon.svg (index.html's <link rel=\"icon\">) answers 200 with an SVG the page's CSP allows", async () => {
    const res = await get('/icon.svg');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/svg+xml');
    expect(await res.text()).toBe(readFileSync(path.join(PUBLIC, 'icon.svg'), 'utf8'));
    // Same origin is 'self' for img-src; the SVG's own <style> (small-size variant) needs inline styles.
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toMatch(/img-src 'self'/);
    expect(csp).toMatch(/style-src [^;]*'unsafe-inline'/);
  });

  it('still asks for the token first', async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/favicon.ico`);
    expect(res.status).toBe(401);
  });
});
