import { NODE_WORKER_PLATFORM } from './node-worker-platform';
import { parentChannel } from './worker-channels';
import { serveWorker } from './worker-runtime';

/**
 * Entry of a training worker on the Node side: a child process (child_process.fork), an Electron
 * utility process or a worker thread (simd). The channel to the parent is chosen once, here; the
 * worker itself (worker-runtime.ts) never asks which transport carries it. A process exits when its
 * parent goes away (the IPC channel closes); a thread ends with its process — so no worker
 * outlives a run. A webgpu worker inside the Electron app is a page instead: browser-worker.ts.
 */
serveWorker(parentChannel(), { pid: process.pid, cudaVisibleDevices: process.env.CUDA_VISIBLE_DEVICES ?? null }, NODE_WORKER_PLATFORM);
