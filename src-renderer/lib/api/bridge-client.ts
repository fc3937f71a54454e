import type { ApiEvent, ApiMethod, ApiRequest, ApiResult, WorkstationEvents } from '../../../src-shared/api';
import { ApiError, type ApiClient, type ApiResponse } from './client';

/** What the Electron preload exposes as window.quadra (contextBridge): calls and event subscriptions. */
export interface QuadraBridge {
  invoke(method: ApiMethod, request: unknown): Promise<ApiResult<unknown>>;
  on(event: ApiEvent, listener: (payload: unknown) => void): () => void;
}

export function createBridgeClient(bridge: QuadraBridge): ApiClient {
  return {
    async call<M extends ApiMethod>(method: M, request: ApiRequest<M>): Promise<ApiResponse<M>> {
      const result = await bridge.invoke(method, request);
      if (!result.ok) throw new ApiError(result.error);
      return result.value as ApiResponse<M>;
    },
    on<E extends ApiEvent>(event: E, listener: (payload: WorkstationEvents[E]) => void) {
      return bridge.on(event, listener as (payload: unknown) => void);
    },
    onConnection(listener) {
      listener('open');
      return () => undefined;
    },
  };
}
