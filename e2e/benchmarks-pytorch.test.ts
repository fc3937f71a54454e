import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openView, ROOT, saveDownload, startServe, stopServe, uiSkipReason, useUi } from './helpers';

/**
 * The Benchmarks view with PyTorch beside our backends, in Debian's headless Chromium against a
 * real `quadra serve`: the form says whether a Python with torch was found, a tiny suite runs
 * simd and pytorch, and the chart and table show the pytorch row with speedups over it.
 * QUADRA_E2E_SCREENSHOTS=DIR keeps a screenshot of the view (default: none).
 */
const why = uiSkipReason();
const HAS_TORCH = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
const screenshots = process.env.QUADRA_E2E_SCREENSHOTS;

describe.skipIf(why !== null)(`the Benchmarks view with pytorch in Chromium${why ? ` (skipped: ${why})` : ''}`, () => {
  const ui = useUi('bp');

  it.skipIf(!HAS_TORCH)(`runs pytorch beside simd and charts it with speedups${HAS_TORCH ? '' : ' (skipped: /usr/bin/python3 cannot import torch)'}`, async () => {
    const { page, errors } = await ui.open('benchmarks');

    // Found: enabled, with which torch and where, and that worker counts do not apply.
    const pytorch = page.locator('.backends input[value="pytorch"]');
    await expect.poll(() => pytorch.isEnabled(), { timeout: 30_000 }).toBe(true);
    const note = await page.locator('#suite-pytorch-note').innerText();
    expect(note).toMatch(/torch \S+ in .*python3/);
    expect(note).toContain('worker counts do not apply');

    await page.locator('.backends input[value="simd"]').waitFor();
    for (const box of await page.locator('.backends input:not([disabled])').all()) {
      await box.setChecked(['simd', 'pytorch'].includes((await box.getAttribute('value')) ?? ''));
    }
    // simd × 2 worker counts, pytorch once: 3 configurations, not 4.
    await page.fill('#suite-workers', '1, 2');
    await page.fill('#suite-batches', '16');
    expect(await page.locator('.actions .muted').innerText()).toBe('3 configurations');
    await page.fill('#suite-workers', '1');
    expect(await page.locator('.actions .muted').innerText()).toBe('2 configurations');
    await page.fill('#suite-warmup', '1');
    await page.fill('#suite-iterations', '3');
    await page.fill('#suite-repeats', '2');
    await page.getByRole('button', { name: 'Run suite' }).click();

    const rows = page.locator('table.results tbody tr');
    await expect.poll(() => rows.count(), { timeout: 90_000 }).toBe(2);
    await expect.poll(() => page.locator('[aria-label="Suite progress"]').count(), { timeout: 30_000 }).toBe(0);
    expect(await page.locator('figure.chart canvas').isVisible()).toBe(true);
    const pytorchRow = rows.filter({ hasText: 'pytorch' });
    const simdRow = rows.filter({ hasText: 'simd' });
    const text = await pytorchRow.innerText();
    expect(text).toMatch(/torch \S+ · \d+ threads? · (cpu|cuda)/);
    // Worker counts do not apply: shown as a dash, said in its title.
    expect(await pytorchRow.locator('td.numeric').first().innerText()).toBe('—');
    expect(await pytorchRow.locator('td.numeric').first().getAttribute('title')).toContain('worker counts do not apply');
    expect(await page.locator('.note, [role="alert"]').count()).toBe(0);

    // PyTorch as the baseline: simd's speedup over it is printed.
    await pytorchRow.locator('input[type="radio"]').check();
    expect(await pytorchRow.innerText()).toContain('×1 (baseline)');
    expect(await simdRow.locator('td.speedup').innerText()).toMatch(/^×\d+(\.\d+)?$/);

    // Exported with torch's details, and read back beside this machine's results.
    const { file, bytes } = await saveDownload(page, () => page.getByRole('button', { name: 'JSON' }).click(), ui.tmp);
    const exported = JSON.parse(bytes.toString('utf8')) as { results: Array<{ backend: string; workers: number; fingerprint: Record<string, string> }> };
    const torchRow = exported.results.find((r) => r.backend === 'pytorch')!;
    expect(torchRow.workers).toBe(1);
    expect(Object.keys(torchRow.fingerprint)).toEqual(expect.arrayContaining(['torch', 'blas', 'threads', 'device', 'cpu', 'precision']));
    await page.locator('input[type="file"]').setInputFiles(file);
    await expect.poll(() => rows.count()).toBe(4);
    expect(await rows.filter({ hasText: 'pytorch' }).count()).toBe(2);
    if (screenshots) {
      mkdirSync(screenshots, { recursive: true });
      await page.waitForTimeout(1500);
      await page.screenshot({ path: path.join(screenshots, 'benchmarks-pytorch.png'), fullPage: true });
    }
    expect(errors).toEqual([]);
    await page.close();
  }, 150_000);

  it('with a Python that lacks torch ($QUADRA_PYTHON), shows pytorch unavailable with the reason', async () => {
    const noTorch = await startServe(path.join(ui.tmp, 'no-torch.sqlite'), { ...process.env, QUADRA_PYTHON: path.join(ROOT, 'tests/fixtures/bin/no-torch/python3') });
    try {
      const { page } = await ui.newPage();
      await openView(page, noTorch.url, 'benchmarks');
      const note = page.locator('#suite-pytorch-note');
      await expect.poll(() => note.innerText(), { timeout: 30_000 }).toContain('PyTorch unavailable: no Python with PyTorch found');
      expect(await note.innerText()).toContain("ModuleNotFoundError: No module named 'torch'");
      expect(await note.innerText()).toContain("install PyTorch (pip install torch, or Debian's python3-torch)");
      expect(await page.locator('.backends input[value="pytorch"]').isDisabled()).toBe(true);
      expect(await page.locator('.backend.pytorch .reason').innerText()).toBe('unavailable');
      if (screenshots) {
        await page.locator('.backends input[value="wasm"]').waitFor();
        await page.screenshot({ path: path.join(screenshots, 'benchmarks-pytorch-unavailable.png'), clip: { x: 0, y: 0, width: 1280, height: 460 } });
      }
      await page.close();
    } finally {
      await stopServe(noTorch.child);
    }
  }, 60_000);
});
