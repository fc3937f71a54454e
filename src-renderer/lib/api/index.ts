import { createBridgeClient, type QuadraBridge } from './bridge-client';
import type { ApiClient } from './client';
import { uploads } from './uploads.svelte';
import { createWebSocketClient } from './ws-client';

/** The desktop app has window.quadra (preload); serve mode talks to the page's own server. */
export function createClient(): ApiClient {
  const bridge = (globalThis as { quadra?: QuadraBridge }).quadra;
  return bridge ? createBridgeClient(bridge) : createWebSocketClient({ onUploadProgress: (state) => uploads.report(state) });
}

export { ApiError, type ApiClient, type ConnectionState, type SaveOutcome, type UploadedFile, type UploadProgressListener } from './client';
export { provideApi, useApi } from './context';
export { uploads, type Uploads } from './uploads.svelte';
export type { UploadState } from './ws-client';
