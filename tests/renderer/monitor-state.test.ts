import { describe, expect, it } from 'vitest';
import { DEFAULT_MONITOR_INTERVAL_MS } from '../../src-shared/api';
import type { MonitorSample } from '../../src-shared/monitor';
import { MONITOR_INTERVALS, MonitorState } from '../../src-renderer/components/monitor/monitor-state.svelte';
import { ApiError } from '../../src-renderer/lib/api/client';
import { FakeApi } from './fake-api';

/** Lets the deferred enable (a microtask) and the awaited fake calls land. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

function sample(time: number): MonitorSample {
  return {
    time,
    cpu: { perCorePercent: [10, 20], totalPercent: 15 },
    memory: { totalBytes: 8 * 2 ** 30, freeBytes: 2 ** 30 },
    gpus: [],
    processes: [],
    gpuStatus: { state: 'unavailable', reason: 'no NVIDIA GPU or driver found (nvidia-smi not found on PATH)' },
  };
}

/** A workstation that answers setMonitoring as the real one does: the interval asked for, or its default. */
function monitoringApi(): FakeApi {
  return new FakeApi().handle('setMonitoring', ({ enabled, intervalMs }) => ({ enabled, intervalMs: enabled ? (intervalMs ?? DEFAULT_MONITOR_INTERVAL_MS) : null }));
}

describe('MonitorState', () => {
  it('turns monitoring on at the default interval when shown, and off when it goes away', async () => {
    const api = monitoringApi();
    const monitor = new MonitorState();
    const stop = monitor.connect(api);
    await settle();
    expect(api.callsOf('setMonitoring')).toEqual([{ enabled: true, intervalMs: DEFAULT_MONITOR_INTERVAL_MS }]);
    expect(monitor.intervalMs).toBe(DEFAULT_MONITOR_INTERVAL_MS);
    expect(monitor.activeIntervalMs).toBe(DEFAULT_MONITOR_INTERVAL_MS);
    api.emit('onDidSampleMonitor', sample(1));
    expect(monitor.latest?.time).toBe(1);
    stop();
    expect(api.callsOf('setMonitoring').at(-1)).toEqual({ enabled: false });
  });

  it('a chosen interval is sent at once, and again after every reconnect (a new connection starts with monitoring off)', async () => {
    const api = monitoringApi();
    const monitor = new MonitorState();
    const stop = monitor.connect(api);
    await settle();
    await monitor.chooseInterval(250);
    expect(api.callsOf('setMonitoring').at(-1)).toEqual({ enabled: true, intervalMs: 250 });
    expect(monitor.activeIntervalMs).toBe(250);

    api.setConnection('closed');
    expect(monitor.activeIntervalMs).toBeNull();
    api.setConnection('connecting');
    const sent = api.callsOf('setMonitoring').length;
    api.setConnection('open');
    await settle();
    expect(api.callsOf('setMonitoring').slice(sent)).toEqual([{ enabled: true, intervalMs: 250 }]);
    expect(monitor.activeIntervalMs).toBe(250);
    stop();
  });

  it('offers only intervals the workstation takes, and ignores any other', async () => {
    const api = monitoringApi();
    const monitor = new MonitorState();
    const stop = monitor.connect(api);
    await settle();
    expect(MONITOR_INTERVALS.map((choice) => choice.ms)).toEqual([250, 500, 1000, 2000, 5000]);
    const sent = api.callsOf('setMonitoring').length;
    await monitor.chooseInterval(100);
    await monitor.chooseInterval(Number.NaN);
    expect(api.callsOf('setMonitoring')).toHaveLength(sent);
    expect(monitor.intervalMs).toBe(DEFAULT_MONITOR_INTERVAL_MS);
    stop();
  });

  it('a refusal is shown, and cleared by the next success', async () => {
    let refuse = true;
    const api = new FakeApi().handle('setMonitoring', ({ enabled, intervalMs }) => {
      if (refuse) throw new ApiError({ code: 'UNSUPPORTED', message: 'this workstation was started without a hardware monitor' });
      return { enabled, intervalMs: intervalMs ?? null };
    });
    const monitor = new MonitorState();
    const stop = monitor.connect(api);
    await settle();
    expect(monitor.error).toBe('this workstation was started without a hardware monitor');
    refuse = false;
    await monitor.chooseInterval(2000);
    expect(monitor.error).toBeNull();
    expect(monitor.activeIntervalMs).toBe(2000);
    stop();
  });
});
