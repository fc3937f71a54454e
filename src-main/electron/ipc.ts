import { ipcMain, type IpcMainInvokeEvent, type WebContents } from 'electron';
import { isApiMethod, validateRequest, type ApiEvent, type ApiResult, type WorkstationApi, type WorkstationEvents } from '../../src-shared/api';
import { IPC_EVENT, IPC_INVOKE } from '../../src-shared/ipc';
import { QuadraError, toErrorData } from '../../src-shared/errors';

/**
 * The main-process end of the contract: one handler for every WorkstationApi method, reached only
 * from our own renderer frame, every request validated by its zod schema, errors returned as data.
 */
export function registerApi(api: WorkstationApi, isOurFrame: (url: string) => boolean): () => void {
  const handle = async (event: IpcMainInvokeEvent, method: unknown, request: unknown): Promise<ApiResult<unknown>> => {
    try {
      const frameUrl = event.senderFrame?.url ?? '';
      if (!isOurFrame(frameUrl)) throw new QuadraError('UNSUPPORTED', `refused a request from ${frameUrl || 'an unknown frame'}`);
      if (typeof method !== 'string' || !isApiMethod(method)) throw new QuadraError('INVALID_ARGUMENT', `unknown method '${String(method)}'`);
      const valid = validateRequest(method, request);
      const handler = api[method] as (request: unknown) => Promise<unknown>;
      return { ok: true, value: await handler.call(api, valid) };
    } catch (error) {
      return { ok: false, error: toErrorData(error) };
    }
  };
  ipcMain.handle(IPC_INVOKE, handle);
  return () => ipcMain.removeHandler(IPC_INVOKE);
}

/** Pushes an event to every window of ours. */
export function broadcast<E extends ApiEvent>(targets: Iterable<WebContents>, event: E, payload: WorkstationEvents[E]): void {
  for (const contents of targets) if (!contents.isDestroyed()) contents.send(IPC_EVENT, event, payload);
}
