import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';
import type { QuadraBridge } from '../../src-shared/api';
import { IPC_EVENT, IPC_INVOKE, IPC_SAVE_FILE } from '../../src-shared/ipc';

/**
 * The only thing the sandboxed renderer gets: window.quadra, exactly the QuadraBridge — never
 * ipcRenderer itself, and only our channels. Requests are validated again in the main process.
 */
const bridge: QuadraBridge = {
  invoke: (method, request) => ipcRenderer.invoke(IPC_INVOKE, method, request),
  on: (event, listener) => {
    const wrapped = (_e: IpcRendererEvent, name: string, payload: unknown) => {
      if (name === event) listener(payload);
    };
    ipcRenderer.on(IPC_EVENT, wrapped);
    return () => ipcRenderer.off(IPC_EVENT, wrapped);
  },
  saveFile: (request) => ipcRenderer.invoke(IPC_SAVE_FILE, request),
};

contextBridge.exposeInMainWorld('quadra', bridge);
