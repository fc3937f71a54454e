import type { ApiEvent, ApiMethod, ApiRequest, WorkstationApi, WorkstationEvents } from '../../../src-shared/api';
import type { ErrorData } from '../../../src-shared/errors';

export type ApiResponse<M extends ApiMethod> = Awaited<ReturnType<WorkstationApi[M]>>;

/** An error the workstation answered with: shown to the user as its message, never only logged. */
export class ApiError extends Error {
  readonly code: ErrorData['code'];
  readonly details: ErrorData['details'];
  constructor(data: ErrorData) {
    super(data.message);
    this.name = 'ApiError';
    this.code = data.code;
    this.details = data.details;
  }
}

export type ConnectionState = 'connecting' | 'open' | 'closed';

/**
 * A file made ready for previewDataset, importDataset or importCheckpoint: serve mode streams it
 * to the server by HTTP first and names it by `uploadId`; the desktop app passes its bytes.
 */
export type UploadedFile = { uploadId: string } | { bytes: Uint8Array<ArrayBuffer> };

/** How much of a file has gone (bytes); `total` is the file's size. */
export type UploadProgressListener = (sent: number, total: number) => void;

/** One client interface, two transports: the Electron preload bridge and serve mode's WebSocket. */
export interface ApiClient {
  call<M extends ApiMethod>(method: M, request: ApiRequest<M>): Promise<ApiResponse<M>>;
  on<E extends ApiEvent>(event: E, listener: (payload: WorkstationEvents[E]) => void): () => void;
  onConnection(listener: (state: ConnectionState) => void): () => void;
  /** Sends a file for a later call that takes `bytes` or `uploadId`, reporting progress as it goes. */
  upload(file: Blob, onProgress?: UploadProgressListener): Promise<UploadedFile>;
}
