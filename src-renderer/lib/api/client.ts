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

/**
 * Where a file the page saved went: the path chosen in the desktop app's save dialog, the browser's
 * downloads (serve mode), or nowhere (the dialog was cancelled).
 */
export type SaveOutcome = { kind: 'saved'; path: string } | { kind: 'downloaded' } | { kind: 'cancelled' };

/** One client interface, two transports: the Electron preload bridge and serve mode's WebSocket. */
export interface ApiClient {
  call<M extends ApiMethod>(method: M, request: ApiRequest<M>): Promise<ApiResponse<M>>;
  on<E extends ApiEvent>(event: E, listener: (payload: WorkstationEvents[E]) => void): () => void;
  onConnection(listener: (state: ConnectionState) => void): () => void;
  /** Sends a file for a later call that takes `bytes` or `uploadId`, reporting progress as it goes. */
  upload(file: Blob, onProgress?: UploadProgressListener): Promise<UploadedFile>;
  /**
   * Saves a file the page made (an exported checkpoint): the desktop app asks where with the
   * native save dialog and its main process writes it; in serve mode the browser downloads it.
   */
  saveFile(fileName: string, bytes: Uint8Array<ArrayBuffer>, type?: string): Promise<SaveOutcome>;
}
