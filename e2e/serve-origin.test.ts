import { type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeUi, launchChromium, startServe, uiSkipReason } from './helpers';

/**
 * The printed URL opened under another name for the same server (localhost for 127.0.0.1) is the
 * page's own origin: it connects, instead of showing "Disconnected — retrying" forever.
 */
const why = uiSkipReason();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-origin-ui-'));
let server: ChildProcess | null = null;
let browser: Browser | null = null;
let url = '';

describe.skipIf(why !== null)(`serve mode under another name${why ? ` (skipped: ${why})` : ''}`, () => {
  beforeAll(async () => {
    ({ url, child: server } = await startServe(path.join(tmp, 'origin.sqlite')));
    browser = await launchChromium();
  }, 60_000);

  afterAll(() => closeUi(browser, server, tmp));

  it('connects when the URL is opened with localhost instead of 127.0.0.1', async () => {
    const page = await browser!.newPage();
    await page.goto(`${url.replace('://127.0.0.1:', '://localhost:')}#runs`);
    await page.waitForSelector('.connection.open', { timeout: 15_000 });
    expect(await page.locator('.connection').innerText()).toBe('Connected');
    await page.close();
  });
});
