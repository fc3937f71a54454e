import { BROWSER_WORKER_PLATFORM } from './browser-worker-platform';
import { messagePortChannel, type StandardMessagePort } from './message-port-channel';
import type { FromWorker, ToWorker } from './protocol';
import { serveWorker } from './worker-runtime';

/**
 * Entry of a webgpu training worker in a page (bundled by build.mjs into dist/electron/gpu-worker.js,
 * loaded by gpu-worker.html): in the app a hidden, sandboxed window (renderer-transport.ts), since
 * Electron's V8 memory cage blocks dawn.node's readback; Chromium's own WebGPU computes instead.
 * No Node anywhere below this file. The host hands the page one MessagePort with a window message
 * `{ type: 'quadra-worker-port', pid? }` (in the app the preload relays the one main sent), and the
 * page serves the worker protocol on it: the webgpu kernel only, no files (browser-worker-platform.ts).
 */
export const WORKER_PORT_MESSAGE = 'quadra-worker-port';

interface PortMessage {
  type: typeof WORKER_PORT_MESSAGE;
  /** The renderer's process id, as the host knows it (a page cannot). */
  pid?: number;
}

/** The window, as this file uses it (the project compiles without lib.dom). */
const page = globalThis as unknown as {
  addEventListener(type: 'message', listener: (event: { source: unknown; data: unknown; ports: readonly StandardMessagePort[] }) => void): void;
};

function isPortMessage(data: unknown): data is PortMessage {
  return typeof data === 'object' && data !== null && (data as { type?: unknown }).type === WORKER_PORT_MESSAGE;
}

let serving = false;
page.addEventListener('message', (event) => {
  // Only this window's own messages (the preload's relay, or the test's hand-over); one port per page.
  if (serving || event.source !== page || !isPortMessage(event.data) || !event.ports[0]) return;
  serving = true;
  const channel = messagePortChannel<ToWorker, FromWorker>(event.ports[0]);
  serveWorker(channel, { pid: event.data.pid ?? 0, cudaVisibleDevices: null }, BROWSER_WORKER_PLATFORM);
});
