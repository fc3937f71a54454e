import { ipcMain, type IpcMainInvokeEvent, type WebContents } from 'electron';
import { dispatchCall, type ApiEvent, type ApiResult, type WorkstationApi, type WorkstationEvents } from '../../src-shared/api';
import { IPC_EVENT, IPC_INVOKE } from '../../src-shared/ipc';
import { QuadraError, toErrorData } from '../../src-shared/errors';

/**
 * The main-process end of the contract: one handler for every WorkstationApi method, reached only
 * from our own renderer frame; validation, dispatch and errors-as-data are the shared
 * dispatchCall, the same as serve mode's WebSocket.
 */
export function registerApi(api: WorkstationApi, isOurFrame: (url: string) => boolean): () => void {
  const handle = async (event: IpcMainInvokeEvent, method: unknown, request: unknown): Promise<ApiResult<unknown>> => {
    let frameUrl = '';
    try {
      frameUrl = event.senderFrame?.url ?? '';
    } catch {
      // A frame gone since it sent the request: refused below like any other.
    }
    if (!isOurFrame(frameUrl)) return { ok: false, error: toErrorData(new QuadraError('UNSUPPORTED', `refused a request from ${frameUrl || 'an unknown frame'}`)) };
    return dispatchCall(api, method, request);
  };
  ipcMain.handle(IPC_INVOKE, handle);
  return () => ipcMain.removeHandler(IPC_INVOKE);
}

/** Pushes an event to every window of ours. */
export function broadcast<E extends ApiEvent>(targets: Iterable<WebContents>, event: E, payload: WorkstationEvents[E]): void {
  for (const contents of targets) if (!contents.isDestroyed()) contents.send(IPC_EVENT, event, payload);
}
