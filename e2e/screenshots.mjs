// Screenshots of every view of `quadra serve` in Debian's headless Chromium (never a downloaded browser).
// Usage: node e2e/screenshots.mjs [--db FILE] [--out DIR]
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values } = parseArgs({ options: { db: { type: 'string' }, out: { type: 'string', default: 'screenshots' } } });
const root = path.resolve(import.meta.dirname, '..');
const server = spawn(process.execPath, [path.join(root, 'src-main/cli/quadra.mjs'), 'serve', '--port', '0', ...(values.db ? ['--db', values.db] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((resolve, reject) => {
  let text = '';
  server.stdout.on('data', (chunk) => {
    text += chunk;
    const match = /http:\/\/\S+\/\?token=\S+/.exec(text);
    if (match) resolve(match[0]);
  });
  server.once('exit', (code) => reject(new Error(`quadra serve exited with ${code}`)));
});
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-gpu'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  mkdirSync(values.out, { recursive: true });
  for (const view of ['hardware', 'monitor', 'train', 'runs', 'benchmarks', 'checkpoints']) {
    await page.goto(`${url}#${view}`);
    await page.waitForSelector('.connection.open');
    await page.waitForSelector('main h1');
    await page.waitForTimeout(view === 'monitor' ? 4000 : 1000);
    const file = path.join(values.out, `${view}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(file);
  }
} finally {
  await browser.close();
  server.kill('SIGINT');
}
