import { describe, expect, it } from 'vitest';
import { uiSkipReason, useUi } from './helpers';

/**
 * The printed URL opened under another name for the same server (localhost for 127.0.0.1) is the
 * page's own origin: it connects, instead of showing "Disconnected — retrying" forever.
 */
const why = uiSkipReason();

describe.skipIf(why !== null)(`serve mode under another name${why ? ` (skipped: ${why})` : ''}`, () => {
  const ui = useUi('origin-ui');

  it('connects when the URL is opened with localhost instead of 127.0.0.1', async () => {
    const { page } = await ui.newPage();
    await page.goto(`${ui.url.replace('://127.0.0.1:', '://localhost:')}#runs`);
    await page.waitForSelector('.connection.open', { timeout: 15_000 });
    expect(await page.locator('.connection').innerText()).toBe('Connected');
    await page.close();
  });
});
