import { utilityProcess } from 'electron';
import type { TransportFactory } from '../training/transport';
import { WORKER_ENTRY } from '../training/transport';

/**
 * Training workers inside the desktop app: Electron utility processes (a Node environment the
 * main process owns and Electron tears down with the app). The coordinator sees the same
 * WorkerTransport as with child_process.fork; the worker entry talks over process.parentPort.
 */
export const utilityTransport: TransportFactory = ({ rank, env }) => {
  const child = utilityProcess.fork(WORKER_ENTRY, [`--rank=${rank}`], {
    env: { ...process.env, ...env },
    serviceName: `Quadra training worker ${rank}`,
    stdio: 'inherit',
    // Development runs the TypeScript sources through tsx; the packaged app ships compiled JS.
    execArgv: WORKER_ENTRY.endsWith('.ts') ? ['--import', 'tsx'] : [],
  });
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  return {
    get pid() {
      return child.pid;
    },
    send: (message) => {
      if (!exited) child.postMessage(message);
    },
    onMessage: (listener) => child.on('message', listener),
    // utilityProcess reports only an exit code; a kill shows as a non-zero code.
    onExit: (listener) => child.on('exit', (code) => listener(code, null)),
    kill: () => {
      if (!exited) child.kill();
    },
  };
};
