import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, ROOT, startServe, stopServe, uiSkipReason } from './helpers';
import { isProcessAlive } from '../src-main/hardware/process-identity';

/**
 * The Monitor view in Debian's headless Chromium against two real `quadra serve`s: one with the
 * fake nvidia-smi replaying a 2 × RTX 3090 machine, one on a machine without nvidia-smi.
 */
const why = uiSkipReason();
const FAKE_SMI = path.join(ROOT, 'tests/fixtures/bin/nvidia-smi');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-monitor-'));
/** Every start of the fake nvidia-smi, as "<pid> <arguments>". */
const smiLog = path.join(tmp, 'nvidia-smi.log');

const servers: ChildProcess[] = [];
let browser: Browser | null = null;
let withGpus = '';
let withoutGpus = '';

async function serve(name: string, env: NodeJS.ProcessEnv): Promise<string> {
  const { url, child } = await startServe(path.join(tmp, `${name}.sqlite`), env);
  servers.push(child);
  return url;
}

/** The pids of the long-running (-lms) nvidia-smi processes the monitor started so far. */
function monitorSmiPids(): number[] {
  if (!existsSync(smiLog)) return [];
  return readFileSync(smiLog, 'utf8')
    .split('\n')
    .filter((line) => line.includes(' -lms '))
    .map((line) => Number(line.split(' ')[0]));
}


/** Counts the monitor samples the page receives over its WebSocket. */
function countSamples(page: Page): { readonly count: number } {
  const counter = { count: 0 };
  page.on('websocket', (socket) => {
    socket.on('framereceived', (frame) => {
      if (String(frame.payload).includes('"onDidSampleMonitor"')) counter.count++;
    });
  });
  return counter;
}

describe.skipIf(why !== null)(`the Monitor view in Chromium${why ? ` (skipped: ${why})` : ''}`, () => {
  beforeAll(async () => {
    const env = { ...process.env };
    delete env.QUADRA_NVIDIA_SMI;
    // A PATH with no nvidia-smi on it, whatever this machine has installed.
    const emptyBin = path.join(tmp, 'empty-bin');
    mkdirSync(emptyBin);
    [withGpus, withoutGpus] = await Promise.all([
      serve('gpus', { ...env, QUADRA_NVIDIA_SMI: FAKE_SMI, QUADRA_FAKE_SMI_LOG: smiLog }),
      serve('no-gpu', { ...env, PATH: emptyBin }),
    ]);
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all(servers.map(stopServe));
    rmSync(tmp, { recursive: true, force: true });
  });

  it('shows both GPUs, the process list with N/A memory and CPU cores, and stops monitoring when left', async () => {
    const page = await browser!.newPage();
    const samples = countSamples(page);
    await page.goto(`${withGpus}#monitor`);
    const gpuPanel = page.locator('section[aria-label="GPUs"]');
    await expect.poll(() => gpuPanel.locator('article').count(), { timeout: 15_000 }).toBe(2);
    const gpuText = await gpuPanel.innerText();
    expect(gpuText).toMatch(/GPU 0\s+NVIDIA GeForce RTX 3090/);
    expect(gpuText).toMatch(/GPU 1\s+NVIDIA GeForce RTX 3090/);
    expect(gpuText).toContain('513 / 24,576 MiB');
    expect(gpuText).toContain('12 / 24,576 MiB');
    expect(gpuText).toContain('38 / 350 W');

    // compute-apps.csv: two ffmpeg rows with memory, two Windows rows whose memory is [N/A].
    const rows = page.locator('section[aria-label="GPU processes"] tbody tr');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(4);
    expect(await rows.filter({ hasText: '5268' }).innerText()).toContain('370 MiB');
    expect(await rows.filter({ hasText: 'dwm.exe' }).innerText()).toMatch(/N\/A$/);

    expect(await page.locator('.core [role="meter"]').count()).toBe(os.cpus().length);
    expect(await page.locator('section[aria-label="Last 5 minutes"] canvas').count()).toBe(3);
    expect(monitorSmiPids().length).toBeGreaterThanOrEqual(2);

    // Leaving the view turns monitoring off: nvidia-smi is stopped and no sample arrives any more.
    await page.evaluate("location.hash = 'hardware'");
    await expect.poll(() => page.locator('main h1').innerText()).toBe('Hardware');
    await expect.poll(() => monitorSmiPids().filter(isProcessAlive), { timeout: 10_000 }).toEqual([]);
    const startedBefore = monitorSmiPids().length;
    const received = samples.count;
    expect(received).toBeGreaterThan(0);
    await page.waitForTimeout(2_500);
    expect(samples.count).toBe(received);
    expect(monitorSmiPids().length).toBe(startedBefore);
    await page.close();
  }, 40_000);

  it('without nvidia-smi says so and goes on sampling the CPU', async () => {
    const page = await browser!.newPage();
    await page.goto(`${withoutGpus}#monitor`);
    const gpuPanel = page.locator('section[aria-label="GPUs"]');
    await expect.poll(() => gpuPanel.innerText(), { timeout: 15_000 }).toContain('No NVIDIA GPU or driver found — nvidia-smi not found on PATH');
    expect(await page.locator('.core [role="meter"]').count()).toBe(os.cpus().length);
    expect(await page.locator('section[aria-label="GPU processes"]').count()).toBe(0);

    const sampledAt = page.locator('.live time');
    const first = await sampledAt.getAttribute('datetime');
    await expect.poll(() => sampledAt.getAttribute('datetime'), { timeout: 5_000 }).not.toBe(first);
    expect(await page.locator('.core [role="meter"]').first().getAttribute('aria-valuenow')).toMatch(/^\d+$/);
    expect(await page.locator('section[aria-label="Last 5 minutes"] canvas').count()).toBe(1);
    await page.close();
  }, 30_000);

  it('each tab has its own interval: 250 ms chosen by keyboard in one, the default 1 s in another', async () => {
    const fast = await browser!.newPage();
    const slow = await browser!.newPage();
    const fastSamples = countSamples(fast);
    const slowSamples = countSamples(slow);
    await Promise.all([fast.goto(`${withoutGpus}#monitor`), slow.goto(`${withoutGpus}#monitor`)]);
    await Promise.all([fast.locator('.live time').waitFor({ timeout: 15_000 }), slow.locator('.live time').waitFor({ timeout: 15_000 })]);
    const select = fast.locator('label.interval select');
    expect(await select.inputValue()).toBe('1000');
    expect((await fast.locator('label.interval').innerText()).trim()).toMatch(/^Update every/);
    // From 1 s, two options up is 250 ms.
    await select.focus();
    await fast.keyboard.press('ArrowUp');
    await fast.keyboard.press('ArrowUp');
    expect(await select.inputValue()).toBe('250');

    await fast.waitForTimeout(600);
    const [fastBefore, slowBefore] = [fastSamples.count, slowSamples.count];
    await fast.waitForTimeout(4000);
    const fastGot = fastSamples.count - fastBefore;
    const slowGot = slowSamples.count - slowBefore;
    // About 16 and 4: timers jitter, so the bounds are loose, but far apart.
    expect(fastGot).toBeGreaterThanOrEqual(11);
    expect(slowGot).toBeGreaterThanOrEqual(2);
    expect(slowGot).toBeLessThanOrEqual(6);
    await fast.close();
    await slow.close();
  }, 40_000);
});
