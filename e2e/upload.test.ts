import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { serializeNpy } from '../src-main/data/npy';
import { openView, ROOT, uiSkipReason, useUi, type UiSession, type WatchedPage } from './helpers';

/**
 * Files from the browser go to `quadra serve` by `POST /upload`, not inside a WebSocket message:
 * a dataset larger than the WebSocket's 32 MiB message limit is checked, and the page shows the
 * upload's progress (bar, bytes and percent) while it goes. The network is throttled through the
 * DevTools protocol so that the bar is seen; screenshots land in screenshots/ (git-ignored).
 */
const why = uiSkipReason();
const SHOTS = path.join(ROOT, 'screenshots');

/** A page on `view` whose uploads are held to `uploadBytesPerSecond`. */
async function openThrottled(ui: UiSession, view: string, uploadBytesPerSecond: number): Promise<WatchedPage> {
  const watched = await ui.newPage();
  const cdp = await watched.page.context().newCDPSession(watched.page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: uploadBytesPerSecond });
  await openView(watched.page, ui.url, view);
  return watched;
}

/** Waits for the bar to be part-way, checks what it says, and keeps a screenshot of it. */
async function expectProgress(page: Page, totalText: string, shot: string): Promise<void> {
  const bar = page.getByRole('progressbar');
  await bar.waitFor({ timeout: 20_000 });
  await expect.poll(async () => Number(await bar.getAttribute('aria-valuenow')), { timeout: 20_000 }).toBeGreaterThan(30);
  const now = Number(await bar.getAttribute('aria-valuenow'));
  expect(now).toBeLessThan(100);
  expect(await bar.getAttribute('aria-valuemin')).toBe('0');
  expect(await bar.getAttribute('aria-valuemax')).toBe('100');
  expect(await bar.getAttribute('tabindex')).toBe('0');
  const text = (await bar.getAttribute('aria-valuetext'))!;
  expect(text).toMatch(new RegExp(`^Uploading [\\d.]+ (B|KiB|MiB) of ${totalText.replace('.', '\\.')} — \\d+%$`));
  expect(await page.locator('.upload .text').innerText()).toMatch(/^Uploading .* — \d+%$/);
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, shot), fullPage: true });
}

describe.skipIf(why !== null)(`uploads from the page${why ? ` (skipped: ${why})` : ''}`, () => {
  const ui = useUi('upload-ui');

  it('checks a 40 MiB dataset (over the WebSocket message limit) with upload progress shown', async () => {
    const rows = 104_858;
    const values = new Float32Array(rows * 100).map((_, i) => (i % 97) / 97);
    const file = path.join(ui.tmp, 'big.npy');
    writeFileSync(file, serializeNpy(values, [rows, 100]));
    const { page, errors } = await openThrottled(ui, 'train', 8 * 1024 * 1024);
    await page.getByLabel('Import a file').check();
    await page.setInputFiles('#train-file', file);
    await expectProgress(page, '40.0 MiB', 'upload-train.png');
    await page.waitForSelector(`text=big.npy — npy, ${rows.toLocaleString('en-US')} rows × 100 values`, { timeout: 60_000 });
    expect(await page.getByRole('progressbar').count()).toBe(0);
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);

  it('imports a checkpoint with upload progress shown', async () => {
    const checkpoint = path.join(ROOT, 'tests/fixtures/pytorch/default.safetensors');
    const size = readFileSync(checkpoint).length;
    const { page, errors } = await openThrottled(ui, 'checkpoints', 256 * 1024);
    await page.locator('#checkpoint-file').setInputFiles(checkpoint);
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await expectProgress(page, `${(size / 1024 / 1024).toFixed(1)} MiB`, 'upload-checkpoint.png');
    expect(await page.getByRole('button', { name: 'Uploading…' }).isDisabled()).toBe(true);
    await expect.poll(() => page.locator('.notice').innerText().catch(() => ''), { timeout: 30_000 }).toContain('Imported default.safetensors as run');
    expect(await page.getByRole('progressbar').count()).toBe(0);
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);
});
