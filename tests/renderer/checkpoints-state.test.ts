import { describe, expect, it } from 'vitest';
import type { CheckpointRecord } from '../../src-shared/records';
import { CheckpointsState } from '../../src-renderer/components/checkpoints/checkpoints-state.svelte';
import { ApiError } from '../../src-renderer/lib/api/client';
import { FakeApi } from './fake-api';

const CHECKPOINT: CheckpointRecord = { id: 12, runId: 3, epoch: 2, step: 40, validationLoss: 0.3, trainLoss: 0.4, sha256: 'ab', sizeBytes: 1000, createdAt: '2026-01-01T00:00:00.000Z', isBest: true };
const FILE = { fileName: 'run-3-step-40.onnx', bytes: new Uint8Array(2048) };

function exportingApi(): FakeApi {
  return new FakeApi().handle('listRuns', () => []).handle('listCheckpoints', () => []).handle('exportCheckpoint', () => FILE);
}

describe('CheckpointsState export', () => {
  it('the desktop app: saved where the user chose in the save dialog, and the notice says where', async () => {
    const api = exportingApi();
    api.saveAnswer = { kind: 'saved', path: '/home/me/models/run-3-step-40.onnx' };
    const state = new CheckpointsState(api);
    state.format = 'onnx';
    state.fp16 = true;
    await state.exportCheckpoint(CHECKPOINT);
    expect(api.callsOf('exportCheckpoint')).toEqual([{ checkpointId: 12, format: 'onnx', fp16: true }]);
    expect(api.saved).toEqual([{ fileName: 'run-3-step-40.onnx', bytes: FILE.bytes, type: 'application/octet-stream' }]);
    expect(state.notice).toEqual({ kind: 'exported', text: 'Saved run-3-step-40.onnx (2.0 KiB, F16) to /home/me/models/run-3-step-40.onnx', runId: 3, path: '/home/me/models/run-3-step-40.onnx' });
    expect(state.busy).toBeNull();
    expect(state.actionError).toBeNull();
  });

  it('serve mode: the browser downloads it', async () => {
    const api = exportingApi();
    const state = new CheckpointsState(api);
    await state.exportCheckpoint(CHECKPOINT);
    expect(state.notice?.text).toBe('Exported run-3-step-40.onnx (2.0 KiB)');
    expect(state.notice?.path).toBeUndefined();
  });

  it('a cancelled dialog says nothing; a failed write is shown', async () => {
    const api = exportingApi();
    api.saveAnswer = { kind: 'cancelled' };
    const state = new CheckpointsState(api);
    await state.exportCheckpoint(CHECKPOINT);
    expect(state.notice).toBeNull();
    expect(state.actionError).toBeNull();
    api.saveAnswer = () => {
      throw new ApiError({ code: 'IO_ERROR', message: 'could not write /ro/x.onnx: EROFS: read-only file system' });
    };
    await state.exportCheckpoint(CHECKPOINT);
    expect(state.actionError).toBe('could not write /ro/x.onnx: EROFS: read-only file system');
    expect(state.busy).toBeNull();
  });

  it('the export is busy while it runs, one action at a time', async () => {
    const api = exportingApi();
    const state = new CheckpointsState(api);
    const exporting = state.exportCheckpoint(CHECKPOINT);
    expect(state.busy).toBe('export:12');
    await exporting;
    expect(state.busy).toBeNull();
  });
});
