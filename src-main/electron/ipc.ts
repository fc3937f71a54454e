import { BrowserWindow, dialog, ipcMain, type IpcMainInvokeEvent, type WebContents } from 'electron';
import { dispatchCall, type ApiCaller, type ApiEvent, type ApiResult, type WorkstationApi, type WorkstationEvents } from '../../src-shared/api';
import { IPC_EVENT, IPC_INVOKE, IPC_SAVE_FILE } from '../../src-shared/ipc';
import { saveFileHandler } from './save-file';
import { refuseForeignSender } from './sender-check';

/**
 * The main-process end of the contract: one handler for every WorkstationApi method, reached only
 * from our own renderer frame; validation, dispatch and errors-as-data are the shared
 * dispatchCall, the same as serve mode's WebSocket. Each window is one client (its page's
 * lifetime: a reload or navigation starts a new one), for what the workstation keeps per client.
 */
export function registerApi(api: WorkstationApi, isOurFrame: (url: string) => boolean): () => void {
  const callers = new Map<number, ApiCaller>();
  const callerOf = (contents: WebContents): ApiCaller => {
    let caller = callers.get(contents.id);
    if (!caller) {
      caller = pageCaller(contents, () => callers.delete(contents.id));
      callers.set(contents.id, caller);
    }
    return caller;
  };
  const handle = async (event: IpcMainInvokeEvent, method: unknown, request: unknown): Promise<ApiResult<unknown>> => {
    return refuseForeignSender(event, isOurFrame) ?? dispatchCall(api, method, request, callerOf(event.sender));
  };
  ipcMain.handle(IPC_INVOKE, handle);
  return () => ipcMain.removeHandler(IPC_INVOKE);
}

/**
 * The save dialog's channel (src-main/electron/save-file.ts): the same sender check, the dialog
 * parented to the asking window and opened in `defaultFolder()` (the user's Downloads).
 */
export function registerSaveFile(isOurFrame: (url: string) => boolean, defaultFolder: () => string): () => void {
  const handle = saveFileHandler<IpcMainInvokeEvent>(isOurFrame, (event) => {
    const window = BrowserWindow.fromWebContents(event.sender);
    return {
      showSaveDialog: (options) => (window ? dialog.showSaveDialog(window, options) : dialog.showSaveDialog(options)),
      defaultFolder: defaultFolder(),
    };
  });
  ipcMain.handle(IPC_SAVE_FILE, handle);
  return () => ipcMain.removeHandler(IPC_SAVE_FILE);
}

/** The page now shown in `contents`, as a client: events to it alone, and its end (closed, reloaded or navigated away). */
function pageCaller(contents: WebContents, forget: () => void): ApiCaller {
  const listeners = new Set<() => void>();
  let gone = false;
  const end = () => {
    if (gone) return;
    gone = true;
    contents.off('destroyed', end);
    contents.off('did-navigate', end);
    forget();
    for (const listener of listeners) listener();
    listeners.clear();
  };
  contents.once('destroyed', end);
  // A reload is a new page, which asks again for what it wants.
  contents.once('did-navigate', end);
  return {
    send: (event, payload) => {
      if (!gone && !contents.isDestroyed()) contents.send(IPC_EVENT, event, payload);
    },
    onDidDisconnect: (listener) => {
      if (gone) queueMicrotask(listener);
      else listeners.add(listener);
    },
  };
}

/** Pushes an event to every window of ours. */
export function broadcast<E extends ApiEvent>(targets: Iterable<WebContents>, event: E, payload: WorkstationEvents[E]): void {
  for (const contents of targets) if (!contents.isDestroyed()) contents.send(IPC_EVENT, event, payload);
}
