import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStore } from '../src-main/store/database';
import { quadraCli, ROOT, uiSkipReason, useUi } from './helpers';

/**
 * Checkpoints → "Train from this" in Debian's headless Chromium against a real `quadra serve`: the
 * wizard opens on that checkpoint with its model sizes fixed, and the run it starts records the
 * warm start. An imported run offers no Resume, only a warm start.
 */
const why = uiSkipReason();
const shots = path.join(ROOT, 'screenshots');

describe.skipIf(why !== null)(`warm starts from the Checkpoints view in Chromium${why ? ` (skipped: ${why})` : ''}`, () => {
  const ui = useUi('warm', {
    seed: (db) => quadraCli(['train', '--epochs', '1', '--dataset', 'synthetic:128', '--batch-size', '32', '--hidden-size', '16', '--spiking-hidden-size', '8', '--backend', 'simd', '--name', 'seeded'], db),
  });

  it('opens the wizard on the checkpoint, model sizes fixed, and starts a run from its weights', async () => {
    const { page, errors } = await ui.open('checkpoints');
    mkdirSync(shots, { recursive: true });
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
    await page.waitForURL(/#runs\/\d+$/, { timeout: 30_000 });
    expect(errors).toEqual([]);
    await page.close();

    const store = openStore(ui.db, { readonly: true });
    try {
      const newest = store.runs.list({ limit: 1 })[0]!;
      expect(newest.config).toMatchObject({ engine: { model: { hiddenSize: 16, spikingHiddenSize: 8 } }, initFrom: { resetOptimizer: true } });
    } finally {
      store.close();
    }
  }, 90_000);
});
