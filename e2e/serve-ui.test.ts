import { describe, expect, it } from 'vitest';
import { CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_META } from '../src-shared/content-security-policy';
import { quadraCli, uiSkipReason, useUi } from './helpers';

/**
 * The UI in Debian's headless Chromium against a real `quadra serve` on a temporary database.
 * Needs /usr/bin/chromium (.ci/run installs it) and the built renderer (npm test builds it first).
 */
const why = uiSkipReason();

describe.skipIf(why !== null)(`the workstation UI in Chromium${why ? ` (skipped: ${why})` : ''}`, () => {
  const ui = useUi('ui');

  it('carries the one Content-Security-Policy, as its header and as the first <meta> of the built page, and breaks nothing under it', async () => {
    const { page, errors } = await ui.newPage();
    const violations: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error' && /Content.Security.Policy/i.test(message.text())) violations.push(message.text());
    });
    const response = await page.goto(`${ui.url}#hardware`);
    expect(response?.headers()['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
    const meta = page.locator('head > meta:first-child');
    expect(await meta.getAttribute('http-equiv')).toBe('Content-Security-Policy');
    expect(await meta.getAttribute('content')).toBe(CONTENT_SECURITY_POLICY_META);
    await page.waitForSelector('.connection.open');
    await expect.poll(() => page.locator('.backends li').count(), { timeout: 20_000 }).toBe(6);
    expect(violations).toEqual([]);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('shows the hardware, each backend with its reason, and the recommendation', async () => {
    const { page } = await ui.open('hardware');
    await expect.poll(() => page.locator('.backends li').count(), { timeout: 20_000 }).toBe(6);
    // No GPU device here: webgpu says so (and 'auto' never starts Dawn for nothing).
    const webgpu = page.locator('.backends li', { has: page.locator('.id', { hasText: /^webgpu$/ }) });
    expect(await webgpu.innerText()).toMatch(/no GPU device on this machine|adapter/);
    const wasm = page.locator('.backends li', { has: page.locator('.id', { hasText: /^wasm$/ }) });
    expect(await wasm.getAttribute('class')).toContain('ok');
    // The fused kernel, the default on CPUs, with why it was chosen.
    const simd = page.locator('.backends li', { has: page.locator('.id', { hasText: /^simd$/ }) });
    expect(await simd.getAttribute('class')).toContain('ok');
    expect(await simd.innerText()).toContain('fused Quadra Matrix kernel');
    expect(await page.locator('section[aria-label="GPUs"]').innerText()).toContain('No NVIDIA GPU or driver found');
    expect(await page.locator('section[aria-label="Recommended configuration"]').innerText()).toContain('Batch size');
    await page.close();
  });

  it('lists runs with an empty state first, then sortable rows', async () => {
    const { page } = await ui.open('runs');
    await expect.poll(() => page.locator('.empty').innerText(), { timeout: 20_000 }).toContain('No runs yet');
    quadraCli(['train', '--epochs', '1', '--dataset', 'synthetic:128', '--batch-size', '32', '--name', 'alpha', '--hidden-size', '16', '--backend', 'wasm'], ui.db);
    quadraCli(['train', '--epochs', '2', '--dataset', 'synthetic:128', '--batch-size', '32', '--name', 'beta', '--hidden-size', '16', '--backend', 'wasm'], ui.db);
    // Keyboard: focus Refresh and press Enter.
    await page.getByRole('button', { name: 'Refresh' }).focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('tbody tr').count(), { timeout: 20_000 }).toBe(2);
    expect(await page.locator('tbody tr').first().innerText()).toContain('beta');
    await page.getByRole('button', { name: /^Name/ }).click();
    expect(await page.locator('tbody tr').first().innerText()).toContain('alpha');
    expect(await page.locator('th[aria-sort="ascending"]').innerText()).toContain('Name');
    await page.close();
  }, 120_000);
});
