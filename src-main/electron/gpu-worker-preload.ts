import { ipcRenderer } from 'electron';

/**
 * Preload of a hidden webgpu worker window (renderer-transport.ts). Its one job: the MessagePort
 * main sends arrives here, in the isolated world, and is handed to the page's main world (where
 * browser-worker.ts waits for it) by window.postMessage. Nothing is exposed to the page.
 */
const WORKER_PORT = 'quadra-worker-port';

/** The window, as this file uses it (the project compiles without lib.dom). */
const page = globalThis as unknown as { postMessage(message: unknown, targetOrigin: string, transfer: unknown[]): void };

ipcRenderer.once(WORKER_PORT, (event, message: { pid?: number }) => {
  page.postMessage({ type: WORKER_PORT, pid: message.pid }, '*', [...event.ports]);
});
