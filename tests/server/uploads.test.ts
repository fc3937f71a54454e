import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadStore } from '../../src-main/server/uploads';
import { apiClient, expectAlive, rawExchange, startWorkstation, type Workstation } from './helpers';

/**
 * Files reach `quadra serve` by an authenticated, streamed `POST /upload` into the server's own
 * folder; previewDataset, importDataset and importCheckpoint then name them by the id it answered.
 */

const ROOT = path.resolve(__dirname, '../..');
const CSV = readFileSync(path.join(ROOT, 'resources/datasets/sample-numeric.csv'));
const CHECKPOINT = readFileSync(path.join(ROOT, 'tests/fixtures/pytorch/small.safetensors'));
const LIMIT = 1024 * 1024;
let w: Workstation;

beforeAll(async () => {
  w = await startWorkstation({ maxUploadBytes: LIMIT });
});
afterAll(async () => {
  await w.close();
});

async function upload(body: Uint8Array, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${w.base}/upload`, { method: 'POST', body, headers: { cookie: `quadra_token=${w.server.token}`, origin: w.base, ...headers } });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

describe('POST /upload', () => {
  it('streams the body to a randomly named file in the upload folder and answers its id', async () => {
    const answer = await upload(CSV);
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({ uploadId: expect.stringMatching(/^[0-9a-f]{32}$/), bytes: CSV.length });
    const file = path.join(w.dir, 'uploads', `${answer.json.uploadId}.upload`);
    expect(readFileSync(file).equals(CSV)).toBe(true);
    expect(w.uploads.path(answer.json.uploadId as string)).toBe(file);
  });

  it('tells the client its limit, and refuses a larger body with 413 without keeping any of it', async () => {
    const limit = await fetch(`${w.base}/upload`, { headers: { cookie: `quadra_token=${w.server.token}` } });
    expect(await limit.json()).toEqual({ maxBytes: LIMIT });
    const before = readdirSync(w.uploads.dir).length;
    const declared = await upload(new Uint8Array(LIMIT + 1));
    expect(declared.status).toBe(413);
    expect((declared.json.error as { message: string }).message).toContain('upload limit of 1.0 MiB');
    // Chunked: no Content-Length, so the limit is counted as the body arrives.
    const head = `POST /upload HTTP/1.1\r\nHost: 127.0.0.1:${w.server.port}\r\nCookie: quadra_token=${w.server.token}\r\nTransfer-Encoding: chunked\r\n\r\n`;
    const chunk = Buffer.alloc(256 * 1024, 7);
    const chunks = Array.from({ length: 5 }, () => Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]));
    const counted = await rawExchange(w.server.port, Buffer.concat([Buffer.from(head), ...chunks, Buffer.from('0\r\n\r\n')]), { halfClose: false });
    expect(counted.status === 413 || counted.status === null).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(readdirSync(w.uploads.dir)).toHaveLength(before);
    await expectAlive(w);
  });

  it('deletes the partial file of an upload that stops mid-body', async () => {
    const before = readdirSync(w.uploads.dir).length;
    const head = `POST /upload HTTP/1.1\r\nHost: 127.0.0.1:${w.server.port}\r\nCookie: quadra_token=${w.server.token}\r\nContent-Length: 100000\r\n\r\n`;
    await rawExchange(w.server.port, Buffer.concat([Buffer.from(head), Buffer.alloc(40_000, 1)]), { waitMs: 200, halfClose: false });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(readdirSync(w.uploads.dir)).toHaveLength(before);
  });

  it('needs the token, and refuses another site’s Origin; a missing Origin is a script that showed the token', async () => {
    expect((await upload(CSV, { cookie: '' })).status).toBe(401);
    expect((await upload(CSV, { cookie: 'quadra_token=wrong' })).status).toBe(401);
    expect((await upload(CSV, { origin: 'http://evil.example' })).status).toBe(403);
    // Another port of the same host is another site, although its cookies are shared.
    expect((await upload(CSV, { origin: 'http://127.0.0.1:1' })).status).toBe(403);
    expect((await upload(CSV, { origin: 'null' })).status).toBe(403);
    const scripted = await fetch(`${w.base}/upload`, { method: 'POST', body: CSV, headers: { authorization: `Bearer ${w.server.token}` } });
    expect(scripted.status).toBe(200);
    const crossSite = await fetch(`${w.base}/upload`, { method: 'POST', body: CSV, headers: { cookie: `quadra_token=${w.server.token}`, 'sec-fetch-site': 'cross-site' } });
    expect(crossSite.status).toBe(403);
  });

  it('answers 405 to other methods', async () => {
    expect((await fetch(`${w.base}/upload`, { method: 'PUT', body: 'x', headers: { cookie: `quadra_token=${w.server.token}` } })).status).toBe(405);
  });
});

describe('API calls that name an upload', () => {
  it('previewDataset reads the upload where it lies and keeps it for the import; importDataset moves it into datasets/', async () => {
    const client = await apiClient(w.server.port, w.server.token);
    const { json } = await upload(CSV);
    const uploadId = json.uploadId as string;
    const uploaded = w.uploads.path(uploadId);
    const inode = statSync(uploaded).ino;
    const preview = await client.call('previewDataset', { fileName: 'sample.csv', uploadId, fieldSize: 64 });
    expect(preview).toMatchObject({ ok: true, value: { rows: 1000, width: 100, widthMismatch: { width: 100, fieldSize: 64 } } });
    expect(existsSync(uploaded)).toBe(true);
    const imported = await client.call('importDataset', { fileName: 'sample.csv', uploadId, name: 'from-upload' });
    expect(imported).toMatchObject({ ok: true, value: { name: 'from-upload', rows: 1000, width: 100 } });
    const record = w.store.datasets.getByName('from-upload')!;
    expect(path.dirname(record.sourcePath!)).toBe(path.join(w.dir, 'datasets'));
    // Renamed, not copied: the same file, and the upload is gone (used once).
    expect(statSync(record.sourcePath!).ino).toBe(inode);
    expect(existsSync(uploaded)).toBe(false);
    const again = await client.call('importDataset', { fileName: 'sample.csv', uploadId });
    expect(again.error).toMatchObject({ code: 'NOT_FOUND' });
    expect(again.error!.message).toContain('upload the file again');
    client.close();
  });

  it('importing the same content again under a taken name fails without deleting the first dataset’s file', async () => {
    const client = await apiClient(w.server.port, w.server.token);
    const first = await client.call('importDataset', { fileName: 'same.csv', bytes: new Uint8Array(CSV), name: 'same' });
    expect(first.ok).toBe(true);
    const file = w.store.datasets.getByName('same')!.sourcePath!;
    expect((await client.call('importDataset', { fileName: 'other.csv', bytes: new TextEncoder().encode('1,2\n3,4\n'), name: 'other' })).ok).toBe(true);
    const { json } = await upload(CSV);
    const clash = await client.call('importDataset', { fileName: 'same.csv', uploadId: json.uploadId, name: 'other' });
    expect(clash.error).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(existsSync(file)).toBe(true);
    expect(existsSync(path.join(w.uploads.dir, `${json.uploadId}.upload`))).toBe(false);
    client.close();
  });

  it('importCheckpoint reads the upload once and deletes it, whether or not it was a checkpoint', async () => {
    const client = await apiClient(w.server.port, w.server.token);
    const good = (await upload(CHECKPOINT)).json.uploadId as string;
    const imported = await client.call('importCheckpoint', { fileName: 'small.safetensors', uploadId: good });
    expect(imported).toMatchObject({ ok: true, value: { runId: expect.any(Number), checkpointId: expect.any(Number) } });
    expect(existsSync(path.join(w.uploads.dir, `${good}.upload`))).toBe(false);
    const bad = (await upload(CSV)).json.uploadId as string;
    const refused = await client.call('importCheckpoint', { fileName: 'x.safetensors', uploadId: bad });
    expect(refused.error).toMatchObject({ code: 'INVALID_FILE' });
    expect(existsSync(path.join(w.uploads.dir, `${bad}.upload`))).toBe(false);
    client.close();
  });

  it('takes exactly one of bytes and uploadId, and only an id of the expected shape', async () => {
    const client = await apiClient(w.server.port, w.server.token);
    for (const method of ['previewDataset', 'importDataset', 'importCheckpoint']) {
      const neither = await client.call(method, { fileName: 'a.csv' });
      expect(neither.error).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(neither.error!.message).toContain('bytes: give exactly one of bytes (the file itself) or uploadId');
      const both = await client.call(method, { fileName: 'a.csv', bytes: new Uint8Array([1]), uploadId: '0'.repeat(32) });
      expect(both.error!.message).toContain('give exactly one of bytes');
      for (const uploadId of ['../../etc/passwd', '0'.repeat(31), 'G'.repeat(32), '/tmp/x', 7]) {
        const wrong = await client.call(method, { fileName: 'a.csv', uploadId });
        expect(wrong.error).toMatchObject({ code: 'INVALID_ARGUMENT' });
        expect(wrong.error!.message).toContain('uploadId');
      }
      const unknown = await client.call(method, { fileName: 'a.csv', uploadId: 'a'.repeat(32) });
      expect(unknown.error).toMatchObject({ code: 'NOT_FOUND' });
    }
    client.close();
  });
});

describe('UploadStore', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'quadra-uploads-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('deletes uploads not used within the time to live, on use and by its sweep', async () => {
    const store = new UploadStore({ dir, ttlMs: 60_000 });
    try {
      const old = 'b'.repeat(32);
      const stale = 'c'.repeat(32);
      for (const name of [`${old}.upload`, `${stale}.part`, `${'d'.repeat(32)}.upload`, 'not-ours.txt']) {
        const file = path.join(dir, name);
        writeFileSync(file, 'x');
      }
      const anHourAgo = new Date(Date.now() - 2 * 60_000);
      utimesSync(path.join(dir, `${old}.upload`), anHourAgo, anHourAgo);
      utimesSync(path.join(dir, `${stale}.part`), anHourAgo, anHourAgo);
      expect(() => store.path(old)).toThrow(/does not exist/);
      expect(existsSync(path.join(dir, `${old}.upload`))).toBe(false);
      store.sweep();
      expect(readdirSync(dir).sort()).toEqual([`${'d'.repeat(32)}.upload`, 'not-ours.txt']);
      expect(store.path('d'.repeat(32))).toBe(path.join(dir, `${'d'.repeat(32)}.upload`));
      store.consume('d'.repeat(32));
      expect(() => store.path('d'.repeat(32))).toThrow(/does not exist/);
      expect(() => store.path('../../etc/passwd')).toThrow(/32 hex digits/);
    } finally {
      store.close();
    }
  });
});
