import type { ApiEvent, ApiMethod, ApiRequest, WorkstationApi, WorkstationEvents } from '../../../src-shared/api';
import type { ErrorData } from '../../../src-shared/errors';

export type ApiResponse<M extends ApiMethod> = Awaited<ReturnType<WorkstationApi[M]>>;

/** An error the workstation answered with: shown to the user as its message, never only logged. */
export class ApiError extends Error {
  readonly code: ErrorData['code'];
  constructor(data: ErrorData) {
    super(data.message);
    this.name = 'ApiError';
    this.code = data.code;
  }
}

export type ConnectionState = 'connecting' | 'open' | 'closed';

/** One client interface, two transports: the Electron preload bridge and serve mode's WebSocket. */
export interface ApiClient {
  call<M extends ApiMethod>(method: M, request: ApiRequest<M>): Promise<ApiResponse<M>>;
  on<E extends ApiEvent>(event: E, listener: (payload: WorkstationEvents[E]) => void): () => void;
  onConnection(listener: (state: ConnectionState) => void): () => void;
}
