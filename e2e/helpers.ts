import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContextOptions, type Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';

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
    child.stdout.on('data', (chunk: Buffer) => {
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

/** A UI test's teardown: the browser, then its `quadra serve`, then its temporary folder. */
export async function closeUi(browser: Browser | null, server: ChildProcess | null, folder: string): Promise<void> {
  await browser?.close();
  await stopServe(server);
  rmSync(folder, { recursive: true, force: true });
}

/** `extraArgs`: more switches, e.g. the ones that give headless Chromium a WebGPU adapter. */
export function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-gpu', ...extraArgs],
  });
}

/** Runs a `quadra` command against a database, e.g. to seed runs; resolves with what it printed. */
export function quadraCli(args: string[], db: string): string {
  return execFileSync(process.execPath, [QUADRA, ...args, '--db', db], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

/** Opens `view` of the workstation at `url` in `page` and waits until the page is connected. */
export async function openView(page: Page, url: string, view: string): Promise<void> {
  await page.goto(`${url}#${view}`);
  await page.waitForSelector('.connection.open');
}

/** A page whose uncaught exceptions are collected in `errors` (a UI test ends expecting none). */
export interface WatchedPage {
  page: Page;
  errors: string[];
}

/** One UI test file's `quadra serve` on a database of its own, and the Chromium that drives it. */
export interface UiSession {
  readonly url: string;
  readonly browser: Browser;
  /** The test's temporary folder (downloads, files to upload), removed after its tests. */
  readonly tmp: string;
  /** The server's database, e.g. for `quadraCli` or to read what a test did. */
  readonly db: string;
  /** A new page (1280 × 900, downloads accepted unless `options` say otherwise). */
  newPage(options?: BrowserContextOptions): Promise<WatchedPage>;
  /** A new page on `view`, connected. */
  open(view: string, options?: BrowserContextOptions): Promise<WatchedPage>;
}

/**
 * Starts a UI test file's server and browser before its tests (`seed` first fills the database,
 * e.g. with runs trained by the CLI) and stops them after. Call it inside the file's describe.
 */
export function useUi(name: string, options: { seed?: (db: string) => void; env?: NodeJS.ProcessEnv } = {}): UiSession {
  let tmp = '';
  let url = '';
  let server: ChildProcess | null = null;
  let browser: Browser | null = null;
  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), `quadra-${name}-`));
    options.seed?.(path.join(tmp, 'ui.sqlite'));
    ({ url, child: server } = await startServe(path.join(tmp, 'ui.sqlite'), options.env));
    browser = await launchChromium();
  }, 60_000);
  // SIGINT: serve cancels a run still training (keeping its checkpoint) and exits.
  afterAll(() => closeUi(browser, server, tmp), 30_000);

  const session: UiSession = {
    get url() {
      return url;
    },
    get browser() {
      if (!browser) throw new Error('the UI session has not started (useUi belongs inside the describe)');
      return browser;
    },
    get tmp() {
      return tmp;
    },
    get db() {
      return path.join(tmp, 'ui.sqlite');
    },
    async newPage(pageOptions = {}) {
      const page = await session.browser.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true, ...pageOptions });
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      return { page, errors };
    },
    async open(view, pageOptions) {
      const watched = await session.newPage(pageOptions);
      await openView(watched.page, url, view);
      return watched;
    },
  };
  return session;
}

/** Clicks what starts a download, saves the file into `folder`, and resolves with where it went and its bytes. */
export async function saveDownload(page: Page, click: () => Promise<void>, folder: string): Promise<{ file: string; name: string; bytes: Buffer }> {
  const [download] = await Promise.all([page.waitForEvent('download'), click()]);
  const name = download.suggestedFilename();
  const file = path.join(folder, name);
  await download.saveAs(file);
  return { file, name, bytes: readFileSync(file) };
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
