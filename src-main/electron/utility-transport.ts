import { utilityProcess } from 'electron';
import { runsThroughTsx, transportFactory, type SpawnOptions, type TransportFactory, type WorkerTransport } from '../training/transport';

/**
 * Training workers inside the desktop app: Electron utility processes (a Node environment the
 * main process owns and Electron tears down with the app), each running `entry` (the bundled
 * worker-main.mjs). The coordinator sees the same WorkerTransport as with child_process.fork; the
 * worker talks over process.parentPort (worker-channels.ts).
 */
export function utilityTransport(entry: string): TransportFactory {
  return transportFactory(entry, spawnUtility);
}

function spawnUtility(entry: string, { rank, env }: SpawnOptions): WorkerTransport {
  const child = utilityProcess.fork(entry, [`--rank=${rank}`], {
    env: { ...process.env, ...env },
    serviceName: `Quadra training worker ${rank}`,
    stdio: 'inherit',
    // Development runs the TypeScript sources through tsx; the packaged app ships compiled JS.
    execArgv: runsThroughTsx(entry) ? ['--import', 'tsx'] : [],
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
}
