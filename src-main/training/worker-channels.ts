import { isMainThread, parentPort as threadPort, type MessagePort } from 'node:worker_threads';
import { QuadraError } from '../../src-shared/errors';
import type { FromWorker, ParentChannel, ToWorker } from './protocol';

/**
 * The worker's end of each Node-side transport, chosen once at start-up by parentChannel(). Only
 * this file knows how a worker was started; worker-runtime.ts sees a ParentChannel.
 */

/** Electron's process.parentPort in a utility process (typed here: training never imports electron). */
interface UtilityParentPort {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (event: { data: unknown }) => void): void;
}

export type ParentChannelKind = 'thread' | 'utility' | 'fork';

/** How this worker was started, or null when it has no parent to talk to. */
export function parentChannelKind(): ParentChannelKind | null {
  if (!isMainThread && threadPort) return 'thread';
  if (utilityParentPort()) return 'utility';
  if (process.send) return 'fork';
  return null;
}

/** The channel to this worker's parent, whichever transport started it. */
export function parentChannel<In = ToWorker, Out = FromWorker>(): ParentChannel<In, Out> {
  switch (parentChannelKind()) {
    case 'thread':
      return threadChannel(threadPort!);
    case 'utility':
      return utilityChannel(utilityParentPort()!);
    case 'fork':
      return forkChannel();
    case null:
      throw new QuadraError('INTERNAL', 'training worker: no parent to talk to; start it through a transport (fork, thread or utility process)');
  }
}

/** A worker thread: its parentPort. The thread ends with its process, or when the port closes. */
export function threadChannel<In, Out>(port: MessagePort): ParentChannel<In, Out> {
  return {
    send: (message, transfer) => port.postMessage(message, transfer),
    onMessage: (listener) => port.on('message', (message: In) => listener(message)),
    onClose: (listener) => port.once('close', listener),
    close: () => port.close(),
  };
}

/** An Electron utility process: process.parentPort (messages arrive as events with `data`). */
export function utilityChannel<In, Out>(port: UtilityParentPort): ParentChannel<In, Out> {
  return {
    // parentPort transfers only MessagePorts: buffers are copied.
    send: (message) => port.postMessage(message),
    onMessage: (listener) => port.on('message', (event) => listener(event.data as In)),
    // Electron ends utility processes with the app; there is no close to watch.
    onClose: () => undefined,
    // Let the last reply leave before exiting.
    close: () => setImmediate(() => process.exit(0)),
  };
}

/** A child_process.fork child: process.send and the IPC channel. */
export function forkChannel<In, Out>(): ParentChannel<In, Out> {
  const closeListeners: Array<() => void> = [];
  // The parent is gone (even SIGKILLed) or asked us to go: the IPC channel closes, and so does this worker.
  process.on('disconnect', () => {
    try {
      for (const listener of closeListeners) listener();
    } finally {
      process.exit(0);
    }
  });
  return {
    send: (message) => {
      process.send?.(message);
    },
    onMessage: (listener) => process.on('message', (message) => listener(message as In)),
    onClose: (listener) => closeListeners.push(listener),
    close: () => process.disconnect?.(),
  };
}

function utilityParentPort(): UtilityParentPort | undefined {
  return (process as unknown as { parentPort?: UtilityParentPort }).parentPort;
}
