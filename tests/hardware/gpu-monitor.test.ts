import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { QuadraError } from '../../src-shared/errors';
import type { GpuMonitorStatus, GpuProcessSample, GpuSample, MonitorSample } from '../../src-shared/monitor';
import { cpuUsageBetween } from '../../src-main/hardware/cpu-usage';
import {
  GpuMonitor,
  computeAppArgs,
  gpuSampleArgs,
  parseComputeAppLine,
  parseGpuSampleLine,
  type GpuMonitorOptions,
} from '../../src-main/hardware/gpu-monitor';
import { isProcessAlive } from '../../src-main/hardware/process-identity';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FAKE_SMI = path.join(ROOT, 'tests/fixtures/bin/nvidia-smi');
const RECORDINGS = path.join(ROOT, 'resources/nvidia-smi');
const recordedLines = (name: string) => readFileSync(path.join(RECORDINGS, name), 'utf8').split('\n').filter((line) => line !== '');

const DRIVER_FAILURE =
  "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.";
const GPU0_UUID = 'GPU-00000000-0000-0000-0000-000000000000';
const GPU1_UUID = 'GPU-00000000-0000-0000-0000-000000000001';

/** The two RTX 3090s of banner.txt, as every tick of query-gpu-stream.csv has them. */
const RECORDED_GPUS: GpuSample[] = [
  {
    index: 0,
    name: 'NVIDIA GeForce RTX 3090',
    uuid: GPU0_UUID,
    memoryUsedMiB: 513,
    memoryTotalMiB: 24576,
    utilizationPercent: 0,
    temperatureC: 29,
    powerW: 38,
    powerLimitW: 350,
  },
  {
    index: 1,
    name: 'NVIDIA GeForce RTX 3090',
    uuid: GPU1_UUID,
    memoryUsedMiB: 12,
    memoryTotalMiB: 24576,
    utilizationPercent: 0,
    temperatureC: 25,
    powerW: 17,
    powerLimitW: 370,
  },
];

const OUR_PID = 5267;
const RECORDED_PROCESSES: GpuProcessSample[] = [
  { gpuIndex: 0, gpuUuid: GPU0_UUID, pid: 5268, processName: 'ffmpeg', usedMemoryMiB: 370, ours: false },
  { gpuIndex: 0, gpuUuid: GPU0_UUID, pid: OUR_PID, processName: 'ffmpeg', usedMemoryMiB: 230, ours: true },
  { gpuIndex: 0, gpuUuid: GPU0_UUID, pid: 2056, processName: 'C:\\Windows\\System32\\dwm.exe', usedMemoryMiB: null, ours: false },
  {
    gpuIndex: 0,
    gpuUuid: GPU0_UUID,
    pid: 4680,
    processName: 'C:\\Program Files\\NVIDIA Corporation\\NVIDIA GeForce Experience\\NVIDIA Share.exe',
    usedMemoryMiB: null,
    ours: false,
  },
];

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'quadra-monitor-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

const monitors: GpuMonitor[] = [];
afterEach(async () => {
  await Promise.all(monitors.splice(0).map((monitor) => monitor.stop()));
});

/** A monitor over the fake nvidia-smi, which appends "<pid> <arguments>" to the returned log at every start. */
function fakeMonitor(options: GpuMonitorOptions = {}, fakeEnv: Record<string, string> = {}) {
  const log = path.join(tempDir(), 'spawns.log');
  const monitor = new GpuMonitor({
    intervalMs: 100,
    ...options,
    env: { ...process.env, QUADRA_NVIDIA_SMI: FAKE_SMI, QUADRA_FAKE_SMI_LOG: log, ...fakeEnv },
  });
  monitors.push(monitor);
  return { monitor, spawns: () => spawnsIn(log) };
}

function spawnsIn(log: string): { gpus: number[]; apps: number[] } {
  const entries = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((line) => line !== '') : [];
  const pidsOf = (query: string) => entries.filter((line) => line.includes(` ${query}`)).map((line) => Number(line.split(' ')[0]));
  return { gpus: pidsOf('--query-gpu='), apps: pidsOf('--query-compute-apps=') };
}

/** Resolves with the first sample that passes `accept`. */
function nextSample(monitor: GpuMonitor, accept: (sample: MonitorSample) => boolean = () => true, timeoutMs = 5000): Promise<MonitorSample> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`no matching sample within ${timeoutMs} ms; GPU status ${JSON.stringify(monitor.gpuStatus)}`));
    }, timeoutMs);
    const unsubscribe = monitor.onDidSample((sample) => {
      if (!accept(sample)) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(sample);
    });
  });
}

async function samplesDuring(monitor: GpuMonitor, ms: number): Promise<MonitorSample[]> {
  const samples: MonitorSample[] = [];
  const unsubscribe = monitor.onDidSample((sample) => samples.push(sample));
  await new Promise((resolve) => setTimeout(resolve, ms));
  unsubscribe();
  return samples;
}


function parseFailure(parse: () => unknown): QuadraError {
  try {
    parse();
  } catch (error) {
    if (error instanceof QuadraError) return error;
    throw error;
  }
  throw new Error('expected the parser to throw');
}

describe('parseGpuSampleLine', () => {
  it('reads every line of the recorded stream', () => {
    const lines = recordedLines('query-gpu-stream.csv');
    expect(lines).toHaveLength(6);
    expect(lines.map(parseGpuSampleLine)).toEqual([...RECORDED_GPUS, ...RECORDED_GPUS, ...RECORDED_GPUS]);
  });

  it('keeps the decimals nvidia-smi prints for watts, and turns [N/A] and [Not Supported] into null', () => {
    // Watts as the RTX 2080 SUPER captures print them (38.92 W drawn, 250.00 W limit).
    expect(parseGpuSampleLine('0, NVIDIA GeForce RTX 2080 SUPER, GPU-a, 702, 8192, 0, 40, 38.92, 250.00')).toMatchObject({
      powerW: 38.92,
      powerLimitW: 250,
    });
    expect(parseGpuSampleLine('0, Tesla T4, [N/A], [N/A], 15360, [Not Supported], [Unknown Error], [N/A], N/A')).toEqual({
      index: 0,
      name: 'Tesla T4',
      uuid: null,
      memoryUsedMiB: null,
      memoryTotalMiB: 15360,
      utilizationPercent: null,
      temperatureC: null,
      powerW: null,
      powerLimitW: null,
    });
  });

  it('keeps a name with ", " whole and accepts CRLF', () => {
    expect(parseGpuSampleLine('1, Some Board, Rev 2, GPU-b, 1, 4094, 3, 40, 10.50, 75.00\r').name).toBe('Some Board, Rev 2');
  });

  it('names what it expected when a line does not parse', () => {
    expect(parseFailure(() => parseGpuSampleLine('0, Tesla T4, GPU-a, 2 MiB, 15360 MiB, 0 %, 40, 9.00 W, 70.00 W')).message).toBe(
      'nvidia-smi: memory.used must be a number, got "2 MiB" in "0, Tesla T4, GPU-a, 2 MiB, 15360 MiB, 0 %, 40, 9.00 W, 70.00 W"',
    );
    expect(parseFailure(() => parseGpuSampleLine(DRIVER_FAILURE)).message).toMatch(/^nvidia-smi: expected 9 fields separated by ", " \(index, name, uuid/);
    expect(parseFailure(() => parseGpuSampleLine('x, a, b, 1, 2, 3, 4, 5, 6')).code).toBe('INVALID_FILE');
  });
});

describe('parseComputeAppLine', () => {
  it('reads the recorded rows: MiB on Linux, [N/A] on Windows (WDDM) as null, paths with spaces whole', () => {
    expect(recordedLines('compute-apps.csv').map(parseComputeAppLine)).toEqual(
      RECORDED_PROCESSES.map(({ gpuUuid, pid, processName, usedMemoryMiB }) => ({ gpuUuid, pid, processName, usedMemoryMiB })),
    );
  });

  it('keeps a process name with ", " whole', () => {
    expect(parseComputeAppLine('GPU-a, 42, python train.py --tags a, b, 1024')).toEqual({
      gpuUuid: 'GPU-a',
      pid: 42,
      processName: 'python train.py --tags a, b',
      usedMemoryMiB: 1024,
    });
  });

  it('rejects a line without a whole-number pid', () => {
    expect(parseFailure(() => parseComputeAppLine('GPU-a, [N/A], ffmpeg, 370')).message).toBe(
      'nvidia-smi: pid must be a whole number, got "[N/A]" in "GPU-a, [N/A], ffmpeg, 370"',
    );
    expect(parseFailure(() => parseComputeAppLine('GPU-a, 1, ffmpeg')).code).toBe('INVALID_FILE');
  });
});

describe('cpuUsageBetween', () => {
  const core = (busy: number, idle: number) => ({ times: { user: busy, nice: 0, sys: 0, idle, irq: 0 } });

  it('is the busy share of each core and of all cores since the previous reading', () => {
    const usage = cpuUsageBetween([core(100, 100), core(0, 0)], [core(175, 125), core(0, 100)]);
    expect(usage.perCorePercent).toEqual([75, 0]);
    expect(usage.totalPercent).toBe(37.5);
  });

  it('reads 0 when the cores changed or no time passed', () => {
    expect(cpuUsageBetween([core(1, 1)], [core(2, 2), core(3, 3)])).toEqual({ perCorePercent: [0, 0], totalPercent: 0 });
    expect(cpuUsageBetween([core(5, 5)], [core(5, 5)])).toEqual({ perCorePercent: [0], totalPercent: 0 });
  });
});

describe.skipIf(process.platform === 'win32')('GpuMonitor against the fake nvidia-smi', () => {
  it('asks nvidia-smi for the documented fields, repeating every interval', () => {
    expect(gpuSampleArgs(1000)).toEqual([
      '--query-gpu=index,name,uuid,memory.used,memory.total,utilization.gpu,temperature.gpu,power.draw,power.limit',
      '--format=csv,noheader,nounits',
      '-lms',
      '1000',
    ]);
    expect(computeAppArgs(250)).toEqual([
      '--query-compute-apps=gpu_uuid,pid,process_name,used_memory',
      '--format=csv,noheader,nounits',
      '-lms',
      '250',
    ]);
  });

  it('emits a sample per interval with both GPUs and the process list, from one nvidia-smi of each kind', async () => {
    const { monitor, spawns } = fakeMonitor({ ourPids: () => [OUR_PID] });
    monitor.start();
    monitor.start(); // already running: nothing more is spawned
    await nextSample(monitor, (sample) => sample.gpuStatus.state === 'ok');

    const samples = await samplesDuring(monitor, 1000);
    expect(samples.length).toBeGreaterThanOrEqual(7);
    expect(samples.length).toBeLessThanOrEqual(13);
    const gaps = samples.slice(1).map((sample, i) => sample.time - (samples[i] as MonitorSample).time);
    const meanGap = gaps.reduce((sum, gap) => sum + gap, 0) / gaps.length;
    expect(meanGap).toBeGreaterThan(80);
    expect(meanGap).toBeLessThan(130);

    for (const sample of samples) {
      expect(sample.gpuStatus).toEqual({ state: 'ok' });
      expect(sample.gpus).toEqual(RECORDED_GPUS);
      expect(sample.processes).toEqual(RECORDED_PROCESSES);
      expect(sample.cpu.perCorePercent).toHaveLength(os.cpus().length);
      expect(sample.cpu.totalPercent).toBeGreaterThanOrEqual(0);
      expect(sample.cpu.totalPercent).toBeLessThanOrEqual(100);
      expect(sample.memory.totalBytes).toBe(os.totalmem());
      expect(sample.memory.freeBytes).toBeGreaterThan(0);
    }
    // Ten or so ticks, and still the one process of each kind that was started first.
    expect(spawns().gpus).toHaveLength(1);
    expect(spawns().apps).toHaveLength(1);
  });

  it('without nvidia-smi: unavailable, with the reason, and CPU samples keep coming', async () => {
    const noPath = new GpuMonitor({ intervalMs: 50, env: { PATH: tempDir() } });
    monitors.push(noPath);
    noPath.start();
    const samples = await samplesDuring(noPath, 300);
    expect(samples.length).toBeGreaterThanOrEqual(3);
    for (const sample of samples) {
      expect(sample.gpuStatus).toEqual({
        state: 'unavailable',
        reason: 'no NVIDIA GPU or driver found (nvidia-smi not found on PATH (no NVIDIA driver installed?))',
      });
      expect(sample.gpus).toEqual([]);
      expect(sample.processes).toEqual([]);
      expect(sample.cpu.perCorePercent).toHaveLength(os.cpus().length);
    }

    const missing = path.join(tempDir(), 'nvidia-smi');
    const wrongPath = new GpuMonitor({ intervalMs: 50, env: { ...process.env, QUADRA_NVIDIA_SMI: missing } });
    monitors.push(wrongPath);
    wrongPath.start();
    const sample = await nextSample(wrongPath, (s) => s.gpuStatus.state !== 'starting');
    expect(sample.gpuStatus).toEqual({ state: 'unavailable', reason: `no NVIDIA GPU or driver found (nvidia-smi not found at ${missing})` });
  });

  it('a failing driver: restarted maxRestarts times with backoff, then failed for good', async () => {
    // Pauses of 120 then 240 ms, long enough for 50 ms samples to see each restart.
    const { monitor, spawns } = fakeMonitor({ intervalMs: 50, maxRestarts: 2, restartDelayMs: 120 }, { QUADRA_FAKE_SMI_FAIL: '1' });
    const states: GpuMonitorStatus[] = [];
    monitor.onDidSample((sample) => {
      const last = states[states.length - 1];
      if (JSON.stringify(last) !== JSON.stringify(sample.gpuStatus)) states.push(sample.gpuStatus);
    });
    const started = Date.now();
    monitor.start();
    const failed = await nextSample(monitor, (sample) => sample.gpuStatus.state === 'failed');
    expect(Date.now() - started).toBeGreaterThanOrEqual(120 + 240);
    const reason = `nvidia-smi exited with code 9: ${DRIVER_FAILURE}`;
    expect(failed.gpuStatus).toEqual({ state: 'failed', reason: `${reason} (gave up after 2 restarts)` });
    expect(states.filter((state) => state.state !== 'starting')).toEqual([
      { state: 'restarting', reason, restart: 1, maxRestarts: 2 },
      { state: 'restarting', reason, restart: 2, maxRestarts: 2 },
      failed.gpuStatus,
    ]);
    // Three sessions of two nvidia-smi each. The one that exits first gets the other killed, at
    // times before the fake has written its log line, so only the crashed one is sure to be logged.
    const spawned = spawns();
    expect(spawned.gpus.length).toBeLessThanOrEqual(3);
    expect(spawned.apps.length).toBeLessThanOrEqual(3);
    expect(spawned.gpus.length + spawned.apps.length).toBeGreaterThanOrEqual(3);

    // Failed is final: no more nvidia-smi, but CPU samples go on.
    const later = await samplesDuring(monitor, 400);
    expect(later.length).toBeGreaterThanOrEqual(4);
    expect(later.every((sample) => sample.gpuStatus.state === 'failed' && sample.gpus.length === 0)).toBe(true);
    expect(spawns()).toEqual(spawned);
  });

  it('an nvidia-smi that prints nothing is killed as hung', async () => {
    const { monitor, spawns } = fakeMonitor({ maxRestarts: 0, stallTimeoutMs: 300 }, { QUADRA_FAKE_SMI_SLEEP: '2' });
    monitor.start();
    const failed = await nextSample(monitor, (sample) => sample.gpuStatus.state === 'failed', 3000);
    expect(failed.gpuStatus).toEqual({ state: 'failed', reason: 'nvidia-smi printed no GPU line for 300 ms (a hung driver?)' });
    await monitor.stop();
    for (const pid of [...spawns().gpus, ...spawns().apps]) expect(isProcessAlive(pid)).toBe(false);
  });

  it('stop() kills every nvidia-smi it started, ends the samples, and may be called again', async () => {
    const { monitor, spawns } = fakeMonitor();
    monitor.start();
    await nextSample(monitor, (sample) => sample.gpuStatus.state === 'ok');
    const fakes = [...spawns().gpus, ...spawns().apps];
    expect(fakes).toHaveLength(2);
    // The fakes' own children (their sleep between ticks) must go too.
    const table = execFileSync('ps', ['-A', '-o', 'pid=,ppid='], { encoding: 'utf8' });
    const children = table
      .split('\n')
      .map((row) => row.trim().split(/\s+/).map(Number))
      .filter(([, ppid]) => ppid !== undefined && fakes.includes(ppid))
      .map(([pid]) => pid as number);

    let after = 0;
    monitor.onDidSample(() => after++);
    await monitor.stop();
    for (const pid of [...fakes, ...children]) expect(isProcessAlive(pid)).toBe(false);
    await monitor.stop();
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(after).toBe(0);
  });
});
