import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeCheckpoint } from '../src-main/engine/checkpoint';
import { quadraCli, ROOT, saveDownload, uiSkipReason, useUi } from './helpers';

/**
 * The whole path a user takes, in one go: the wizard starts a 2-worker run on the sample dataset,
 * the run's chart fills while it trains, the run completes, its checkpoint is exported and imported
 * back as a new run.
 */
const why = uiSkipReason();

describe.skipIf(why !== null)(`the user's path through the workstation${why ? ` (skipped: ${why})` : ''}`, () => {
  const ui = useUi('flow', { seed: (db) => quadraCli(['datasets', 'import', path.join(ROOT, 'resources/datasets/sample-numeric.csv'), '--name', 'sample numeric'], db) });

  it('wizard → 2-worker run on the sample dataset → live chart → completed → export → import', async () => {
    const { page, errors } = await ui.open('train');

    await page.check('input[name="train-source"][value="registered"]');
    await page.locator('#train-dataset').selectOption({ label: (await page.locator('#train-dataset option', { hasText: 'sample numeric' }).innerText()).trim() });
    await page.getByRole('button', { name: 'Next' }).click();
    await page.fill('#train-hidden-size', '32');
    await page.fill('#train-spiking-steps', '4');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.waitForSelector('text=Recommended for this machine', { timeout: 30_000 });
    await page.check('input[name="train-backend"][value="wasm"]');
    await page.check('input[name="train-mode"][value="multi-cpu"]');
    await page.fill('#train-workers', '2');
    await page.fill('#train-batch-size', '50');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.fill('#train-epochs', '30');
    await page.fill('#train-run-name', 'acceptance');
    await page.getByRole('button', { name: 'Next' }).click();
    expect(await page.locator('.review').innerText()).toContain('sample numeric');
    await page.getByRole('button', { name: 'Start training' }).click();

    // Straight to the new run's detail: the step counter climbs and the loss chart is drawn while it trains.
    await page.waitForURL(/#runs\/\d+$/, { timeout: 30_000 });
    await expect.poll(() => page.locator('h1').innerText()).toBe('acceptance');
    await page.locator('figure[aria-label="Loss"] canvas').waitFor();
    const step = () => page.locator('.step-counter').innerText().then((t) => Number(t.replace(/,/g, '')));
    await expect.poll(step, { timeout: 30_000 }).toBeGreaterThan(0);
    const first = await step();
    await expect.poll(step, { timeout: 30_000 }).toBeGreaterThan(first);
    await expect.poll(() => page.locator('.status').first().innerText(), { timeout: 180_000, interval: 1000 }).toBe('completed');

    // Its checkpoint leaves as a file and comes back as a new run.
    await page.goto(`${ui.url}#checkpoints`);
    await page.locator('#checkpoint-run').waitFor({ timeout: 20_000 });
    await page.locator('#checkpoint-run').selectOption({ label: (await page.locator('#checkpoint-run option', { hasText: 'acceptance' }).innerText()).trim() });
    const rows = page.locator('table.checkpoints tbody tr');
    await expect.poll(() => rows.count(), { timeout: 20_000 }).toBeGreaterThan(0);
    const { file, bytes } = await saveDownload(page, () => page.locator('tr.best').getByRole('button', { name: /^Export/ }).click(), ui.tmp);
    const contents = decodeCheckpoint(new Uint8Array(bytes), file);
    expect(contents.model).toMatchObject({ fieldSize: 100, hiddenSize: 32, spikingSteps: 4 });
    expect(contents.optimizer).not.toBeNull();
    await page.locator('#checkpoint-file').setInputFiles(file);
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await expect.poll(() => page.locator('.notice').innerText().catch(() => ''), { timeout: 20_000 }).toMatch(/as run \d+/);
    expect(errors).toEqual([]);
    await page.close();
  }, 300_000);
});
