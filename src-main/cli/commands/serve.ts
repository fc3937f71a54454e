import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, type RunningServer } from '../../server/serve';
import { DEFAULT_UPLOAD_LIMIT_BYTES, UploadStore } from '../../server/uploads';
import { createWorkstation } from '../../services/create-workstation';
import type { WorkstationDeps } from '../../services/workstation';
import type { CommandSpec, Parsed } from '../args';
import { DB_OPTION, hardware } from '../common';
import type { Output } from '../output';

export const serveSpec: CommandSpec = {
  name: 'serve',
  summary: 'Run the workstation headless: the UI over HTTP and the API over a WebSocket, for GPU servers without a display. Prints a URL with an access token.',
  usage: 'quadra serve [--host 127.0.0.1] [--port N] [--max-upload-mib N] [--db FILE]',
  options: {
    host: { kind: 'string', description: 'address to bind (default 127.0.0.1; anything else exposes the workstation to that network)', placeholder: 'ADDR' },
    port: { kind: 'int', min: 0, max: 65_535, description: 'port (default 8737; 0 picks a free one)', placeholder: 'N' },
    'max-upload-mib': { kind: 'int', min: 1, description: `largest file the browser may upload, in MiB (default ${DEFAULT_UPLOAD_LIMIT_BYTES / 1024 ** 2})`, placeholder: 'N' },
    db: DB_OPTION,
  },
};

const RENDERER_DIST = fileURLToPath(new URL('../../../dist/renderer', import.meta.url));

export async function serve({ options }: Parsed, output: Output): Promise<number> {
  const maxUploadMiB = options['max-upload-mib'] as number | undefined;
  let uploads!: UploadStore;
  let emit: WorkstationDeps['emit'] = () => undefined;
  const { store, service, close } = createWorkstation({
    databaseFile: options.db as string | undefined,
    hardware,
    emit: (event, payload) => emit(event, payload),
    // Files the browser sends land here under random names; ids unused for an hour are deleted.
    uploads: (dataDir) => (uploads = new UploadStore({ dir: path.join(dataDir, 'uploads'), ...(maxUploadMiB === undefined ? {} : { maxBytes: maxUploadMiB * 1024 ** 2 }) })),
  });
  let server: RunningServer;
  try {
    server = await startServer({
      api: service,
      host: (options.host as string | undefined) ?? '127.0.0.1',
      port: (options.port as number | undefined) ?? 8737,
      staticDir: RENDERER_DIST,
      uploads,
      log: (line) => output.note(line),
    });
  } catch (error) {
    // A busy port and the like: the message says which and what to do; nothing was started.
    uploads.close();
    await close();
    throw error;
  }
  emit = server.emit;
  output.out(server.url);
  if (server.host !== '127.0.0.1' && server.host !== 'localhost' && server.host !== '::1') {
    const wildcard = server.host === '0.0.0.0' || server.host === '::';
    output.note(
      `warning: listening on ${wildcard ? `every network interface (${server.host})` : server.host}: the token alone now guards a server reachable from the network, ` +
        'over plain HTTP; anyone who has the URL can use this workstation. Prefer an SSH tunnel (ssh -L 8737:127.0.0.1:8737 HOST) or a TLS reverse proxy.',
    );
  }
  output.note(`database ${store.file}; Ctrl-C stops (running trainings keep a checkpoint)`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  output.note('stopping…');
  // Live runs stop after their step (each keeps a checkpoint) while clients still hear of it.
  await service.shutdown();
  await server.close();
  uploads.close();
  // Then the offload thread and the database.
  await close();
  return 0;
}
