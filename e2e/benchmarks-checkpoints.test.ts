import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { MAX_WORKERS } from '../src-shared/run-config';
import { quadraCli, saveDownload, uiSkipReason, useUi } from './helpers';

/**
 * The Benchmarks and Checkpoints views in Debian's headless Chromium against a real `quadra serve`:
 * a tiny suite run through the page, its results exported and imported back beside it; a seeded
 * run's checkpoints exported as .safetensors, resumed, and imported as a new run.
 */
const why = uiSkipReason();

describe.skipIf(why !== null)(`the Benchmarks and Checkpoints views in Chromium${why ? ` (skipped: ${why})` : ''}`, () => {
  const ui = useUi('bc', {
    seed: (db) => quadraCli(['train', '--epochs', '2', '--dataset', 'synthetic:128', '--batch-size', '32', '--hidden-size', '16', '--backend', 'wasm', '--checkpoint-every', '1', '--name', 'seeded'], db),
  });
  const download = (page: Page, click: () => Promise<void>) => saveDownload(page, click, ui.tmp);

  it('runs a suite, charts it, and shows an exported file imported back beside it', async () => {
    const { page, errors } = await ui.open('benchmarks');
    await page.getByText('No benchmark suites yet — run one above').waitFor({ timeout: 20_000 });

    // Only wasm, one tiny configuration.
    await page.locator('.backends input[value="wasm"]').waitFor();
    for (const box of await page.locator('.backends input:not([disabled])').all()) {
      await box.setChecked((await box.getAttribute('value')) === 'wasm');
    }
    await page.fill('#suite-workers', '0');
    expect(await page.locator('#suite-workers').getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('#suite-workers-error').innerText()).toContain(`from 1 to ${MAX_WORKERS}`);
    await page.fill('#suite-workers', '1');
    await page.fill('#suite-batches', '16');
    await page.fill('#suite-warmup', '1');
    await page.fill('#suite-iterations', '3');
    await page.fill('#suite-repeats', '1');
    await page.getByRole('button', { name: 'Run suite' }).press('Enter');

    const rows = page.locator('table.results tbody tr');
    await expect.poll(() => rows.count(), { timeout: 60_000 }).toBe(1);
    expect(await page.locator('figure.chart canvas').isVisible()).toBe(true);
    expect(await rows.first().innerText()).toMatch(/wasm[\s\S]*×1 \(baseline\)/);
    await expect.poll(() => page.locator('[aria-label="Suite progress"]').count()).toBe(0);
    expect(await page.locator('section[aria-label="Machines"]').innerText()).toContain('this workstation');

    const json = await download(page, () => page.getByRole('button', { name: 'JSON' }).click());
    const exported = JSON.parse(json.bytes.toString('utf8')) as { format: string; results: Array<{ backend: string; fingerprint: Record<string, string> }> };
    expect(exported.format).toBe('quadra-benchmarks');
    expect(exported.results).toHaveLength(1);
    expect(exported.results[0]!.fingerprint.tfjs).toBeTruthy();

    await page.locator('input[type="file"]').setInputFiles(json.file);
    await expect.poll(() => rows.count()).toBe(2);
    expect(await page.locator('table.results tbody tr.imported').innerText()).toContain(json.name);
    expect(await page.locator('table.machines tbody tr').count()).toBe(2);

    // CSV goes the same way round.
    const csv = await download(page, () => page.getByRole('button', { name: 'CSV' }).click());
    expect(csv.bytes.toString('utf8').split('\r\n')[0]).toContain('train_median');
    await page.locator('input[type="file"]').setInputFiles(csv.file);
    await expect.poll(() => rows.count()).toBe(3);

    // The imported row as baseline: the local row's speedup is measured against it.
    await rows.nth(1).locator('input[type="radio"]').check();
    expect(await rows.nth(1).innerText()).toContain('×1 (baseline)');
    expect(await rows.first().innerText()).toContain('×1.00');
    expect(errors).toEqual([]);
    await page.close();
  }, 90_000);

  it('marks the best checkpoint, exports safetensors bytes, resumes, and imports the file as a new run', async () => {
    const { page, errors } = await ui.open('checkpoints');
    await page.locator('#checkpoint-run').waitFor({ timeout: 20_000 });
    await page.locator('#checkpoint-run').selectOption({ label: (await page.locator('#checkpoint-run option', { hasText: 'seeded' }).innerText()).trim() });
    const rows = page.locator('table.checkpoints tbody tr');
    await expect.poll(() => rows.count(), { timeout: 20_000 }).toBe(2);
    expect(await page.locator('table.checkpoints tr.best').count()).toBe(1);
    expect(await page.locator('tr.best .best-badge').innerText()).toContain('Best');

    const exported = await download(page, () => rows.first().getByRole('button', { name: /^Export/ }).click());
    expect(exported.name).toMatch(/^run-1-step-\d+\.safetensors$/);
    const bytes = exported.bytes;
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect(headerLength).toBeGreaterThan(2);
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, unknown>;
    expect(Object.keys(header).length).toBeGreaterThan(1);

    await rows.last().getByRole('button', { name: /^Resume/ }).click();
    await expect.poll(() => page.locator('.notice').innerText().catch(() => ''), { timeout: 20_000 }).toContain('Run 1 resumed');
    expect(await page.locator('.notice a[href="#runs"]').count()).toBe(1);

    await page.locator('#checkpoint-file').setInputFiles(exported.file);
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await expect.poll(() => page.locator('.notice').innerText().catch(() => ''), { timeout: 20_000 }).toContain('as run 2');
    expect(await page.locator('#checkpoint-run').inputValue()).toBe('2');
    await expect.poll(() => rows.count()).toBe(1);
    expect(await page.locator('[role="alert"]').count()).toBe(0);
    expect(errors).toEqual([]);
    await page.close();
  }, 90_000);
});
