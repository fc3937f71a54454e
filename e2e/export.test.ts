import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { unzipSync } from 'fflate';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { decodeCheckpoint } from '../src-main/engine/checkpoint';
import { formatBytes } from '../src-shared/format';
import { quadraCli, ROOT, saveDownload, uiSkipReason, useUi } from './helpers';

/**
 * Checkpoints → Export as … in Debian's headless Chromium against a real `quadra serve`: each of
 * the four formats downloads as what it says (an ONNX protobuf, a torch zip, our safetensors, the
 * torchrun folder as one .zip).
 */
const why = uiSkipReason();
const shots = path.join(ROOT, 'screenshots');

describe.skipIf(why !== null)(`exporting checkpoints from the UI${why ? ` (skipped: ${why})` : ''}`, () => {
  const ui = useUi('export', {
    seed: (db) => quadraCli(['train', '--epochs', '1', '--dataset', 'synthetic:96', '--batch-size', '32', '--hidden-size', '16', '--spiking-hidden-size', '8', '--backend', 'simd', '--name', 'to export'], db),
  });

  async function exportAs(page: Page, format: string): Promise<{ name: string; bytes: Uint8Array }> {
    await page.locator('label.format select').selectOption(format);
    const { name, bytes } = await saveDownload(page, () => page.getByRole('button', { name: /^Export checkpoint at step/ }).first().click(), ui.tmp);
    return { name, bytes: new Uint8Array(bytes) };
  }

  it('downloads safetensors, onnx, pth and the torchrun package', async () => {
    const { page, errors } = await ui.open('checkpoints', { viewport: { width: 1280, height: 800 } });
    mkdirSync(shots, { recursive: true });
    await page.getByRole('button', { name: /^Export checkpoint at step/ }).first().waitFor({ timeout: 20_000 });

    const safetensors = await exportAs(page, 'safetensors');
    expect(safetensors.name).toMatch(/\.safetensors$/);
    expect(decodeCheckpoint(safetensors.bytes, safetensors.name).model.hiddenSize).toBe(16);
    // Serve mode: the browser downloads it (the desktop app's save dialog is tests/electron/save-file.test.ts).
    await expect.poll(() => page.locator('.notice.exported').innerText()).toBe(`Exported ${safetensors.name} (${formatBytes(safetensors.bytes.length)})`);

    await page.locator('label.format select').selectOption('onnx');
    await page.screenshot({ path: path.join(shots, 'checkpoints-export.png') });
    const onnx = await exportAs(page, 'onnx');
    expect(onnx.name).toMatch(/\.onnx$/);
    expect(new TextDecoder().decode(onnx.bytes)).toContain('quadra-workstation');

    // F16 does not apply to the formats that keep training state.
    await page.locator('label.format select').selectOption('pth');
    expect(await page.locator('label.fp16 input').isDisabled()).toBe(true);
    const pth = await exportAs(page, 'pth');
    expect(pth.name).toMatch(/\.pth$/);
    expect(decodeCheckpoint(pth.bytes, pth.name).optimizer).not.toBeNull();

    const torchrun = await exportAs(page, 'torchrun');
    expect(torchrun.name).toMatch(/-torchrun\.zip$/);
    const entries = Object.keys(unzipSync(torchrun.bytes)).map((name) => name.split('/').slice(1).join('/'));
    expect(entries).toEqual(expect.arrayContaining(['model.py', 'train.py', 'README.md', 'start.safetensors', 'config.json', 'data.npy']));
    expect(errors).toEqual([]);
    await page.close();
  }, 90_000);
});
