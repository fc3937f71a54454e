import { createBridgeClient, type QuadraBridge } from './bridge-client';
import type { ApiClient } from './client';
import { createWebSocketClient } from './ws-client';

/** The desktop app has window.quadra (preload); serve mode talks to the page's own server. */
export function createClient(): ApiClient {
  const bridge = (globalThis as { quadra?: QuadraBridge }).quadra;
  return bridge ? createBridgeClient(bridge) : createWebSocketClient();
}

export { ApiError, type ApiClient, type ConnectionState } from './client';
