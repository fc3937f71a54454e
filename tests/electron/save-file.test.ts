import type { SaveDialogOptions, SaveDialogReturnValue } from 'electron';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { saveDialogOptions, saveFileHandler, saveFileWithDialog, suggestedFileName, type SaveFileDeps } from '../../src-main/electron/save-file';

/** The desktop app's save dialog, with Electron's dialog replaced by a scripted one (the Electron binary is not needed). */
let folder = '';
let asked: SaveDialogOptions[] = [];

beforeEach(() => {
  folder = mkdtempSync(path.join(os.tmpdir(), 'quadra-save-'));
  asked = [];
});
afterEach(() => rmSync(folder, { recursive: true, force: true }));

/** A dialog that answers `choice` (a path, or null for Cancel) and records what it was shown. */
function dialog(choice: string | null): SaveFileDeps {
  return {
    defaultFolder: path.join(folder, 'Downloads'),
    showSaveDialog: async (options: SaveDialogOptions): Promise<SaveDialogReturnValue> => {
      asked.push(options);
      return choice === null ? { canceled: true, filePath: '' } : { canceled: false, filePath: choice };
    },
  };
}

const BYTES = new Uint8Array([1, 2, 3, 250]);
const OUR_PAGE = 'file:///app/dist/renderer/index.html';
const isOurFrame = (url: string) => url.startsWith(OUR_PAGE);

describe('saving an export through the native save dialog', () => {
  it('opens in the Downloads folder on the suggested name, with its extension as the filter, and writes where the user chose', async () => {
    const target = path.join(folder, 'chosen', 'model.onnx');
    mkdirSync(path.dirname(target));
    const saved = await saveFileWithDialog({ fileName: 'run-3-step-40.onnx', bytes: BYTES }, dialog(target));
    expect(saved).toEqual({ path: target });
    expect(new Uint8Array(readFileSync(target))).toEqual(BYTES);
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatchObject({
      defaultPath: path.join(folder, 'Downloads', 'run-3-step-40.onnx'),
      filters: [{ name: '.onnx file', extensions: ['onnx'] }, { name: 'All files', extensions: ['*'] }],
    });
    expect(asked[0]!.properties).toContain('showOverwriteConfirmation');
    // Nothing left beside it: the temporary file was renamed into place.
    expect(readdirSync(path.dirname(target))).toEqual(['model.onnx']);
  });

  it('Cancel writes nothing and answers null', async () => {
    expect(await saveFileWithDialog({ fileName: 'a.safetensors', bytes: BYTES }, dialog(null))).toBeNull();
    expect(readdirSync(folder)).toEqual([]);
  });

  it('replaces a file the user chose to overwrite, whole', async () => {
    const target = path.join(folder, 'old.pth');
    writeFileSync(target, 'previous contents, longer than the new ones');
    await saveFileWithDialog({ fileName: 'new.pth', bytes: BYTES }, dialog(target));
    expect(new Uint8Array(readFileSync(target))).toEqual(BYTES);
  });

  it('the page suggests a name, never a path: folders and characters no file system takes are dropped', async () => {
    expect(suggestedFileName('../../etc/passwd')).toBe('passwd');
    expect(suggestedFileName('C:\\Windows\\system32\\x.dll')).toBe('x.dll');
    expect(suggestedFileName('..')).toBe('export');
    expect(suggestedFileName('.bashrc')).toBe('bashrc');
    expect(suggestedFileName('a<b>:c"d|e?f*g\u0007.zip')).toBe('a_b__c_d_e_f_g_.zip');
    expect(saveDialogOptions('../../../home/me/.ssh/authorized_keys', '/downloads').defaultPath).toBe(path.join('/downloads', 'authorized_keys'));
    expect(saveDialogOptions('README', '/downloads').filters).toEqual([]);
  });

  it('refuses a malformed request before showing any dialog', async () => {
    for (const bad of [null, {}, { fileName: 'a.bin' }, { fileName: '', bytes: BYTES }, { fileName: 'a.bin', bytes: [1, 2] }, { fileName: 'a.bin', bytes: BYTES, path: '/etc/x' }]) {
      await expect(saveFileWithDialog(bad, dialog(path.join(folder, 'x')))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    expect(asked).toEqual([]);
  });

  it('a write that fails says where, as IO_ERROR, and leaves no partial file', async () => {
    const target = path.join(folder, 'missing-folder', 'x.safetensors');
    await expect(saveFileWithDialog({ fileName: 'x.safetensors', bytes: BYTES }, dialog(target))).rejects.toMatchObject({
      code: 'IO_ERROR',
      message: expect.stringContaining(target),
    });
    expect(readdirSync(folder)).toEqual([]);
  });
});

describe('the save channel (IPC handler)', () => {
  it('answers our page with data: the path, null for Cancel, or the error', async () => {
    const target = path.join(folder, 'out.safetensors');
    let choice: string | null = target;
    const handle = saveFileHandler<{ senderFrame: { url: string } | null }>(isOurFrame, () => dialog(choice));
    const ours = { senderFrame: { url: `${OUR_PAGE}#checkpoints` } };
    expect(await handle(ours, { fileName: 'out.safetensors', bytes: BYTES })).toEqual({ ok: true, value: { path: target } });
    choice = null;
    expect(await handle(ours, { fileName: 'out.safetensors', bytes: BYTES })).toEqual({ ok: true, value: null });
    expect(await handle(ours, { fileName: 42 })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
  });

  it('refuses any other frame (a page navigated elsewhere, an iframe, a frame gone) without showing a dialog', async () => {
    const handle = saveFileHandler<{ readonly senderFrame: { url: string } | null }>(isOurFrame, () => dialog(path.join(folder, 'x')));
    const gone = {
      get senderFrame(): { url: string } {
        throw new Error('Render frame was disposed before WebFrameMain could be accessed');
      },
    };
    for (const event of [{ senderFrame: { url: 'https://evil.example/' } }, { senderFrame: null }, gone]) {
      expect(await handle(event, { fileName: 'x.bin', bytes: BYTES })).toMatchObject({ ok: false, error: { code: 'UNSUPPORTED', message: expect.stringMatching(/^refused a request from/) } });
    }
    expect(asked).toEqual([]);
    expect(readdirSync(folder)).toEqual([]);
  });
});
