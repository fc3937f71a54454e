import { readdirSync } from 'node:fs';
import net from 'node:net';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_METHOD_NAMES } from '../../src-shared/api';
import { expectAlive, frame, inParallel, prng, rawExchange, sendFrames, startWorkstation, type Workstation } from './helpers';

/**
 * No request, frame or message of any shape stops `quadra serve` (DESIGN.md §3). Each test sends a
 * bounded, seeded batch at a real server (a WorkstationService over a temporary SQLite store), then
 * checks that it still serves the page and answers listRuns on a fresh WebSocket.
 */

const MAX_MESSAGE = 64 * 1024;
const MAX_UPLOAD = 32 * 1024;
let w: Workstation;
let port: number;
let token: string;

beforeAll(async () => {
  w = await startWorkstation({ maxUploadBytes: MAX_UPLOAD, maxMessageBytes: MAX_MESSAGE });
  port = w.server.port;
  token = w.server.token;
});
afterAll(async () => {
  await w.close();
});

const upgradeHeaders = () => `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n`;

describe('the crashers, by name', () => {
  // Once `new URL('//', base)` threw outside any try: a protocol-relative reference names no host.
  it.each(['//', '//:99999/', '//[/'])('GET %s answers 401 without the token and 404 with it, with or without Upgrade: websocket', async (target) => {
    const plain = await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    expect(plain.status).toBe(401);
    const upgrade = await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOrigin: http://127.0.0.1:${port}\r\n${upgradeHeaders()}\r\n`);
    expect(upgrade.status).toBe(401);
    const withToken = await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nCookie: quadra_token=${token}\r\n\r\n`);
    expect(withToken.status).toBe(404);
    const upgradeWithToken = await rawExchange(port, `GET ${target}?token=${token} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOrigin: http://127.0.0.1:${port}\r\n${upgradeHeaders()}\r\n`);
    expect(upgradeWithToken.status).toBe(404);
    await expectAlive(w);
  });

  it.each(['*', 'http://127.0.0.1/', 'x'])('GET %s (not a path) answers 400', async (target) => {
    expect((await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nCookie: quadra_token=${token}\r\n\r\n`)).status).toBe(400);
    expect((await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nCookie: quadra_token=${token}\r\n${upgradeHeaders()}\r\n`)).status).toBe(400);
    await expectAlive(w);
  });

  it.each(['/%', '/%E0%A4%A'])('GET %s with the token answers 400 (malformed percent-encoding)', async (target) => {
    const answer = await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nCookie: quadra_token=${token}\r\n\r\n`);
    expect(answer.status).toBe(400);
    await expectAlive(w);
  });

  it('a frame with a reserved opcode closes that socket with 1002', async () => {
    for (const opcode of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
      expect((await sendFrames(port, token, [frame({ opcode, payload: Buffer.from('x') })])).code).toBe(1002);
    }
    await expectAlive(w);
  });

  it('a frame with RSV bits set closes that socket with 1002', async () => {
    for (const rsv of [1, 2, 4, 7]) expect((await sendFrames(port, token, [frame({ opcode: 1, rsv, payload: Buffer.from('{}') })])).code).toBe(1002);
    await expectAlive(w);
  });

  it('a continuation frame first closes that socket with 1002', async () => {
    expect((await sendFrames(port, token, [frame({ opcode: 0, payload: Buffer.from('{}') })])).code).toBe(1002);
    await expectAlive(w);
  });

  it('a length over 2^53 (and 2^63) closes that socket with 1009', async () => {
    for (const declaredLength of [2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n]) {
      expect((await sendFrames(port, token, [frame({ opcode: 2, declaredLength })])).code).toBe(1009);
    }
    await expectAlive(w);
  });

  it('a header declaring more than maxPayload closes that socket with 1009', async () => {
    expect((await sendFrames(port, token, [frame({ opcode: 1, declaredLength: BigInt(MAX_MESSAGE + 1) })])).code).toBe(1009);
    await expectAlive(w);
  });

  it('a message over maxPayload from a real client closes that socket with 1009, nothing else', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api?token=${token}`, { headers: { origin: `http://127.0.0.1:${port}` } });
    await new Promise((resolve) => ws.once('open', resolve));
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.send('x'.repeat(MAX_MESSAGE + 10));
    expect(await closed).toBe(1009);
    await expectAlive(w);
  });
});

describe('fuzz', () => {
  it('random and malformed request lines and URLs over raw TCP', async () => {
    const r = prng(1);
    const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE', 'PATCH', 'PRI', 'get', 'G\u00e9T', 'GET GET', '', 'M-SEARCH', 'X'.repeat(300)];
    const fragments = ['/', '//', '//:99999/', '//[/', '/%', '/%E0%A4%A', '/%00', '/%2e%2e/%2e%2e/etc/passwd', '/..', '/../../', '*', 'http://evil/', 'http://127.0.0.1:1/', '/api', '/upload', '/index.html', '/?token=', `/?token=${token}`, '/?token=%', '/?%%%', '/#x', '/\u00ff', '/\\..\\', '/a b', '/\t', '/%C0%AF', '/' + 'a'.repeat(20_000), '[::1]', '//user@host/', '/;a=b', '/?a=' + '%'.repeat(50)];
    const versions = ['HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/9.9', 'HTTP/1.1.1', 'HTTPS/1.1', '', 'HTTP/1', 'http/1.1'];
    const cases = Array.from({ length: 900 }, () => {
      if (r.chance(0.1)) return r.bytes(1 + r.int(300));
      let target = r.pick(fragments);
      if (r.chance(0.4)) target += r.pick(fragments);
      if (r.chance(0.2)) target = target.slice(0, r.int(target.length + 1));
      const auth = r.pick(['', `Cookie: quadra_token=${token}\r\n`, `Authorization: Bearer ${token}\r\n`, 'Cookie: quadra_token=wrong\r\n']);
      const upgrade = r.chance(0.25) ? `Origin: http://127.0.0.1:${port}\r\n${upgradeHeaders()}` : '';
      const line = `${r.pick(methods)} ${target} ${r.pick(versions)}`;
      return Buffer.from(`${line}\r\nHost: 127.0.0.1:${port}\r\n${auth}${upgrade}\r\n`, 'latin1');
    });
    const statuses = new Map<number | null, number>();
    await inParallel(cases, 24, async (request) => {
      const answer = await rawExchange(port, request);
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      // 5xx would mean an exception we did not foresee; 101 is a valid upgrade among the random ones.
      if (answer.status !== null) expect(answer.status === 101 || (answer.status >= 200 && answer.status < 500), `${request.toString('latin1').slice(0, 80)} → ${answer.status}`).toBe(true);
    });
    expect(statuses.get(400)).toBeGreaterThan(50);
    await expectAlive(w);
  });

  it('random headers: huge, duplicate, invalid characters, bad cookies, bad Host, bad Origin', async () => {
    const r = prng(2);
    const hosts = [`127.0.0.1:${port}`, `localhost:${port}`, '', '[', '[::1', 'a b', 'x:99999', 'evil.example', `127.0.0.1:${port}@evil`, `127.0.0.1:${port}/x`, '\u00ff', '%', 'h'.repeat(5000)];
    const origins = [`http://127.0.0.1:${port}`, `http://localhost:${port}`, 'null', 'http://[', 'javascript:alert(1)', 'file://', `http://127.0.0.1:${port}@evil`, 'http://evil.example', `https://127.0.0.1:${port}`, 'http://127.0.0.1:1', '', 'o'.repeat(9000), '\u00e9'];
    const cookies = [`quadra_token=${token}`, 'quadra_token=', 'quadra_token', '=', ';;;;', `a=1; quadra_token=${token}; quadra_token=x`, 'quadra_token=%ZZ', `quadra_token=${token}\u00ff`, 'c'.repeat(20_000), Array.from({ length: 300 }, (_, i) => `k${i}=v`).join('; ')];
    const junk = () => r.bytes(1 + r.int(40)).toString('latin1').replace(/\r|\n/g, '');
    const cases = Array.from({ length: 700 }, () => {
      const headers: string[] = [];
      if (r.chance(0.85)) headers.push(`Host: ${r.pick(hosts)}`);
      if (r.chance(0.15)) headers.push(`Host: ${r.pick(hosts)}`);
      if (r.chance(0.6)) headers.push(`Cookie: ${r.pick(cookies)}`);
      if (r.chance(0.2)) headers.push(`Cookie: ${r.pick(cookies)}`);
      if (r.chance(0.5)) headers.push(`Origin: ${r.pick(origins)}`);
      if (r.chance(0.1)) headers.push(`Origin: ${r.pick(origins)}`);
      if (r.chance(0.2)) headers.push(`Authorization: ${r.pick(['Bearer ', `Bearer ${token}`, 'Basic x', 'Bearer ' + 'b'.repeat(3000)])}`);
      if (r.chance(0.15)) headers.push(`X-Big: ${'v'.repeat(r.pick([100, 8000, 17_000, 70_000]))}`);
      if (r.chance(0.15)) headers.push(`${junk()}: ${junk()}`);
      if (r.chance(0.1)) headers.push(`Content-Length: ${r.pick(['-1', 'abc', '1e3', '99999999999999999999', '5', '0'])}`);
      if (r.chance(0.1)) headers.push(`Transfer-Encoding: ${r.pick(['chunked', 'gzip', 'chunked, chunked', 'x'])}`);
      if (r.chance(0.3)) headers.push(...upgradeHeaders().trim().split('\r\n'));
      if (r.chance(0.1)) headers.push(`Sec-WebSocket-Version: ${r.pick(['8', '', 'x'])}`, `Sec-WebSocket-Key: ${r.pick(['', 'short', '!!!!'])}`);
      const target = r.pick(['/', '/api', `/api?token=${token}`, `/?token=${token}`, '/upload', '/index.html']);
      const body = r.chance(0.1) ? r.bytes(r.int(50)).toString('latin1') : '';
      return Buffer.from(`${r.pick(['GET', 'POST'])} ${target} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n${body}`, 'latin1');
    });
    await inParallel(cases, 24, async (request) => {
      const answer = await rawExchange(port, request, { waitMs: 1500 });
      if (answer.status !== null) expect(answer.status === 101 || (answer.status >= 200 && answer.status < 500), `${request.toString('latin1').slice(0, 120)} → ${answer.status}`).toBe(true);
    });
    await expectAlive(w);
  });

  it('random WebSocket frames after a valid upgrade', async () => {
    const r = prng(3);
    const cases = Array.from({ length: 500 }, () => {
      const frames: Buffer[] = [];
      for (let i = 0, n = 1 + r.int(3); i < n; i++) {
        const kind = r.int(10);
        const payload = r.bytes(r.pick([0, 1, 2, 5, 125, 126, 200, 70_000]));
        if (kind === 0) frames.push(r.bytes(1 + r.int(64))); // noise
        else if (kind === 1) frames.push(frame({ opcode: r.int(16), rsv: r.int(8), payload, masked: r.chance(0.7), fin: r.chance(0.7) }));
        else if (kind === 2) frames.push(frame({ opcode: r.pick([1, 2]), declaredLength: r.pick([2n ** 63n, 2n ** 53n, 2n ** 32n, BigInt(MAX_MESSAGE + 1), 126n, 65_536n]), payload: r.bytes(r.int(10)) }));
        else if (kind === 3) frames.push(frame({ opcode: r.pick([1, 2]), payload, masked: false })); // clients must mask
        else if (kind === 4) frames.push(frame({ opcode: r.pick([1, 2, 8, 9]), payload }).subarray(0, 1 + r.int(6))); // cut short
        else if (kind === 5) frames.push(frame({ opcode: 0, payload })); // continuation first
        else if (kind === 6) frames.push(frame({ opcode: r.pick([8, 9, 10]), payload: r.bytes(r.pick([1, 3, 126, 300])), fin: r.chance(0.5) })); // bad control frames
        else if (kind === 7) frames.push(frame({ opcode: 8, payload: Buffer.from([r.int(256), r.int(256), ...r.bytes(r.int(5))]) })); // close codes of any value
        else if (kind === 8) frames.push(frame({ opcode: 1, payload: Buffer.from([0xc3, 0x28, 0xe0, 0x80]) })); // invalid UTF-8 text
        else frames.push(frame({ opcode: 1, payload: Buffer.from(r.pick(['{}', '[]', '{"id":1,"method":"listRuns","request":{}}', 'null', '1e999'])), fin: r.chance(0.8) }), frame({ opcode: 0, payload: Buffer.from('}') }));
      }
      return frames;
    });
    const codes = new Map<number | null, number>();
    await inParallel(cases, 16, async (frames) => {
      const { code } = await sendFrames(port, token, frames, 2000);
      codes.set(code, (codes.get(code) ?? 0) + 1);
    });
    // Protocol errors were answered with their close codes, not with a dead process.
    expect(codes.get(1002)).toBeGreaterThan(20);
    expect(codes.get(1009)).toBeGreaterThan(5);
    await expectAlive(w);
  });

  it('random messages and wire calls: every one is answered, as data', async () => {
    const r = prng(4);
    const methods = [...API_METHOD_NAMES.filter((m) => m !== 'getHardware' && m !== 'startRun' && m !== 'resumeRun' && m !== 'runBenchmarkSuite'), 'rm -rf', '__proto__', 'constructor', 'toString', 'hasOwnProperty', '', 'x'.repeat(5000)];
    const value = (depth: number): unknown => {
      const kind = r.int(depth > 3 ? 6 : 10);
      if (kind === 0) return null;
      if (kind === 1) return r.int(2) === 0;
      if (kind === 2) return r.pick([0, -1, 1.5, 1e308, -0, 2 ** 53 + 1, 1]);
      if (kind === 3) return r.pick(['', 'x', 'a'.repeat(1000), '\u0000', '../../etc/passwd', '0123456789abcdef0123456789abcdef', 'ZZZZ', '$bytes']);
      if (kind === 4) return { $bytes: r.pick(['', 'AAAA', '!!!!', 'A', 'AB=C', '====', '\u00e9', 'AAA=', 'A'.repeat(4001)]) };
      if (kind === 5) return [];
      if (kind <= 7) return Array.from({ length: r.int(4) }, () => value(depth + 1));
      const keys = ['fileName', 'bytes', 'uploadId', 'name', 'runId', 'limit', 'action', 'checkpointId', 'fp16', 'fieldSize', 'enabled', 'suiteId', '__proto__', 'constructor'];
      return Object.fromEntries(Array.from({ length: r.int(5) }, () => [r.pick(keys), value(depth + 1)]));
    };
    const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
    const messages = Array.from({ length: 1200 }, (_, i) => {
      const kind = r.int(8);
      if (kind === 0) return r.bytes(r.int(100)).toString('latin1');
      if (kind === 1) return r.pick(['', '{', 'null', '[]', '"x"', '1', '{"id":"1"}', '{"id":null,"method":"listRuns"}', '{"id":1}', deep(20_000), `{"id":${i},"method":"listRuns","request":${deep(10_000)}}`, `{"id":${i},"method":"listRuns","request":{"limit":${deep(5000)}}}`]);
      if (kind === 2) return JSON.stringify({ id: i, method: r.pick(methods), request: value(0) });
      if (kind === 3) return JSON.stringify({ id: i, method: r.pick(methods), request: { fileName: r.pick(['a.csv', '', '../x.csv', 'x.npy']), bytes: { $bytes: r.pick(['!!', 'AAA', '', 'QUJD']) }, uploadId: value(2) } });
      if (kind === 4) return JSON.stringify({ id: i, method: r.pick(['importDataset', 'previewDataset', 'importCheckpoint']), request: { fileName: 'x.csv', uploadId: r.pick(['0'.repeat(32), 'f'.repeat(32), '../../etc/passwd', '0'.repeat(31) + 'g', 'A'.repeat(32)]) } });
      if (kind === 5) return JSON.stringify({ id: i, method: r.pick(methods), request: value(0), extra: value(0) });
      if (kind === 6) return JSON.stringify({ id: r.pick([i, -i, i + 0.5]), method: value(1), request: value(1) });
      return JSON.stringify(value(0));
    });
    const clients = await Promise.all(Array.from({ length: 4 }, () => new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/api?token=${token}`, { headers: { origin: `http://127.0.0.1:${port}` } });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    })));
    let answered = 0;
    const all = new Promise<void>((resolve) => {
      for (const ws of clients) {
        ws.on('message', (data) => {
          const message = JSON.parse(data.toString()) as { id: unknown; result: { ok: boolean; error?: { code: string } } };
          expect(typeof message.result.ok).toBe('boolean');
          if (!message.result.ok) expect(message.result.error!.code).not.toBe('INTERNAL');
          if (++answered === messages.length) resolve();
        });
      }
    });
    messages.forEach((message, i) => clients[i % clients.length]!.send(message));
    await all;
    for (const ws of clients) expect(ws.readyState).toBe(WebSocket.OPEN);
    clients.forEach((ws) => ws.close());
    await expectAlive(w);
  });

  it('random uploads: no token, wrong origin, over the limit, aborted mid-body; no partial file is left', async () => {
    const r = prng(5);
    const kinds = ['ok', 'no-token', 'wrong-origin', 'declared-over', 'chunked-over', 'aborted', 'wrong-method'] as const;
    const expected: Record<(typeof kinds)[number], number[]> = { ok: [200], 'no-token': [401], 'wrong-origin': [403], 'declared-over': [413], 'chunked-over': [413], aborted: [], 'wrong-method': [405] };
    // Earlier batches may have left uploads (a random POST /upload can be a valid one).
    const before = readdirSync(w.uploads.dir).length;
    let succeeded = 0;
    await inParallel(Array.from({ length: 200 }, () => r.pick(kinds)), 12, async (kind) => {
      const size = kind === 'ok' ? r.int(MAX_UPLOAD + 1) : MAX_UPLOAD + 1 + r.int(50_000);
      const body = r.bytes(Math.min(size, 100_000));
      const auth = kind === 'no-token' ? '' : `Cookie: quadra_token=${token}\r\n`;
      const origin = kind === 'wrong-origin' ? 'Origin: http://evil.example\r\n' : r.chance(0.5) ? `Origin: http://127.0.0.1:${port}\r\n` : '';
      const method = kind === 'wrong-method' ? r.pick(['PUT', 'DELETE', 'PATCH']) : 'POST';
      const head = `${method} /upload HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${auth}${origin}`;
      let answer;
      if (kind === 'chunked-over') {
        const chunks = [body.subarray(0, 20_000), body.subarray(20_000)].map((c) => `${c.length.toString(16)}\r\n${c.toString('latin1')}\r\n`).join('');
        answer = await rawExchange(port, Buffer.from(`${head}Transfer-Encoding: chunked\r\n\r\n${chunks}0\r\n\r\n`, 'latin1'), { halfClose: false });
      } else if (kind === 'aborted') {
        // Declares the whole body, sends part of it, and hangs up.
        answer = await rawExchange(port, Buffer.concat([Buffer.from(`${head}Content-Length: ${MAX_UPLOAD}\r\n\r\n`), body.subarray(0, r.int(MAX_UPLOAD))]), { waitMs: 200, halfClose: false });
      } else {
        answer = await rawExchange(port, Buffer.concat([Buffer.from(`${head}Content-Length: ${body.length}\r\n\r\n`, 'latin1'), body]), { halfClose: false });
      }
      if (kind === 'ok') succeeded++;
      // A refused body may also end in a reset before the answer is read: never in a crash or a 5xx.
      if (answer.status !== null) expect(expected[kind].includes(answer.status) || kind === 'chunked-over', `${kind} → ${answer.status}`).toBe(true);
      if (kind === 'ok' || kind === 'no-token' || kind === 'wrong-origin' || kind === 'declared-over') expect(answer.status, kind).toBe(expected[kind][0]);
    });
    await expectAlive(w);
    // Wait for the aborted ones to be noticed, then: only finished uploads, no partial files.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const files = readdirSync(w.uploads.dir);
    expect(files.filter((f) => f.endsWith('.part'))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.upload'))).toHaveLength(before + succeeded);
  });

  it('many connections opened and dropped mid-handshake', async () => {
    await inParallel(Array.from({ length: 200 }, (_, i) => i), 32, async (i) => {
      await new Promise<void>((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.write(`GET /api?token=${token} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${i % 2 ? upgradeHeaders() : ''}`.slice(0, 10 + (i % 120)));
          setTimeout(() => socket.destroy(), i % 5);
        });
        socket.on('error', () => undefined);
        socket.on('close', () => resolve());
      });
    });
    await expectAlive(w);
  });
});
