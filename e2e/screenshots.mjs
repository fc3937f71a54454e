// Screenshots of every view of `quadra serve` in Debian's headless Chromium (never a downloaded browser):
// hardware, monitor, each step of the train wizard, runs, a finished run's detail, a comparison, a
// live run's detail, a run `quadra train` trains (paused from the page), an imported run (no
// metrics), benchmarks and checkpoints.
// Usage: node e2e/screenshots.mjs [--db FILE] [--out DIR]
// Without --db, a temporary database is seeded with two short runs trained by `quadra train` and an imported checkpoint.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values } = parseArgs({ options: { db: { type: 'string' }, out: { type: 'string', default: 'screenshots' } } });
const root = path.resolve(import.meta.dirname, '..');
const quadra = path.join(root, 'src-main/cli/quadra.mjs');
const seeded = values.db ? null : mkdtempSync(path.join(os.tmpdir(), 'quadra-screenshots-'));
const db = values.db ?? path.join(seeded, 'screenshots.sqlite');
const SMALL = ['--dataset', 'synthetic:2048', '--batch-size', '32', '--hidden-size', '32', '--backend', 'simd', '--checkpoint-every', '1', '--db', db];

if (seeded) {
  // Every step's loss is stored: the finished run's chart shows the whole per-step curve.
  const train = (args) => JSON.parse(execFileSync(process.execPath, [quadra, 'train', ...args, ...SMALL, '--json'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
  const baseline = train(['--epochs', '4', '--name', 'baseline']);
  train(['--epochs', '3', '--name', 'no surrogate', '--spike-gradient', 'none']);
  // An imported checkpoint: a run with no metrics (its charts say so, without a log-scale switch).
  const file = path.join(seeded, 'baseline.safetensors');
  for (const args of [['checkpoints', 'export', String(baseline.bestCheckpointId), '--out', file], ['checkpoints', 'import', file, '--name', 'imported baseline']]) {
    execFileSync(process.execPath, [quadra, ...args, '--db', db], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  }
}

const server = spawn(process.execPath, [quadra, 'serve', '--port', '0', '--db', db], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
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

/** Calls the page's own server over a second WebSocket (its origin passes the server's Origin check). */
function call(page, method, request) {
  return page.evaluate(
    ([name, body]) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://${location.host}/api`);
        ws.onopen = () => ws.send(JSON.stringify({ id: 1, method: name, request: body }));
        ws.onerror = () => reject(new Error('WebSocket failed'));
        ws.onmessage = (event) => {
          const message = JSON.parse(String(event.data));
          if (message.id !== 1) return;
          ws.close();
          if (message.result.ok) resolve(message.result.value);
          else reject(new Error(message.result.error.message));
        };
      }),
    [method, request],
  );
}

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  mkdirSync(values.out, { recursive: true });
  const shot = async (name) => {
    const file = path.join(values.out, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(file);
  };
  // A fresh page load each time: a change of the hash alone does not reopen a view that is shown.
  const open = async (hash) => {
    await page.goto('about:blank');
    await page.goto(`${url}#${hash}`);
    await page.waitForSelector('.connection.open');
    await page.waitForSelector('main h1');
  };

  await open('hardware');
  await page.waitForTimeout(1000);
  await shot('hardware');

  await open('monitor');
  await page.locator('label.interval select').selectOption('500');
  await page.waitForTimeout(4000);
  await shot('monitor');

  // The wizard, one screenshot per step (the defaults are valid all the way through).
  await open('train');
  await page.waitForTimeout(1000);
  for (const step of ['data', 'model', 'hardware', 'schedule', 'review']) {
    await page.waitForTimeout(500);
    await shot(`train-${step}`);
    const next = page.getByRole('button', { name: 'Next', exact: true });
    if ((await next.count()) === 0 || (await next.isDisabled())) break;
    await next.click();
  }

  await open('runs');
  await page.waitForSelector('tbody tr');
  await page.waitForTimeout(500);
  await shot('runs');
  const runs = await call(page, 'listRuns', {});
  const finished = runs.find((run) => run.name === 'baseline') ?? runs.find((run) => run.status === 'completed');
  if (finished) {
    await open(`runs/${finished.id}`);
    await page.waitForSelector('figure[aria-label="Loss"] canvas');
    await page.waitForTimeout(1000);
    await shot('run-finished');
  }
  if (runs.filter((run) => run.summary.steps > 0).length >= 2) {
    await open('runs');
    await page.waitForSelector('tbody tr');
    const trained = runs.filter((run) => run.summary.steps > 0 && !run.name.startsWith('imported'));
    for (const run of trained.slice(0, 2)) await page.getByRole('checkbox', { name: `Select ${run.name} to compare` }).check();
    await page.getByRole('button', { name: 'Compare' }).click();
    await page.waitForSelector('figure[aria-label="Train loss"] canvas');
    await page.waitForTimeout(1000);
    await shot('compare');
  }

  // A run this workstation trains: live curves, workers, Pause/Resume/Cancel.
  const { runId } = await call(page, 'startRun', { name: 'live', mode: 'single', backend: 'simd', engine: { model: { hiddenSize: 32 }, batchSize: 32 }, epochs: 50, dataset: 'synthetic:4096' });
  await open(`runs/${runId}`);
  await page.waitForSelector('section[aria-label="Workers"] tbody tr', { timeout: 30_000 });
  await page.waitForTimeout(4000);
  await shot('run-live');
  await call(page, 'controlRun', { runId, action: 'cancel' });

  // A run `quadra train` trains in another process: no events reach this page, so its detail polls;
  // Pause goes through the database.
  const trainer = spawn(process.execPath, [quadra, 'train', '--epochs', '300', '--name', 'trained elsewhere', ...SMALL], { cwd: root, stdio: 'ignore' });
  const trainerExited = new Promise((resolve) => trainer.once('exit', resolve));
  try {
    let elsewhere = null;
    for (let tries = 0; tries < 60 && !elsewhere; tries++) {
      await page.waitForTimeout(500);
      elsewhere = (await call(page, 'listRuns', {})).find((run) => run.name === 'trained elsewhere' && run.status === 'running') ?? null;
    }
    if (elsewhere) {
      await open('runs');
      await page.locator(`tbody tr[data-run-id="${elsewhere.id}"]`).click();
      await page.waitForSelector('text=Trained by another process', { timeout: 10_000 });
      await page.getByRole('button', { name: 'Pause' }).click();
      await page.waitForSelector('.view-header .status.paused', { timeout: 10_000 });
      await page.waitForTimeout(2500);
      await shot('run-elsewhere-paused');
      await page.getByRole('button', { name: 'Cancel' }).click();
      await page.waitForSelector('.view-header .status.cancelled', { timeout: 20_000 });
    }
  } finally {
    if (trainer.exitCode === null) trainer.kill('SIGINT');
    await trainerExited;
  }

  const imported = (await call(page, 'listRuns', {})).find((run) => run.name === 'imported baseline');
  if (imported) {
    await open('runs');
    await page.locator(`tbody tr[data-run-id="${imported.id}"]`).click();
    await page.waitForSelector('section[aria-label="Configuration"]');
    await page.waitForTimeout(500);
    await shot('run-imported');
  }

  await open('benchmarks');
  await page.waitForTimeout(1000);
  await shot('benchmarks');

  await open('checkpoints');
  await page.waitForTimeout(1000);
  await shot('checkpoints');
} finally {
  await browser.close();
  server.kill('SIGINT');
  await new Promise((resolve) => (server.exitCode === null ? server.once('exit', resolve) : resolve()));
  if (seeded) rmSync(seeded, { recursive: true, force: true });
}
