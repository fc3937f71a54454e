import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Browser, type Download, type Page } from 'playwright-core';
import { closeUi, launchChromium, ROOT, startServe, uiSkipReason } from './helpers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The Benchmarks and Checkpoints views in Debian's headless Chromium against a real `quadra serve`:
 * a tiny suite run through the page, its results exported and imported back beside it; a seeded
 * run's checkpoints exported as .safetensors, resumed, and imported as a new run.
 */
const why = uiSkipReason();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-bc-'));
const db = path.join(tmp, 'ui.sqlite');
let server: ChildProcess | null = null;
let browser: Browser | null = null;
let url = '';

async function open(view: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser!.newPage({ acceptDownloads: true });
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${url}#${view}`);
  await page.waitForSelector('.connection.open');
  return { page, errors };
}

async function download(page: Page, click: () => Promise<void>): Promise<{ file: string; name: string }> {
  const [event] = await Promise.all([page.waitForEvent('download'), click()]);
  const d: Download = event;
  const file = path.join(tmp, d.suggestedFilename());
  await d.saveAs(file);
  return { file, name: d.suggestedFilename() };
}

describe.skipIf(why !== null)(`the Benchmarks and Checkpoints views in Chromium${why ? ` (skipped: ${why})` : ''}`, () => {
  beforeAll(async () => {
    execFileSync(
      process.execPath,
      [path.join(ROOT, 'src-main/cli/quadra.mjs'), 'train', '--epochs', '2', '--dataset', 'synthetic:128', '--batch-size', '32', '--hidden-size', '16', '--backend', 'wasm', '--checkpoint-every', '1', '--name', 'seeded', '--db', db],
      { cwd: ROOT, stdio: 'ignore' },
    );
    ({ url, child: server } = await startServe(db));
    browser = await launchChromium();
  }, 60_000);

  afterAll(() => closeUi(browser, server, tmp));

  it('runs a suite, charts it, and shows an exported file imported back beside it', async () => {
    const { page, errors } = await open('benchmarks');
    await page.getByText('No benchmark suites yet — run one above').waitFor({ timeout: 20_000 });

    // Only wasm, one tiny configuration.
    await page.locator('.backends input[value="wasm"]').waitFor();
    for (const box of await page.locator('.backends input:not([disabled])').all()) {
      await box.setChecked((await box.getAttribute('value')) === 'wasm');
    }
    await page.fill('#suite-workers', '0');
    expect(await page.locator('#suite-workers').getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('#suite-workers-note').innerText()).toContain('from 1 to 64');
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
    await expect.poll(() => page.locator('progress').count()).toBe(0);
    expect(await page.locator('section[aria-label="Machines"]').innerText()).toContain('this workstation');

    const json = await download(page, () => page.getByRole('button', { name: 'JSON' }).click());
    const exported = JSON.parse(readFileSync(json.file, 'utf8')) as { format: string; results: Array<{ backend: string; fingerprint: Record<string, string> }> };
    expect(exported.format).toBe('quadra-benchmarks');
    expect(exported.results).toHaveLength(1);
    expect(exported.results[0]!.fingerprint.tfjs).toBeTruthy();

    await page.locator('input[type="file"]').setInputFiles(json.file);
    await expect.poll(() => rows.count()).toBe(2);
    expect(await page.locator('table.results tbody tr.imported').innerText()).toContain(json.name);
    expect(await page.locator('table.machines tbody tr').count()).toBe(2);

    // CSV goes the same way round.
    const csv = await download(page, () => page.getByRole('button', { name: 'CSV' }).click());
    expect(readFileSync(csv.file, 'utf8').split('\r\n')[0]).toContain('train_median');
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
    const { page, errors } = await open('checkpoints');
    await page.locator('#checkpoint-run').waitFor({ timeout: 20_000 });
    await page.locator('#checkpoint-run').selectOption({ label: (await page.locator('#checkpoint-run option', { hasText: 'seeded' }).innerText()).trim() });
    const rows = page.locator('table.checkpoints tbody tr');
    await expect.poll(() => rows.count(), { timeout: 20_000 }).toBe(2);
    expect(await page.locator('table.checkpoints tr.best').count()).toBe(1);
    expect(await page.locator('tr.best .best-badge').innerText()).toContain('Best');

    const exported = await download(page, () => rows.first().getByRole('button', { name: /^Export/ }).click());
    expect(exported.name).toMatch(/^run-1-step-\d+\.safetensors$/);
    const bytes = readFileSync(exported.file);
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
    expect(await page.locator('.error').count()).toBe(0);
    expect(errors).toEqual([]);
    await page.close();
  }, 90_000);
});
