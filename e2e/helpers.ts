import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

/** Shared by the browser tests: a real `quadra serve` and Debian's headless Chromium (never a downloaded browser). */
export const ROOT = path.resolve(__dirname, '..');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const QUADRA = path.join(ROOT, 'src-main/cli/quadra.mjs');

/** Why the UI tests cannot run here, or null when they can. */
export function uiSkipReason(): string | null {
  if (!existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install chromium)`;
  if (!existsSync(path.join(ROOT, 'dist/renderer/index.html'))) return 'renderer not built (npm run build)';
  return null;
}

/** Starts `quadra serve` on a free port and resolves with the URL it prints (token included). */
export async function startServe(db: string, env: NodeJS.ProcessEnv = process.env): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [QUADRA, 'serve', '--port', '0', '--db', db], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const match = /http:\/\/\S+\/\?token=\S+/.exec(text);
      if (match) resolve(match[0]);
    });
    child.once('exit', (code) => reject(new Error(`quadra serve exited with ${code}`)));
  });
  return { url, child };
}

/** Stops a `quadra serve` started by startServe (Ctrl-C, as a user would) and waits for it to exit. */
export async function stopServe(server: ChildProcess | null): Promise<void> {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGINT');
  await exited;
}

/** `extraArgs`: more switches, e.g. the ones that give headless Chromium a WebGPU adapter. */
/** A UI test's teardown: the browser, then its `quadra serve`, then its temporary folder. */
export async function closeUi(browser: Browser | null, server: ChildProcess | null, folder: string): Promise<void> {
  await browser?.close();
  await stopServe(server);
  rmSync(folder, { recursive: true, force: true });
}

export function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-gpu', ...extraArgs],
  });
}

/** Runs a `quadra` command against a database, e.g. to seed runs. */
export function quadraCli(args: string[], db: string): void {
  execFileSync(process.execPath, [QUADRA, ...args, '--db', db], { cwd: ROOT, stdio: 'ignore' });
}

/** Starts a run in the page's own server, over a second WebSocket like the app's client uses. */
export function startRun(page: Page, request: Record<string, unknown>): Promise<{ runId: number }> {
  return page.evaluate(
    (body) =>
      new Promise<{ runId: number }>((resolve, reject) => {
        // Runs in the page: its own origin, so the server's Origin check passes.
        const { host } = (globalThis as unknown as { location: { host: string } }).location;
        const ws = new WebSocket(`ws://${host}/api`);
        ws.onopen = () => ws.send(JSON.stringify({ id: 1, method: 'startRun', request: body }));
        ws.onerror = () => reject(new Error('WebSocket failed'));
        ws.onmessage = (event) => {
          const message = JSON.parse(String(event.data)) as { id?: number; result?: { ok: boolean; value?: { runId: number }; error?: { message: string } } };
          if (message.id !== 1 || !message.result) return;
          ws.close();
          if (message.result.ok) resolve(message.result.value!);
          else reject(new Error(message.result.error?.message));
        };
      }),
    request,
  );
}
