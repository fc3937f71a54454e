import { parentPort, workerData } from 'node:worker_threads';
import { QuadraError, toErrorData } from '../../../src-shared/errors';
import { openStore, type Store } from '../../store/database';
import type { FromOffload, OffloadWorkerData, ToOffload } from './protocol';
import { offloadHandlers } from './tasks';

/**
 * Entry of the offload thread (OffloadThread): runs the tasks it is sent and answers each by seq.
 * Its database connection is read-only and opened on first use: the service's connection stays
 * the one writer (DESIGN.md §5), and WAL lets this one read beside it, seeing every committed write.
 */
const port = parentPort;
if (!port) throw new Error('offload-main runs as a worker thread (started by OffloadThread)');
const { databaseFile, resourcesPath } = workerData as OffloadWorkerData;
// The torchrun templates of the packaged app are found under Electron's resources folder.
const processWithResources = process as NodeJS.Process & { resourcesPath?: string };
if (resourcesPath && !processWithResources.resourcesPath) processWithResources.resourcesPath = resourcesPath;

let store: Store | null = null;
const handlers = offloadHandlers(() => {
  if (!databaseFile) throw new QuadraError('UNSUPPORTED', 'this offload thread has no database file to read');
  store ??= openStore(databaseFile, { readonly: true });
  return store;
});

port.on('message', (message: ToOffload) => {
  if (message.type === 'shutdown') {
    store?.close();
    port.close();
    return;
  }
  void (handlers[message.type] as (args: unknown) => Promise<unknown>)(message.args).then(
    (value) => reply({ replyTo: message.seq, ok: true, value }, transferables(value)),
    (error: unknown) => reply({ replyTo: message.seq, ok: false, error: toErrorData(error) }),
  );
});

function reply(message: FromOffload, transfer: ArrayBuffer[] = []): void {
  try {
    port!.postMessage(message, transfer);
  } catch (error) {
    // Details that do not survive structured cloning: the error still arrives, as INTERNAL.
    port!.postMessage({ replyTo: message.replyTo, ok: false, error: toErrorData(error) } satisfies FromOffload);
  }
}

/**
 * The buffers a result can hand over instead of copying (exported files, parsed rows): each one a
 * typed array spans whole. A view of part of a buffer (a Node Buffer from the shared pool) is copied.
 */
function transferables(value: unknown, found = new Set<ArrayBuffer>(), depth = 0): ArrayBuffer[] {
  if (ArrayBuffer.isView(value)) {
    if (value.buffer instanceof ArrayBuffer && value.byteOffset === 0 && value.byteLength === value.buffer.byteLength) found.add(value.buffer);
  } else if (value !== null && typeof value === 'object' && depth < 4) {
    for (const item of Array.isArray(value) ? value : Object.values(value)) transferables(item, found, depth + 1);
  }
  return [...found];
}
