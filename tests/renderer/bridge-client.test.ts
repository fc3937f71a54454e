import { describe, expect, it } from 'vitest';
import type { ApiResult, QuadraBridge, SavedFile, SaveFileRequest } from '../../src-shared/api';
import { createBridgeClient } from '../../src-renderer/lib/api/bridge-client';
import { ApiError } from '../../src-renderer/lib/api/client';

/** The desktop app's client over a fake window.quadra: calls, and the save dialog the main process shows. */
class FakeBridge implements QuadraBridge {
  readonly saves: SaveFileRequest[] = [];
  saveAnswer: ApiResult<SavedFile | null> = { ok: true, value: null };
  async invoke(method: string, request: unknown): Promise<ApiResult<unknown>> {
    if (method === 'listRuns') return { ok: true, value: [] };
    return { ok: false, error: { code: 'INVALID_ARGUMENT', message: `unknown method '${method}'`, details: { request } } };
  }
  on(): () => void {
    return () => undefined;
  }
  async saveFile(request: SaveFileRequest): Promise<ApiResult<SavedFile | null>> {
    this.saves.push(request);
    return this.saveAnswer;
  }
}

const BYTES = new Uint8Array([7, 8, 9]);

describe('the desktop app client (preload bridge)', () => {
  it('saves through the main process: the name and bytes go, the chosen path comes back', async () => {
    const bridge = new FakeBridge();
    bridge.saveAnswer = { ok: true, value: { path: '/home/me/Downloads/run-1.onnx' } };
    const client = createBridgeClient(bridge);
    expect(await client.saveFile('run-1.onnx', BYTES)).toEqual({ kind: 'saved', path: '/home/me/Downloads/run-1.onnx' });
    expect(bridge.saves).toEqual([{ fileName: 'run-1.onnx', bytes: BYTES }]);
  });

  it('a cancelled dialog is said as such, and a failed write is an ApiError with its message', async () => {
    const bridge = new FakeBridge();
    const client = createBridgeClient(bridge);
    expect(await client.saveFile('a.pth', BYTES)).toEqual({ kind: 'cancelled' });
    bridge.saveAnswer = { ok: false, error: { code: 'IO_ERROR', message: 'could not write /ro/a.pth: EROFS' } };
    const failure = client.saveFile('a.pth', BYTES);
    await expect(failure).rejects.toBeInstanceOf(ApiError);
    await expect(failure).rejects.toMatchObject({ code: 'IO_ERROR', message: 'could not write /ro/a.pth: EROFS' });
  });

  it('calls still go through invoke, errors as ApiError', async () => {
    const client = createBridgeClient(new FakeBridge());
    expect(await client.call('listRuns', {})).toEqual([]);
    await expect(client.call('getRun', { runId: 1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
