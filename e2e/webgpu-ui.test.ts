import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, startRun, uiSkipReason, useUi } from './helpers';

/**
 * A mixed-precision webgpu run as the UI shows it, against a real `quadra serve` whose workers use
 * dawn.node on SwiftShader: the Monitor lists our GPU workers and their buffers, and the run's
 * detail its workers' GPU memory, the loss scale and the skipped steps.
 */
const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
const why = uiSkipReason() ?? (existsSync(SWIFTSHADER) ? null : `no SwiftShader Vulkan driver at ${SWIFTSHADER}`);
const shots = path.join(ROOT, 'screenshots');

describe.skipIf(why !== null)(`a webgpu run in the UI${why ? ` (skipped: ${why})` : ''}`, () => {
  const ui = useUi('webgpu-ui', { env: { ...process.env, VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES ?? SWIFTSHADER } });

  it('shows our GPU workers in the Monitor, and GPU memory and the loss scale in the run', async () => {
    const { page, errors } = await ui.open('monitor');
    mkdirSync(shots, { recursive: true });
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

    await page.goto(`${ui.url}#runs`);
    await page.locator(`tbody tr[data-run-id="${runId}"]`).click();
    await expect.poll(() => page.locator('dt', { hasText: 'Loss scale' }).count(), { timeout: 30_000 }).toBe(1);
    expect(await page.locator('section[aria-label="Workers"] thead').innerText()).toContain('GPU memory');
    await page.screenshot({ path: path.join(shots, 'run-webgpu-mixed.png') });
    await page.getByRole('button', { name: 'Cancel' }).click();
    await expect.poll(() => page.locator('.view-header .status').innerText(), { timeout: 30_000 }).toBe('cancelled');
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);
});
