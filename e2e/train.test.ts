import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { quadraCli, uiSkipReason, useUi } from './helpers';

/**
 * The training wizard in Debian's headless Chromium against a real `quadra serve` on a temporary
 * database: field validation, a file checked by the workstation, and a tiny run started for real.
 */
const why = uiSkipReason();

/** The ids an input's aria-describedby names must be the elements that say what is wrong with it. */
async function describedText(page: Page, selector: string): Promise<string> {
  const ids = ((await page.getAttribute(selector, 'aria-describedby')) ?? '').split(/\s+/).filter(Boolean);
  const texts = await Promise.all(ids.map((id) => page.locator(`#${id}`).innerText()));
  return texts.join('\n');
}

describe.skipIf(why !== null)(`the training wizard in Chromium${why ? ` (skipped: ${why})` : ''}`, () => {
  const ui = useUi('train-ui');

  function runsInStore(): Array<{ id: number; name: string; status: string; backend: string; mode: string }> {
    return JSON.parse(quadraCli(['runs', 'list', '--json'], ui.db)) as ReturnType<typeof runsInStore>;
  }

  async function openWizard(): Promise<Page> {
    const { page } = await ui.open('train');
    await page.waitForSelector('h2#train-step-title');
    return page;
  }

  it('shows the row and column of a bad CSV, and offers the width of a good one as the field size', async () => {
    const page = await openWizard();
    await page.getByLabel('Import a file').check();
    const next = page.getByRole('button', { name: 'Next' });
    expect(await next.isDisabled()).toBe(true);

    await page.setInputFiles('#train-file', { name: 'bad.csv', mimeType: 'text/csv', buffer: Buffer.from('1,2,3\n4,5,6\n7,x,9\n') });
    await expect.poll(() => page.locator('#train-file-error').textContent(), { timeout: 15_000 }).toContain('line 3, column 2: "x" is not a number');
    expect(await describedText(page, '#train-file')).toContain('bad.csv: line 3, column 2');
    expect(await next.isDisabled()).toBe(true);

    await page.setInputFiles('#train-file', { name: 'narrow.csv', mimeType: 'text/csv', buffer: Buffer.from('a,b,c\n0.1,0.2,0.3\n0.4,0.5,0.6\n') });
    await page.waitForSelector('text=narrow.csv — csv, 2 rows × 3 values');
    expect(await page.locator('table tbody tr').count()).toBe(2);
    expect(await next.isDisabled()).toBe(true);
    await page.getByRole('button', { name: 'Use field size 3' }).click();
    expect(await next.isDisabled()).toBe(false);
    await next.click();
    expect(await page.inputValue('#train-field-size')).toBe('3');
    await page.close();
  });

  it('blocks invalid fields with the schema message, then starts a tiny synthetic run', async () => {
    const page = await openWizard();
    const next = page.getByRole('button', { name: 'Next' });
    await page.fill('#train-synthetic-rows', '256');
    await page.keyboard.press('Enter');

    // Model: a fractional field size is refused at the field, in engine-config's words.
    await page.waitForSelector('#train-field-size');
    await page.fill('#train-field-size', '1.5');
    expect(await page.locator('#train-field-size-error').innerText()).toBe('fieldSize must be a whole number');
    expect(await describedText(page, '#train-field-size')).toContain('fieldSize must be a whole number');
    expect(await page.getAttribute('#train-field-size', 'aria-invalid')).toBe('true');
    expect(await next.isDisabled()).toBe(true);
    await page.keyboard.press('Enter');
    expect(await page.locator('h2#train-step-title').innerText()).toContain('Model');
    await page.fill('#train-field-size', '100');
    await page.fill('#train-hidden-size', '16');
    await page.fill('#train-spiking-hidden-size', '16');
    await page.fill('#train-spiking-steps', '3');
    await page.keyboard.press('Enter');

    // Hardware: pre-filled from the recommendation once the report arrives.
    await page.waitForSelector('text=Recommended for this machine', { timeout: 30_000 });
    await page.check('input[name="train-backend"][value="wasm"]');
    await page.check('input[name="train-mode"][value="single"]');
    await page.fill('#train-batch-size', '0');
    expect(await page.locator('#train-batch-size-error').innerText()).toBe('batchSize must be at least 1');
    expect(await next.isDisabled()).toBe(true);
    await page.fill('#train-batch-size', '32');
    expect(await next.isDisabled()).toBe(false);
    await page.keyboard.press('Enter');

    await page.fill('#train-epochs', '1');
    await page.fill('#train-run-name', 'wizard e2e');
    await page.keyboard.press('Enter');

    const review = await page.locator('.review').innerText();
    expect(review).toContain('synthetic:256');
    expect(review).toContain('wasm');
    await page.getByRole('button', { name: 'Start training' }).click();
    // Straight to the run's live view.
    await page.waitForURL(/#runs\/\d+$/, { timeout: 30_000 });
    const runId = Number(/#runs\/(\d+)$/.exec(page.url())![1]);
    await expect.poll(() => page.locator('h1').innerText()).toBe('wizard e2e');
    await page.locator('.step-counter').waitFor();

    const run = runsInStore().find((r) => r.id === runId);
    expect(run).toMatchObject({ name: 'wizard e2e', backend: 'wasm', mode: 'single' });
    await expect.poll(() => runsInStore().find((r) => r.id === runId)?.status, { timeout: 30_000, interval: 500 }).toBe('completed');
    await page.close();
  }, 90_000);
});
