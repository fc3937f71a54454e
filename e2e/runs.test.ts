import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { quadraCli, ROOT, startRun, uiSkipReason, useUi } from './helpers';

/**
 * The Runs view in Debian's headless Chromium against a real `quadra serve`: a run's detail, the
 * comparison of two runs (only the settings that differ), and a live run's step counter.
 * Needs /usr/bin/chromium and the built renderer (npm run build).
 */
const why = uiSkipReason();
const COMMON = ['--dataset', 'synthetic:256', '--batch-size', '32', '--hidden-size', '16', '--backend', 'wasm'];

describe.skipIf(why !== null)(`the Runs view in Chromium${why ? ` (skipped: ${why})` : ''}`, () => {
  const ui = useUi('runs-ui', {
    seed: (db) => {
      quadraCli(['train', '--epochs', '1', '--name', 'alpha', ...COMMON], db);
      quadraCli(['train', '--epochs', '2', '--name', 'beta', '--spike-gradient', 'none', ...COMMON], db);
    },
  });
  const openRuns = async (): Promise<Page> => (await ui.open('runs')).page;

  it("opens a run's detail by click and by keyboard: loss chart, config, checkpoints", async () => {
    const page = await openRuns();
    await expect.poll(() => page.locator('tbody tr').count(), { timeout: 20_000 }).toBe(2);

    await page.locator('tbody tr', { hasText: 'alpha' }).click();
    await expect.poll(() => page.locator('h1').innerText()).toBe('alpha');
    await page.locator('figure[aria-label="Loss"] canvas').waitFor();
    await page.locator('figure[aria-label="Throughput"] canvas').waitFor();
    const config = page.locator('section[aria-label="Configuration"]');
    await expect.poll(() => config.innerText()).toContain('hiddenSize');
    expect(await config.locator('dt[title="engine.model.hiddenSize"] + dd').innerText()).toBe('16');
    expect(await config.locator('dt[title="epochs"] + dd').innerText()).toBe('1');
    expect(await page.locator('section[aria-label="Checkpoints"]').innerText()).toContain('best');
    // A finished run cannot be paused, resumed or cancelled.
    for (const name of ['Pause', 'Resume', 'Cancel']) expect(await page.getByRole('button', { name }).isDisabled()).toBe(true);

    // Escape goes back with focus on the row; arrows move between rows and Enter opens one.
    await page.keyboard.press('Escape');
    await page.locator('tbody tr').first().waitFor();
    expect(await page.evaluate(() => (globalThis as unknown as { document: { activeElement: { textContent: string | null } | null } }).document.activeElement?.textContent ?? '')).toContain('alpha');
    await page.locator('tbody tr', { hasText: 'beta' }).focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('h1').innerText()).toBe('beta');
    await page.getByRole('button', { name: '← Runs' }).click();
    await expect.poll(() => page.locator('tbody tr').count()).toBe(2);
    await page.close();
  });

  it('compares two selected runs, listing only the settings that differ', async () => {
    const page = await openRuns();
    await expect.poll(() => page.locator('tbody tr').count(), { timeout: 20_000 }).toBe(2);
    const compare = page.getByRole('button', { name: 'Compare' });
    expect(await compare.isDisabled()).toBe(true);
    await page.getByRole('checkbox', { name: 'Select alpha to compare' }).check();
    expect(await compare.isDisabled()).toBe(true);
    await page.getByRole('checkbox', { name: 'Select beta to compare' }).check();
    await compare.click();

    await page.locator('figure[aria-label="Validation loss"] canvas').waitFor();
    await page.locator('figure[aria-label="Train loss"] canvas').waitFor();
    const rows = page.locator('section[aria-label="Settings that differ"] tbody th');
    await expect.poll(() => rows.count(), { timeout: 20_000 }).toBeGreaterThan(0);
    const keys = (await rows.allInnerTexts()).map((key) => key.trim());
    expect(keys.sort()).toEqual(['engine.model.spikeGradient', 'epochs', 'name']);
    const table = await page.locator('section[aria-label="Settings that differ"]').innerText();
    expect(table).toContain('surrogate');
    expect(table).toContain('none');
    expect(table).not.toContain('hiddenSize');
    expect(table).not.toContain('backend');

    // A run opened from the comparison goes back to it.
    await page.getByRole('button', { name: 'alpha', exact: true }).click();
    await expect.poll(() => page.locator('h1').innerText()).toBe('alpha');
    await page.keyboard.press('Escape');
    await expect.poll(() => page.locator('h1').innerText()).toBe('Compare 2 runs');
    await page.close();
  });

  it('follows a live run: the step counter rises, then Cancel stops it', async () => {
    const page = await openRuns();
    const { runId } = await startRun(page, { name: 'live', mode: 'single', backend: 'wasm', engine: { model: { hiddenSize: 16 }, batchSize: 32 }, epochs: 200, dataset: 'synthetic:512' });
    await page.getByRole('button', { name: 'Refresh' }).click();
    await page.locator(`tbody tr[data-run-id="${runId}"]`).click();
    const counter = page.locator('.step-counter');
    const stepNow = async () => Number((await counter.innerText()).replace(/,/g, ''));
    await expect.poll(stepNow, { timeout: 30_000 }).toBeGreaterThan(0);
    const first = await stepNow();
    await expect.poll(stepNow, { timeout: 15_000 }).toBeGreaterThan(first);
    expect(await page.locator('section[aria-label="Workers"] tbody tr').count()).toBe(1);

    await page.getByRole('button', { name: 'Cancel' }).click();
    await expect.poll(() => page.locator('.view-header .status').innerText(), { timeout: 20_000 }).toBe('cancelled');
    expect(await page.getByRole('button', { name: 'Pause' }).isDisabled()).toBe(true);
    await page.close();
  }, 60_000);

  it('pauses, resumes and cancels a run that `quadra train` trains in another process, through the database', async () => {
    const trainer = spawn(process.execPath, [path.join(ROOT, 'src-main/cli/quadra.mjs'), 'train', '--epochs', '500', '--name', 'elsewhere', ...COMMON, '--dataset', 'synthetic:512', '--db', ui.db], {
      cwd: ROOT,
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => trainer.once('exit', resolve));
    try {
      const page = await openRuns();
      const row = page.locator('tbody tr', { hasText: 'elsewhere' });
      await expect.poll(async () => {
        await page.getByRole('button', { name: 'Refresh' }).click();
        return (await row.count()) > 0 && (await row.innerText()).includes('running');
      }, { timeout: 30_000, interval: 500 }).toBe(true);
      await row.click();
      await expect.poll(() => page.locator('h1').innerText()).toBe('elsewhere');

      // No events come from another process: the detail reads the run every 2 s.
      const workers = page.locator('section[aria-label="Workers"]');
      await expect.poll(() => workers.innerText(), { timeout: 10_000 }).toContain('Trained by another process');
      const counter = page.locator('.step-counter');
      const stepNow = async () => Number((await counter.innerText()).replace(/,/g, ''));
      const first = await stepNow();
      await expect.poll(stepNow, { timeout: 10_000 }).toBeGreaterThan(first);

      const status = page.locator('.view-header .status');
      await page.getByRole('button', { name: 'Pause' }).click();
      await expect.poll(() => status.innerText(), { timeout: 10_000 }).toBe('paused');
      // The poll after the pause may still bring the steps made before it took effect; then nothing moves.
      await page.waitForTimeout(2500);
      const pausedAt = await stepNow();
      await page.waitForTimeout(4500);
      expect(await stepNow()).toBe(pausedAt);

      await page.getByRole('button', { name: 'Resume' }).click();
      await expect.poll(() => status.innerText(), { timeout: 10_000 }).toBe('running');
      await expect.poll(stepNow, { timeout: 10_000 }).toBeGreaterThan(pausedAt);

      await page.getByRole('button', { name: 'Cancel' }).click();
      await expect.poll(() => status.innerText(), { timeout: 20_000 }).toBe('cancelled');
      expect(await page.getByRole('button', { name: 'Pause' }).isDisabled()).toBe(true);
      await exited;
      await page.close();
    } finally {
      if (trainer.exitCode === null) trainer.kill('SIGINT');
      await exited;
    }
  }, 90_000);
});
