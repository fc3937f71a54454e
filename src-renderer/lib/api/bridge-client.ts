import type { ApiEvent, ApiMethod, ApiRequest, QuadraBridge, WorkstationEvents } from '../../../src-shared/api';
import { ApiError, type ApiClient, type ApiResponse } from './client';

export type { QuadraBridge };

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
    // Structured clone carries a Uint8Array to the main process without copies: no upload step.
    async upload(file, onProgress) {
      const bytes = new Uint8Array(await file.arrayBuffer());
      onProgress?.(bytes.length, bytes.length);
      return { bytes };
    },
    // The main process shows the save dialog and writes the file; the page learns only where it went.
    async saveFile(fileName, bytes) {
      const result = await bridge.saveFile({ fileName, bytes });
      if (!result.ok) throw new ApiError(result.error);
      return result.value ? { kind: 'saved', path: result.value.path } : { kind: 'cancelled' };
    },
  };
}
