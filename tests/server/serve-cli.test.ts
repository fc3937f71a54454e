import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, describe, expect, it } from 'vitest';
import type { WorkstationApi } from '../../src-shared/api';
import { reachableHost, startServer } from '../../src-main/server/serve';

/** `quadra serve` as a user starts it: a real child process, its exit code and what it prints. */

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'src-main/cli/quadra.mjs');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-serve-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Started {
  code: Promise<number | null>;
  stdout: () => string;
  stderr: () => string;
  kill(): void;
}

function quadraServe(args: string[]): Started {
  const child = spawn(process.execPath, [BIN, 'serve', '--db', path.join(tmp, `serve-${Math.random().toString(36).slice(2)}.sqlite`), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return { code: new Promise((resolve) => child.once('exit', (code) => resolve(code))), stdout: () => stdout, stderr: () => stderr, kill: () => child.kill('SIGINT') };
}

async function until(predicate: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('quadra serve, from the command line', () => {
  it('on a busy port says which port is taken and how to choose another, and exits 1', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const serve = quadraServe(['--port', String(port)]);
      expect(await serve.code).toBe(1);
      expect(serve.stderr()).toContain(`quadra serve: port ${port} on 127.0.0.1 is already in use (another quadra serve?); choose another with --port N, or --port 0 for a free one`);
      expect(serve.stderr()).not.toContain('internal error');
      expect(serve.stderr()).not.toContain('EADDRINUSE');
      expect(serve.stdout()).toBe('');
    } finally {
      blocker.close();
    }
  });

  it('with --host 0.0.0.0 prints a URL a user can open and warns that the token guards a network-reachable server', async () => {
    const serve = quadraServe(['--host', '0.0.0.0', '--port', '0']);
    try {
      await until(() => /token=\S+/.test(serve.stdout()) && serve.stderr().includes('warning'));
      const url = /http:\/\/\S+\/\?token=\S+/.exec(serve.stdout())![0];
      const host = new URL(url).hostname;
      expect(host).toBe(reachableHost('0.0.0.0'));
      expect(host).not.toBe('0.0.0.0');
      expect(serve.stderr()).toMatch(/warning: listening on every network interface \(0\.0\.0\.0\): the token alone now guards a server reachable from the network/);
      expect(serve.stderr()).toContain('SSH tunnel');
    } finally {
      serve.kill();
      expect(await serve.code).toBe(0);
    }
  });
});

describe('a wildcard bind', () => {
  it("prints this machine's address, and a page opened by it connects (its own origin)", async () => {
    const api = new Proxy({} as WorkstationApi, { get: () => async () => [] });
    const server = await startServer({ api, host: '0.0.0.0', port: 0 });
    try {
      const { hostname, origin } = new URL(server.url);
      expect(hostname).toBe(reachableHost('0.0.0.0'));
      expect(server.host).toBe('0.0.0.0');
      if (net.isIPv4(hostname)) {
        expect((await fetch(server.url)).status).toBe(200);
        const ws = new WebSocket(`ws://${hostname}:${server.port}/api?token=${server.token}`, { headers: { origin } });
        await new Promise((resolve, reject) => {
          ws.once('open', resolve);
          ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
          ws.once('error', reject);
        });
        ws.close();
      }
    } finally {
      await server.close();
    }
  });
});
