import type { ParentChannel } from './protocol';

/**
 * The standard MessagePort as this file needs it: a page's (DOM), an Electron renderer's (the port
 * main sends through MessageChannelMain arrives as one), or Node's global MessageChannel's in tests.
 * Declared here, not taken from lib.dom, so the project's Node typings stay as they are.
 */
export interface StandardMessagePort {
  postMessage(message: unknown, transfer?: ArrayBuffer[]): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: () => void): void;
  start(): void;
  close(): void;
}

/**
 * The worker's end of a MessagePort (a hidden renderer's, in the app). No Node import: it runs in
 * a page. Messages are structured clones; buffers are moved where the caller says.
 */
export function messagePortChannel<In, Out>(port: StandardMessagePort): ParentChannel<In, Out> {
  const listeners: Array<(message: In) => void> = [];
  // Messages that came before anyone listened wait for the first listener.
  const early: In[] = [];
  port.addEventListener('message', (event) => {
    if (listeners.length === 0) early.push(event.data as In);
    for (const listener of listeners) listener(event.data as In);
  });
  // With addEventListener (unlike onmessage) the port delivers nothing until started.
  port.start();
  return {
    send: (message, transfer) => port.postMessage(message, transfer ?? []),
    onMessage: (listener) => {
      listeners.push(listener);
      for (const message of early.splice(0)) listener(message);
    },
    // Chromium fires 'close' when the other end goes (the main process dropped its port); a page
    // whose window is destroyed has nothing left to clean up anyway.
    onClose: (listener) => port.addEventListener('close', listener),
    close: () => port.close(),
  };
}
