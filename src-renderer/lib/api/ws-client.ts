import type { ApiEvent, ApiMethod, ApiRequest, ApiResult, WorkstationEvents } from '../../../src-shared/api';
import { decodeWire, encodeWire } from '../../../src-shared/wire';
import { ApiError, type ApiClient, type ApiResponse, type ConnectionState } from './client';

/**
 * Serve mode: the API over the page's own WebSocket. The access token travels as the HttpOnly
 * cookie the server set on the first page load; reconnects with backoff when the server restarts.
 */
export function createWebSocketClient(url = defaultUrl()): ApiClient {
  let socket: WebSocket | null = null;
  let next = 1;
  let retry = 500;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; message: string; sent: boolean }>();
  const listeners = new Map<string, Set<(payload: unknown) => void>>();
  const connectionListeners = new Set<(state: ConnectionState) => void>();
  let opened: Promise<WebSocket>;

  const setState = (state: ConnectionState) => connectionListeners.forEach((l) => l(state));

  const connect = (): Promise<WebSocket> => {
    setState('connecting');
    opened = new Promise((resolve) => {
      const ws = new WebSocket(url);
      ws.onopen = () => {
        socket = ws;
        retry = 500;
        // Calls made while disconnected go out first; a listener below may make new ones (sent once).
        for (const call of pending.values()) {
          if (!call.sent) {
            ws.send(call.message);
            call.sent = true;
          }
        }
        setState('open');
        resolve(ws);
      };
      ws.onmessage = (event) => {
        const message = decodeWire(String(event.data)) as { id?: number; result?: ApiResult<unknown>; event?: string; payload?: unknown };
        if (message.event) {
          listeners.get(message.event)?.forEach((l) => l(message.payload));
        } else if (typeof message.id === 'number') {
          const call = pending.get(message.id);
          if (!call || !message.result) return;
          pending.delete(message.id);
          if (message.result.ok) call.resolve(message.result.value);
          else call.reject(new ApiError(message.result.error));
        }
      };
      ws.onclose = () => {
        socket = null;
        // Unanswered calls are sent again on the next connection.
        for (const call of pending.values()) call.sent = false;
        setState('closed');
        setTimeout(() => void connect(), retry);
        retry = Math.min(retry * 2, 10_000);
      };
    });
    return opened;
  };
  void connect();

  return {
    call<M extends ApiMethod>(method: M, request: ApiRequest<M>): Promise<ApiResponse<M>> {
      const id = next++;
      const message = encodeWire({ id, method, request });
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve: resolve as (value: unknown) => void, reject, message, sent: socket !== null });
        if (socket) socket.send(message);
      });
    },
    on<E extends ApiEvent>(event: E, listener: (payload: WorkstationEvents[E]) => void) {
      const set = listeners.get(event) ?? new Set();
      set.add(listener as (payload: unknown) => void);
      listeners.set(event, set);
      return () => set.delete(listener as (payload: unknown) => void);
    },
    onConnection(listener) {
      connectionListeners.add(listener);
      listener(socket ? 'open' : 'connecting');
      return () => connectionListeners.delete(listener);
    },
  };
}

function defaultUrl(): string {
  const protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${protocol}//${location.host}/api`;
}
