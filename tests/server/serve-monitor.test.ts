import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { MonitorSample } from '../../src-shared/monitor';
import { decodeWire } from '../../src-shared/wire';
import { GpuMonitor } from '../../src-main/hardware/gpu-monitor';
import { NVIDIA_SMI_ENV } from '../../src-main/hardware/nvidia-smi';
import { apiClient, startWorkstation, type Workstation } from './helpers';
import { isProcessAlive } from '../../src-main/hardware/process-identity';

/**
 * Issue 13: monitoring is each client's own (a browser tab is one WebSocket session): its switch and
 * its interval. One nvidia-smi per query runs while anyone watches, at the smallest interval asked
 * for. A real server, a real GpuMonitor over the recorded nvidia-smi (tests/fixtures/bin).
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FAKE_SMI = path.join(ROOT, 'tests/fixtures/bin/nvidia-smi');

const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-serve-monitor-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let workstation: Workstation | null = null;
afterEach(async () => {
  await workstation?.close();
  workstation = null;
});

/** A tab: the UI's client, counting the monitor samples pushed to it. */
async function tab(ws: Workstation) {
  const client = await apiClient(ws.server.port, ws.server.token);
  const samples: MonitorSample[] = [];
  client.ws.on('message', (data) => {
    const message = decodeWire(data.toString()) as { event?: string; payload?: MonitorSample };
    if (message.event === 'onDidSampleMonitor') samples.push(message.payload!);
  });
  return { ...client, samples };
}

/** What the fake nvidia-smi logged: one line per start, "<pid> <arguments>". */
function smiStarts(log: string): Array<{ pid: number; interval: string }> {
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => ({ pid: Number(line.split(' ')[0]), interval: line.split(' ').at(-1)! }));
}


async function waitFor(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('monitoring per client', () => {
  it('samples go only to the tabs that asked, each at its own interval; one tab turning off or leaving stops only its own', async () => {
    const log = path.join(tmp, 'nvidia-smi.log');
    const monitor = new GpuMonitor({ env: { ...process.env, [NVIDIA_SMI_ENV]: FAKE_SMI, QUADRA_FAKE_SMI_LOG: log } });
    workstation = await startWorkstation({ monitor });
    const watching = await tab(workstation);
    const other = await tab(workstation);

    expect(await watching.call('setMonitoring', { enabled: true, intervalMs: 250 })).toEqual({ ok: true, value: { enabled: true, intervalMs: 250 } });
    await waitFor('GPU samples', () => watching.samples.some((s) => s.gpuStatus.state === 'ok' && s.gpus.length === 2));
    await sleep(1000);
    expect(other.samples).toEqual([]);
    // One nvidia-smi for the GPUs and one for their processes, at the interval asked for.
    expect(smiStarts(log).map((s) => s.interval)).toEqual(['250', '250']);

    // The second tab watches at 1000 ms: nothing new is started, and it gets a sample a second.
    expect(await other.call('setMonitoring', { enabled: true, intervalMs: 1000 })).toEqual({ ok: true, value: { enabled: true, intervalMs: 1000 } });
    const [fastBefore, slowBefore] = [watching.samples.length, other.samples.length];
    await sleep(3000);
    const fast = watching.samples.length - fastBefore;
    const slow = other.samples.length - slowBefore;
    expect(fast).toBeGreaterThanOrEqual(9);
    expect(slow).toBeGreaterThanOrEqual(2);
    expect(slow).toBeLessThanOrEqual(4);
    expect(smiStarts(log)).toHaveLength(2);
    const times = other.samples.map((s) => s.time);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(750);

    // The first tab turns off: nothing more reaches it (every sample sent before the answer came
    // before it); the other goes on, and the monitor slows down to its 1000 ms.
    expect(await watching.call('setMonitoring', { enabled: false })).toEqual({ ok: true, value: { enabled: false, intervalMs: null } });
    const stoppedAt = watching.samples.length;
    const otherAt = other.samples.length;
    await sleep(2500);
    expect(watching.samples.length).toBe(stoppedAt);
    expect(other.samples.length - otherAt).toBeGreaterThanOrEqual(2);
    expect(smiStarts(log).map((s) => s.interval)).toEqual(['250', '250', '1000', '1000']);

    // The last watcher leaves without a word (a closed tab): nvidia-smi stops.
    other.close();
    await waitFor('nvidia-smi to stop', () => smiStarts(log).every((s) => !isProcessAlive(s.pid)));
    const refused = await watching.call('setMonitoring', { enabled: true, intervalMs: 100 });
    expect(refused).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT', message: expect.stringContaining('intervalMs') } });
    watching.close();
  }, 60_000);
});
