import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GpuMonitor } from '../../hardware/gpu-monitor';
import { startServer } from '../../server/serve';
import { WorkstationService } from '../../services/workstation';
import type { CommandSpec, Parsed } from '../args';
import { DB_OPTION, hardware, openCliStore } from '../common';
import type { Output } from '../output';

export const serveSpec: CommandSpec = {
  name: 'serve',
  summary: 'Run the workstation headless: the UI over HTTP and the API over a WebSocket, for GPU servers without a display. Prints a URL with an access token.',
  usage: 'quadra serve [--host 127.0.0.1] [--port N] [--db FILE]',
  options: {
    host: { kind: 'string', description: 'address to bind (default 127.0.0.1; anything else exposes the workstation to that network)', placeholder: 'ADDR' },
    port: { kind: 'int', min: 0, max: 65_535, description: 'port (default 8737; 0 picks a free one)', placeholder: 'N' },
    db: DB_OPTION,
  },
};

const RENDERER_DIST = fileURLToPath(new URL('../../../dist/renderer', import.meta.url));

export async function serve({ options }: Parsed, output: Output): Promise<number> {
  const store = openCliStore(options);
  let emit: ConstructorParameters<typeof WorkstationService>[0]['emit'] = () => undefined;
  let service: WorkstationService | null = null;
  // One long-running nvidia-smi per query while a client watches the monitor, not one per tick.
  const gpuMonitor = new GpuMonitor({ ourPids: () => service?.workerPids() ?? [] });
  service = new WorkstationService({
    store,
    hardware,
    dataDir: path.dirname(store.file),
    emit: (event, payload) => emit(event, payload),
    monitor: { start: () => gpuMonitor.start(), stop: () => void gpuMonitor.stop(), onSample: (listener) => gpuMonitor.onDidSample(listener) },
  });
  const server = await startServer({
    api: service,
    host: (options.host as string | undefined) ?? '127.0.0.1',
    port: (options.port as number | undefined) ?? 8737,
    staticDir: RENDERER_DIST,
  });
  emit = server.emit;
  output.out(server.url);
  if (server.host !== '127.0.0.1' && server.host !== 'localhost' && server.host !== '::1') {
    output.note(`warning: listening on ${server.host}: anyone who can reach it and has the token can use this workstation`);
  }
  output.note(`database ${store.file}; Ctrl-C stops (running trainings keep a checkpoint)`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  output.note('stopping…');
  await service.shutdown();
  await server.close();
  store.close();
  return 0;
}
