import { EventEmitter } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import { dispatchCall, type ApiCaller, type ApiResult, type WorkstationApi } from '../../src-shared/api';
import { QuadraError } from '../../src-shared/errors';

/**
 * One request handler for both ends: serve mode's WebSocket (tests/server/serve*.test.ts) and the
 * Electron main process (below, with ipcMain stubbed) validate, call and answer through dispatchCall.
 */

const handlers = vi.hoisted(() => new Map<string, (...args: unknown[]) => Promise<unknown>>());
vi.mock('electron', () => ({
  ipcMain: {
    handle: (channel: string, handler: (...args: unknown[]) => Promise<unknown>) => handlers.set(channel, handler),
    removeHandler: (channel: string) => handlers.delete(channel),
  },
}));

const seen: Array<{ method: string; request: unknown }> = [];
const callers: Array<ApiCaller | undefined> = [];
const api = new Proxy({} as WorkstationApi, {
  get: (_target, method: string) => async (request: Record<string, unknown>, caller?: ApiCaller) => {
    seen.push({ method, request });
    callers.push(caller);
    if (method === 'getRun') throw new QuadraError('NOT_FOUND', `run ${request.runId} does not exist`);
    if (method === 'listDatasets') throw 'a string, not an Error';
    return { echoed: request };
  },
});

describe('dispatchCall', () => {
  it('validates, calls the method with the parsed request, and answers with data', async () => {
    expect(await dispatchCall(api, 'listRuns', { limit: 5, extra: 'dropped' })).toEqual({ ok: true, value: { echoed: { limit: 5 } } });
    expect(await dispatchCall(api, 'getRun', { runId: 9 })).toEqual({ ok: false, error: { code: 'NOT_FOUND', message: 'run 9 does not exist' } });
    expect(await dispatchCall(api, 'listDatasets', {})).toEqual({ ok: false, error: { code: 'INTERNAL', message: 'a string, not an Error' } });
  });

  it('answers INVALID_ARGUMENT for an unknown method or a bad request, without calling anything', async () => {
    seen.length = 0;
    for (const method of ['rm -rf', '__proto__', 'constructor', 'toString', '', 42, null, undefined, {}, Symbol('x')]) {
      const result = await dispatchCall(api, method, {});
      expect(result).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^unknown method '/) } });
    }
    expect((await dispatchCall(api, 'x'.repeat(10_000), {})) as ApiResult<unknown> & { ok: false }).toMatchObject({ error: { message: `unknown method '${'x'.repeat(100)}'` } });
    const bad = await dispatchCall(api, 'controlRun', { runId: 1, action: 'explode' });
    expect(bad).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT', message: expect.stringContaining('action') } });
    for (const request of [null, 7, 'x', [], { runId: '1' }, { runId: -1 }]) {
      expect(await dispatchCall(api, 'getRun', request)).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    }
    expect(seen).toEqual([]);
  });
});

describe('the Electron end', () => {
  it('answers through dispatchCall, after refusing frames that are not ours', async () => {
    const { registerApi } = await import('../../src-main/electron/ipc');
    const { IPC_INVOKE } = await import('../../src-shared/ipc');
    const unregister = registerApi(api, (url) => url.startsWith('app://quadra/'));
    const handle = handlers.get(IPC_INVOKE)!;
    const from = (url: string) => ({ senderFrame: { url }, sender: new FakeWindow(1) });
    expect(await handle(from('app://quadra/index.html'), 'listRuns', { limit: 2 })).toEqual({ ok: true, value: { echoed: { limit: 2 } } });
    expect(await handle(from('app://quadra/index.html'), 'rm -rf', {})).toEqual({ ok: false, error: { code: 'INVALID_ARGUMENT', message: "unknown method 'rm -rf'" } });
    expect(await handle(from('app://quadra/index.html'), 'getRun', { runId: 'x' })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(await handle(from('https://evil.example/'), 'listRuns', {})).toMatchObject({ ok: false, error: { code: 'UNSUPPORTED', message: 'refused a request from https://evil.example/' } });
    expect(await handle({ senderFrame: null }, 'listRuns', {})).toMatchObject({ ok: false, error: { code: 'UNSUPPORTED' } });
    unregister();
    expect(handlers.has(IPC_INVOKE)).toBe(false);
  });
});

/** A window's webContents, as far as the ipc end uses it. */
class FakeWindow extends EventEmitter {
  readonly sent: unknown[][] = [];
  constructor(readonly id: number) {
    super();
  }
  send(...args: unknown[]): void {
    this.sent.push(args);
  }
  isDestroyed(): boolean {
    return false;
  }
}

describe('the Electron end, per window', () => {
  it("gives each window's page one caller: events to it alone, ended by a reload or the window's end", async () => {
    const { registerApi } = await import('../../src-main/electron/ipc');
    const { IPC_EVENT, IPC_INVOKE } = await import('../../src-shared/ipc');
    const unregister = registerApi(api, () => true);
    const handle = handlers.get(IPC_INVOKE)!;
    const [first, second] = [new FakeWindow(1), new FakeWindow(2)];
    callers.length = 0;
    for (const sender of [first, first, second]) await handle({ senderFrame: { url: 'app://quadra/' }, sender }, 'listRuns', {});
    const [a, again, b] = callers as ApiCaller[];
    expect(a).toBe(again);
    expect(b).not.toBe(a);
    a!.send('onDidChangeRun', { id: 1 } as never);
    expect(first.sent).toEqual([[IPC_EVENT, 'onDidChangeRun', { id: 1 }]]);
    expect(second.sent).toEqual([]);

    const ended: string[] = [];
    a!.onDidDisconnect(() => ended.push('first'));
    b!.onDidDisconnect(() => ended.push('second'));
    first.emit('did-navigate');
    expect(ended).toEqual(['first']);
    // The reloaded page is a new client; the old one's events go nowhere.
    a!.send('onDidChangeRun', { id: 2 } as never);
    expect(first.sent).toHaveLength(1);
    await handle({ senderFrame: { url: 'app://quadra/' }, sender: first }, 'listRuns', {});
    expect(callers.at(-1)).not.toBe(a);
    second.emit('destroyed');
    expect(ended).toEqual(['first', 'second']);
    // Asked after its end: told at once.
    const late = await new Promise<string>((resolve) => b!.onDidDisconnect(() => resolve('told')));
    expect(late).toBe('told');
    expect(first.listenerCount('did-navigate')).toBe(1);
    unregister();
  });
});
