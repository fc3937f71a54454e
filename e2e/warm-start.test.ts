import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../src-main/store/database';
import { closeUi, launchChromium, quadraCli, ROOT, startServe, uiSkipReason } from './helpers';

/**
 * Checkpoints → "Train from this" in Debian's headless Chromium against a real `quadra serve`: the
 * wizard opens on that checkpoint with its model sizes fixed, and the run it starts records the
 * warm start. An imported run offers no Resume, only a warm start.
 */
const why = uiSkipReason();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-warm-'));
const db = path.join(tmp, 'ui.sqlite');
const shots = path.join(ROOT, 'screenshots');
let server: ChildProcess | null = null;
let browser: Browser | null = null;
let url = '';

async function open(view: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${url}#${view}`);
  await page.waitForSelector('.connection.open');
  return { page, errors };
}

describe.skipIf(why !== null)(`warm starts from the Checkpoints view in Chromium${why ? ` (skipped: ${why})` : ''}`, () => {
  beforeAll(async () => {
    quadraCli(['train', '--epochs', '1', '--dataset', 'synthetic:128', '--batch-size', '32', '--hidden-size', '16', '--spiking-hidden-size', '8', '--backend', 'simd', '--name', 'seeded'], db);
    ({ url, child: server } = await startServe(db));
    browser = await launchChromium();
    mkdirSync(shots, { recursive: true });
  }, 60_000);

  afterAll(() => closeUi(browser, server, tmp));

  it('opens the wizard on the checkpoint, model sizes fixed, and starts a run from its weights', async () => {
    const { page, errors } = await open('checkpoints');
    const train = page.getByRole('button', { name: /Train a new run from the checkpoint at step/ }).first();
    await train.waitFor({ timeout: 20_000 });
    await train.click();
    await page.getByRole('heading', { name: /Training from checkpoint \d+/ }).waitFor();
    expect(page.url()).toContain('#train');
    await page.screenshot({ path: path.join(shots, 'warm-start-data.png') });

    await page.getByRole('button', { name: 'Next' }).click();
    expect(await page.locator('#train-hidden-size').isDisabled()).toBe(true);
    expect(await page.locator('#train-hidden-size').inputValue()).toBe('16');
    expect(await page.locator('#train-spiking-hidden-size').inputValue()).toBe('8');
    await page.screenshot({ path: path.join(shots, 'warm-start-model.png') });

    await page.getByLabel(/Reset the optimizer/).check();
    for (let i = 0; i < 3; i++) await page.getByRole('button', { name: 'Next' }).click();
    await page.getByRole('button', { name: 'Start training' }).click();
    await page.getByText(/Run \d+ started/).waitFor({ timeout: 30_000 });
    expect(errors).toEqual([]);
    await page.close();

    const store = openStore(db, { readonly: true });
    try {
      const newest = store.runs.list({ limit: 1 })[0]!;
      expect(newest.config).toMatchObject({ engine: { model: { hiddenSize: 16, spikingHiddenSize: 8 } }, initFrom: { resetOptimizer: true } });
    } finally {
      store.close();
    }
  }, 90_000);
});
