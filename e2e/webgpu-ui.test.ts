import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeUi, launchChromium, ROOT, startRun, startServe, uiSkipReason } from './helpers';

/**
 * A mixed-precision webgpu run as the UI shows it, against a real `quadra serve` whose workers use
 * dawn.node on SwiftShader: the Monitor lists our GPU workers and their buffers, and the run's
 * detail its workers' GPU memory, the loss scale and the skipped steps.
 */
const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
const why = uiSkipReason() ?? (existsSync(SWIFTSHADER) ? null : `no SwiftShader Vulkan driver at ${SWIFTSHADER}`);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-webgpu-ui-'));
const shots = path.join(ROOT, 'screenshots');
let server: ChildProcess | null = null;
let browser: Browser | null = null;
let url = '';

describe.skipIf(why !== null)(`a webgpu run in the UI${why ? ` (skipped: ${why})` : ''}`, () => {
  beforeAll(async () => {
    ({ url, child: server } = await startServe(path.join(tmp, 'ui.sqlite'), { ...process.env, VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES ?? SWIFTSHADER }));
    browser = await launchChromium();
    mkdirSync(shots, { recursive: true });
  }, 60_000);

  afterAll(() => closeUi(browser, server, tmp));

  it('shows our GPU workers in the Monitor, and GPU memory and the loss scale in the run', async () => {
    const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`${url}#monitor`);
    await page.waitForSelector('.connection.open');
    const { runId } = await startRun(page, {
      name: 'mixed on webgpu',
      mode: 'single',
      backend: 'webgpu',
      engine: { model: { fieldSize: 12, hiddenSize: 16, spikingHiddenSize: 8, spikingSteps: 3 }, batchSize: 16, precision: 'mixed' },
      epochs: 500,
      dataset: 'synthetic:256',
    });
    const ours = page.locator('table.ours tbody tr');
    await expect.poll(() => ours.count(), { timeout: 30_000 }).toBe(1);
    expect(await ours.first().innerText()).toMatch(new RegExp(`${runId}\\s+0\\s+\\d+\\s+webgpu\\s+[\\d.]+ (KiB|MiB)`));
    await page.screenshot({ path: path.join(shots, 'monitor-webgpu.png') });

    await page.goto(`${url}#runs`);
    await page.locator(`tbody tr[data-run-id="${runId}"]`).click();
    await expect.poll(() => page.locator('dt', { hasText: 'Loss scale' }).count(), { timeout: 30_000 }).toBe(1);
    expect(await page.locator('section[aria-label="Workers"] thead').innerText()).toContain('GPU memory');
    await page.screenshot({ path: path.join(shots, 'run-webgpu-mixed.png') });
    await page.getByRole('button', { name: 'Cancel' }).click();
    await expect.poll(() => page.locator('.detail-header .status').innerText(), { timeout: 30_000 }).toBe('cancelled');
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);
});
