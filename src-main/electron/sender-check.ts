import type { ApiResult } from '../../src-shared/api';
import { QuadraError, toErrorData } from '../../src-shared/errors';

/** What the sender check reads of an IPC event (Electron's IpcMainInvokeEvent has it). */
export interface IpcSenderEvent {
  readonly senderFrame?: { readonly url: string } | null;
}

/**
 * Null when a request came from a frame of ours; otherwise the refusal to answer with. Every
 * channel the main process handles asks this first (VS Code's validatedIpcMain does the same).
 */
export function refuseForeignSender(event: IpcSenderEvent, isOurFrame: (url: string) => boolean): ApiResult<never> | null {
  let frameUrl = '';
  try {
    frameUrl = event.senderFrame?.url ?? '';
  } catch {
    // A frame gone since it sent the request: refused like any other.
  }
  if (isOurFrame(frameUrl)) return null;
  return { ok: false, error: toErrorData(new QuadraError('UNSUPPORTED', `refused a request from ${frameUrl || 'an unknown frame'}`)) };
}
