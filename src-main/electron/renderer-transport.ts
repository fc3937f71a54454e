import { BrowserWindow, MessageChannelMain } from 'electron';
import path from 'node:path';
import { transportFactory, type SpawnOptions, type TransportFactory, type WorkerTransport } from '../training/transport';

/** The channel the worker window's preload (gpu-worker-preload.ts) takes its MessagePort from. */
const WORKER_PORT = 'quadra-worker-port';

/** Windows that are training workers, not the app's UI (main.ts leaves them out of its window logic). */
const workerWindows = new WeakSet<BrowserWindow>();

export function isWorkerWindow(window: BrowserWindow): boolean {
  return workerWindows.has(window);
}

/**
 * webgpu training workers inside the desktop app: hidden, sandboxed windows running
 * gpu-worker.html (browser-worker.ts), where Chromium's own WebGPU computes — dawn.node's readback
 * is blocked by Electron's V8 memory cage, so a utility process cannot run the webgpu kernel. Each
 * worker speaks the same protocol as the others over a MessageChannelMain; the coordinator sees
 * the same WorkerTransport. The page has no file system, so these workers train alone (one
 * worker) or refuse the file gradient exchange by name.
 */
export function rendererTransport(page: string): TransportFactory {
  return transportFactory(page, spawnWindow);
}

function spawnWindow(page: string, { rank }: SpawnOptions): WorkerTransport {
  const window = new BrowserWindow({
    show: false,
    title: `Quadra training worker ${rank}`,
    webPreferences: {
      // Only relays the MessagePort to the page; it exposes nothing.
      preload: path.join(path.dirname(page), 'gpu-worker-preload.cjs'),
      sandbox: true,
      contextIsolation: true,
      nodeIntegration: false,
      webSecurity: true,
      spellcheck: false,
      // A hidden window's timers and rAF are throttled by default; training must not be.
      backgroundThrottling: false,
      disableBlinkFeatures: 'Auxclick',
    },
  });
  workerWindows.add(window);
  const contents = window.webContents;
  const { port1, port2 } = new MessageChannelMain();
  let pid: number | undefined;
  let exited = false;
  let killedBy: string | null = null;
  const exitListeners: Array<(code: number | null, signal: string | null) => void> = [];

  const exit = (code: number | null, signal: string | null) => {
    if (exited) return;
    exited = true;
    port1.close();
    if (!window.isDestroyed()) window.destroy();
    for (const listener of exitListeners) listener(code, signal);
  };
  const report = (what: string) => process.stderr.write(`quadra: training worker window ${rank} ${what}\n`);

  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
  contents.on('will-navigate', (event) => event.preventDefault());
  contents.once('did-finish-load', () => {
    pid = contents.getOSProcessId();
    // Messages main posted before this wait in the channel and arrive with the port.
    contents.postMessage(WORKER_PORT, { pid }, [port2]);
  });
  contents.on('did-fail-load', (_event, code, description, url, isMainFrame) => {
    if (!isMainFrame) return;
    report(`could not load ${url}: ${description} (${code})`);
    exit(1, null);
  });
  // The page's uncaught errors (e.g. its module failed to load) would otherwise leave no trace.
  contents.on('console-message', (event) => {
    if (event.level === 'error') report(`page error: ${event.message} (${event.sourceId}:${event.lineNumber})`);
  });
  // A crash, OOM or kill of the renderer: an unexpected exit, which fails the run.
  contents.on('render-process-gone', (_event, details) => {
    report(`stopped: ${details.reason} (exit code ${details.exitCode})`);
    exit(details.exitCode, details.reason === 'killed' ? 'SIGKILL' : null);
  });
  // The page closes its port after 'shutdown': the worker is done.
  port1.on('close', () => exit(0, null));
  window.on('closed', () => exit(killedBy ? null : 0, killedBy));
  port1.start();
  void window.loadFile(page);

  return {
    get pid() {
      return pid;
    },
    send: (message) => {
      if (!exited) port1.postMessage(message);
    },
    onMessage: (listener) => port1.on('message', (event) => listener(event.data)),
    onExit: (listener) => exitListeners.push(listener),
    kill: (signal = 'SIGTERM') => {
      if (exited) return;
      killedBy = signal;
      window.destroy();
    },
  };
}
