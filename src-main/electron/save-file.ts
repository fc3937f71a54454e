import type { SaveDialogOptions, SaveDialogReturnValue } from 'electron';
import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { ApiResult, SavedFile } from '../../src-shared/api';
import { QuadraError, toErrorData } from '../../src-shared/errors';
import { refuseForeignSender, type IpcSenderEvent } from './sender-check';

/**
 * The desktop app's "save as": the page hands over a file it made (an exported checkpoint) with a
 * name to suggest; the main process shows the native save dialog and writes the file where the
 * user chose. The page never names a path. Electron itself comes in through `deps` (type imports
 * only here), so tests run this in plain Node with the dialog injected.
 */

const SAVE_FILE_REQUEST = z.object({ fileName: z.string().min(1).max(1000), bytes: z.instanceof(Uint8Array) }).strict();

export interface SaveFileDeps {
  /** Electron's dialog.showSaveDialog, parented to the window that asked. */
  showSaveDialog(options: SaveDialogOptions): Promise<SaveDialogReturnValue>;
  /** Where the dialog opens (the user's Downloads folder). */
  defaultFolder: string;
}

/** A file name to suggest, from whatever the page sent: its last path part, without characters no file system takes. */
export function suggestedFileName(fileName: string): string {
  const base = fileName.split(/[\\/]/).pop() ?? '';
  const clean = base.replace(/[\u0000-\u001f\u007f<>:"|?*]/g, '_').replace(/^[.\s]+/, '').trim().slice(0, 200);
  return clean || 'export';
}

/** The dialog's options: the suggested name in `folder`, its extension as the first filter, overwrites confirmed. */
export function saveDialogOptions(fileName: string, folder: string): SaveDialogOptions {
  const name = suggestedFileName(fileName);
  const extension = path.extname(name).slice(1);
  return {
    title: `Save ${name}`,
    defaultPath: path.join(folder, name),
    filters: extension ? [{ name: `.${extension} file`, extensions: [extension] }, { name: 'All files', extensions: ['*'] }] : [],
    properties: ['createDirectory', 'showOverwriteConfirmation'],
  };
}

/**
 * Asks where to save `request` (a SaveFileRequest, validated here) and writes it there: whole or
 * not at all, through a temporary file beside it renamed into place. Null when the user cancelled.
 */
export async function saveFileWithDialog(request: unknown, deps: SaveFileDeps): Promise<SavedFile | null> {
  const parsed = SAVE_FILE_REQUEST.safeParse(request);
  if (!parsed.success) {
    throw new QuadraError('INVALID_ARGUMENT', `saveFile: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(request)'}: ${i.message}`).join('; ')}`);
  }
  const { fileName, bytes } = parsed.data;
  const choice = await deps.showSaveDialog(saveDialogOptions(fileName, deps.defaultFolder));
  if (choice.canceled || !choice.filePath) return null;
  const target = path.resolve(choice.filePath);
  const partial = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(4).toString('hex')}.partial`);
  try {
    await writeFile(partial, bytes, { flag: 'wx' });
    await rename(partial, target);
  } catch (error) {
    await rm(partial, { force: true });
    throw new QuadraError('IO_ERROR', `could not write ${target}: ${(error as Error).message}`, { path: target });
  }
  return { path: target };
}

/**
 * The IPC handler of the save channel: refuses a frame not ours, then saves with the dialog of the
 * window that asked (`dialogFor`); the answer is data, as every answer of ours.
 */
export function saveFileHandler<E extends IpcSenderEvent>(
  isOurFrame: (url: string) => boolean,
  dialogFor: (event: E) => SaveFileDeps,
): (event: E, request: unknown) => Promise<ApiResult<SavedFile | null>> {
  return async (event, request) => {
    const refused = refuseForeignSender(event, isOurFrame);
    if (refused) return refused;
    try {
      return { ok: true, value: await saveFileWithDialog(request, dialogFor(event)) };
    } catch (error) {
      return { ok: false, error: toErrorData(error) };
    }
  };
}
