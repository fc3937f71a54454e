import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { _electron as electron } from 'playwright-core';
import { describe, expect, it } from 'vitest';

/**
 * Launches the real desktop app when the Electron runtime is installed; otherwise reports itself
 * skipped with the reason (on machines that cannot download Electron's binary, like our CI).
 */
const ROOT = path.resolve(__dirname, '..');
const require = createRequire(import.meta.url);

function electronBinary(): { path: string | null; why: string | null } {
  try {
    const binary = require('electron') as unknown as string;
    return existsSync(binary) ? { path: binary, why: null } : { path: null, why: `Electron binary missing at ${binary}` };
  } catch (error) {
    return { path: null, why: `Electron runtime not installed: ${(error as Error).message.split('\n')[0]}` };
  }
}

const binary = electronBinary();
const built = existsSync(path.join(ROOT, 'dist/electron/main.mjs')) && existsSync(path.join(ROOT, 'dist/renderer/index.html'));
const why = binary.why ?? (built ? null : 'app not built (npm run build)');

describe.skipIf(why !== null)(`Electron smoke test${why ? ` (skipped: ${why})` : ''}`, () => {
  it('opens one sandboxed window whose page reaches the workstation through window.quadra', async () => {
    const app = await electron.launch({ executablePath: binary.path!, args: [ROOT], env: { ...process.env, QUADRA_DB: path.join(ROOT, '.scratch/electron-smoke.sqlite') } });
    try {
      const window = await app.firstWindow();
      expect(await window.title()).toBe('Quadra Matrix Workstation');
      const exposed = await window.evaluate(() => Object.keys((globalThis as { quadra?: object }).quadra ?? {}).sort());
      expect(exposed).toEqual(['invoke', 'on', 'saveFile']);
      const nodeVisible = await window.evaluate(() => typeof (globalThis as { require?: unknown }).require);
      expect(nodeVisible).toBe('undefined');
      await window.waitForSelector('.backends li');
    } finally {
      await app.close();
    }
  });
});
