import type { ApiEvent, ApiMethod, ApiRequest, WorkstationEvents } from '../../src-shared/api';
import type { ApiClient, ApiResponse, ConnectionState, SaveOutcome } from '../../src-renderer/lib/api/client';

type Handler<M extends ApiMethod> = (request: ApiRequest<M>) => ApiResponse<M> | Promise<ApiResponse<M>>;

/**
 * An ApiClient for state-class tests: each method answers through a handler the test gives (a
 * method without one fails, as an unexpected call should), every call is recorded, and events
 * are emitted by the test.
 */
export class FakeApi implements ApiClient {
  readonly calls: Array<{ method: ApiMethod; request: unknown }> = [];
  /** Every file the page saved, in order. */
  readonly saved: Array<{ fileName: string; bytes: Uint8Array; type: string | undefined }> = [];
  /** How saveFile answers (the browser's download by default); a function may throw. */
  saveAnswer: SaveOutcome | (() => SaveOutcome) = { kind: 'downloaded' };
  #handlers = new Map<ApiMethod, (request: never) => unknown>();
  #listeners = new Map<ApiEvent, Set<(payload: never) => void>>();
  #connection: ConnectionState = 'open';
  #connectionListeners = new Set<(state: ConnectionState) => void>();

  handle<M extends ApiMethod>(method: M, handler: Handler<M>): this {
    this.#handlers.set(method, handler as (request: never) => unknown);
    return this;
  }

  callsOf<M extends ApiMethod>(method: M): Array<ApiRequest<M>> {
    return this.calls.filter((call) => call.method === method).map((call) => call.request as ApiRequest<M>);
  }

  emit<E extends ApiEvent>(event: E, payload: WorkstationEvents[E]): void {
    for (const listener of this.#listeners.get(event) ?? []) (listener as (payload: WorkstationEvents[E]) => void)(payload);
  }

  listenerCount(event: ApiEvent): number {
    return this.#listeners.get(event)?.size ?? 0;
  }

  async call<M extends ApiMethod>(method: M, request: ApiRequest<M>): Promise<ApiResponse<M>> {
    this.calls.push({ method, request });
    const handler = this.#handlers.get(method);
    if (!handler) throw new Error(`unexpected call: ${method}`);
    return (await handler(request as never)) as ApiResponse<M>;
  }

  on<E extends ApiEvent>(event: E, listener: (payload: WorkstationEvents[E]) => void): () => void {
    const set = this.#listeners.get(event) ?? new Set();
    set.add(listener as (payload: never) => void);
    this.#listeners.set(event, set);
    return () => set.delete(listener as (payload: never) => void);
  }

  /** Tells the connection listeners, as the WebSocket client does when it drops or comes back. */
  setConnection(state: ConnectionState): void {
    this.#connection = state;
    for (const listener of this.#connectionListeners) listener(state);
  }

  onConnection(listener: (state: ConnectionState) => void): () => void {
    this.#connectionListeners.add(listener);
    listener(this.#connection);
    return () => this.#connectionListeners.delete(listener);
  }

  async saveFile(fileName: string, bytes: Uint8Array<ArrayBuffer>, type?: string): Promise<SaveOutcome> {
    this.saved.push({ fileName, bytes, type });
    return typeof this.saveAnswer === 'function' ? this.saveAnswer() : this.saveAnswer;
  }

  async upload(file: Blob): Promise<{ bytes: Uint8Array<ArrayBuffer> }> {
    return { bytes: new Uint8Array(await file.arrayBuffer()) };
  }
}
