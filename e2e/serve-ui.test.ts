import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The UI in Debian's headless Chromium against a real `quadra serve` on a temporary database.
 * Needs /usr/bin/chromium (.ci/run installs it) and the built renderer (npm test builds it first).
 */
const ROOT = path.resolve(__dirname, '..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const BUILT = existsSync(path.join(ROOT, 'dist/renderer/index.html'));
const why = !existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM} (apt-get install chromium)` : !BUILT ? 'renderer not built (npm run build)' : null;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-ui-'));
const db = path.join(tmp, 'ui.sqlite');
let server: ChildProcess | null = null;
let browser: Browser | null = null;
let url = '';

function quadra(args: string[]): void {
  execFileSync(process.execPath, [path.join(ROOT, 'src-main/cli/quadra.mjs'), ...args, '--db', db], { cwd: ROOT, stdio: 'ignore' });
}

describe.skipIf(why !== null)(`the workstation UI in Chromium${why ? ` (skipped: ${why})` : ''}`, () => {
  beforeAll(async () => {
    server = spawn(process.execPath, [path.join(ROOT, 'src-main/cli/quadra.mjs'), 'serve', '--port', '0', '--db', db], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] });
    url = await new Promise<string>((resolve, reject) => {
      let text = '';
      server!.stdout!.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        const match = /http:\/\/\S+\/\?token=\S+/.exec(text);
        if (match) resolve(match[0]);
      });
      server!.once('exit', (code) => reject(new Error(`quadra serve exited with ${code}`)));
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-gpu'],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    server?.kill('SIGINT');
    rmSync(tmp, { recursive: true, force: true });
  });

  it('shows the hardware, each backend with its reason, and the recommendation', async () => {
    const page = await browser!.newPage();
    await page.goto(`${url}#hardware`);
    await page.waitForSelector('.connection.open');
    await expect.poll(() => page.locator('.backends li').count(), { timeout: 20_000 }).toBe(4);
    const wasm = page.locator('.backends li', { hasText: 'wasm' });
    expect(await wasm.getAttribute('class')).toContain('ok');
    expect(await page.locator('section[aria-label="GPUs"]').innerText()).toContain('No NVIDIA GPU or driver found');
    expect(await page.locator('section[aria-label="Recommended configuration"]').innerText()).toContain('Batch size');
    await page.close();
  });

  it('lists runs with an empty state first, then sortable rows', async () => {
    const page = await browser!.newPage();
    await page.goto(`${url}#runs`);
    await page.waitForSelector('.connection.open');
    await expect.poll(() => page.locator('.empty').innerText(), { timeout: 20_000 }).toContain('No runs yet');
    quadra(['train', '--epochs', '1', '--dataset', 'synthetic:128', '--batch-size', '32', '--name', 'alpha', '--hidden-size', '16', '--backend', 'wasm']);
    quadra(['train', '--epochs', '2', '--dataset', 'synthetic:128', '--batch-size', '32', '--name', 'beta', '--hidden-size', '16', '--backend', 'wasm']);
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
