// Entry of a training worker thread started from TypeScript sources (CLI, tests): registers tsx's
// loader in this thread, then runs worker-main.ts. The bundled app starts worker-main.mjs directly.
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

register();
await import(workerData.entry);
