import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEngineConfig } from '../src-shared/engine-config';
import { initialFieldState, initialParameters } from '../src-main/engine/init';
import { buildLayout } from '../src-main/engine/layout';
import { Rng } from '../src-main/engine/random';
import { messagePortChannel, type StandardMessagePort } from '../src-main/training/message-port-channel';
import { NODE_WORKER_PLATFORM } from '../src-main/training/node-worker-platform';
import type { EngineSnapshot, FromWorker, ToWorker } from '../src-main/training/protocol';
import { serveWorker } from '../src-main/training/worker-runtime';
import { CHROMIUM, launchChromium, ROOT } from './helpers';

/**
 * The webgpu worker as the app runs it — the bundled page (dist/electron/gpu-worker.html + .js) on
 * Chromium's own WebGPU, spoken to over a MessagePort — against the same protocol served in Node
 * on dawn.node: one step from the same parameters must end at the same parameters. Both adapters
 * are SwiftShader (software Vulkan). What Electron adds (hidden window, preload relay,
 * MessageChannelMain) needs the Electron binary and is not exercised here.
 */
const DIST = path.join(ROOT, 'dist/electron');
const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
// Headless Chromium offers WebGPU only behind these; SwiftShader is its software adapter.
const WEBGPU_SWITCHES = ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader', '--enable-features=Vulkan'];

if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER)) process.env.VK_ICD_FILENAMES = SWIFTSHADER;

function skipReason(): string | null {
  if (!existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install chromium)`;
  if (!existsSync(path.join(DIST, 'gpu-worker.html')) || !existsSync(path.join(DIST, 'gpu-worker.js'))) return 'webgpu worker page not built (npm run build)';
  return null;
}

const MODEL = { fieldSize: 8, hiddenSize: 12, spikingHiddenSize: 8, spikingSteps: 3 };
const CONFIG = parseEngineConfig({ batchSize: 8, seed: 5, model: MODEL });
const NO_GPU = { gpus: [], nvidiaSmi: { available: false as const, reason: 'not needed for webgpu' } };
const ROWS = 8;

/** Known parameters, not the seed's: set-state must reach the kernel on both sides. */
function knownState(): EngineSnapshot {
  const layout = buildLayout(CONFIG.model);
  const parameters = initialParameters(layout, 41);
  const noise = new Rng(42).fillNormal(new Float32Array(layout.total), 0.01);
  for (let i = 0; i < parameters.length; i++) parameters[i] = parameters[i]! + noise[i]!;
  return {
    parameters,
    optimizer: { m: new Float32Array(layout.total), v: new Float32Array(layout.total), fieldStep: 0, spikeStep: 0 },
    fieldState: initialFieldState(MODEL.fieldSize, 43),
    step: 0,
  };
}

/** One worker, seen from the coordinator's side: a request in, its reply out. */
type Ask = (message: ToWorker) => Promise<FromWorker>;

/** init, set-state, one batch + compute, get-state: the parameters after one step. */
async function oneStep(ask: Ask): Promise<{ ready: FromWorker; gradients: FromWorker; state: EngineSnapshot }> {
  const ready = await ask({ type: 'init', seq: 1, rank: 0, worldSize: 1, config: CONFIG, backend: 'webgpu', gpu: NO_GPU, exchange: null });
  if (ready.type !== 'ready') throw new Error(`init: ${JSON.stringify(ready)}`);
  expect(await ask({ type: 'set-state', seq: 2, state: knownState() })).toMatchObject({ type: 'ok' });
  const data = new Rng(3).fillNormal(new Float32Array(ROWS * MODEL.fieldSize), 1);
  const gradients = await ask({ type: 'batch', seq: 3, step: 1, rows: ROWS, data }).then(() => ask({ type: 'compute', seq: 4, step: 1 }));
  if (gradients.type !== 'gradients') throw new Error(`compute: ${JSON.stringify(gradients)}`);
  const state = await ask({ type: 'get-state', seq: 5 });
  if (state.type !== 'state') throw new Error(`get-state: ${JSON.stringify(state)}`);
  return { ready, gradients, state: state.state };
}

/**
 * Drives a port: 'batch' has no reply, so it resolves at once; every other request resolves with
 * the reply to its seq.
 */
function asker(post: (message: ToWorker) => void, onReply: (listener: (reply: FromWorker) => void) => void): Ask {
  const pending = new Map<number, (reply: FromWorker) => void>();
  onReply((reply) => {
    pending.get(reply.replyTo)?.(reply);
    pending.delete(reply.replyTo);
  });
  return (message) => {
    if (message.type === 'batch') {
      post(message);
      return Promise.resolve({ type: 'ok', replyTo: message.seq });
    }
    return new Promise((resolve) => {
      pending.set(message.seq, resolve);
      post(message);
    });
  };
}

// Float32Arrays cross page.evaluate as tagged number lists (every float32 is exact as a double).
type Wire = unknown;
function toWire(value: unknown): Wire {
  if (value instanceof Float32Array) return { __f32: Array.from(value) };
  if (Array.isArray(value)) return value.map(toWire);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toWire(v)]));
  return value;
}
function fromWire(value: Wire): unknown {
  if (Array.isArray(value)) return value.map(fromWire);
  if (value && typeof value === 'object') {
    if ('__f32' in value) return Float32Array.from((value as { __f32: number[] }).__f32);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromWire(v)]));
  }
  return value;
}

/** The page's end: hands browser-worker.ts a MessagePort as the preload would, relays replies to the test. */
async function pageWorker(page: Page): Promise<Ask> {
  const replies: Array<(reply: FromWorker) => void> = [];
  await page.exposeFunction('quadraReply', (wire: Wire) => {
    for (const listener of replies) listener(fromWire(wire) as FromWorker);
  });
  await page.evaluate(() => {
    const g = globalThis as unknown as Record<string, unknown> & {
      quadraReply(wire: unknown): void;
      postMessage(message: unknown, origin: string, transfer: unknown[]): void;
    };
    const tag = (value: unknown): unknown => {
      if (value instanceof Float32Array) return { __f32: Array.from(value) };
      if (Array.isArray(value)) return value.map(tag);
      if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, tag(v)]));
      return value;
    };
    const untag = (value: unknown): unknown => {
      if (Array.isArray(value)) return value.map(untag);
      if (value && typeof value === 'object') {
        if ('__f32' in value) return Float32Array.from((value as { __f32: number[] }).__f32);
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, untag(v)]));
      }
      return value;
    };
    const { port1, port2 } = new MessageChannel();
    port1.addEventListener('message', (event) => g.quadraReply(tag((event as unknown as { data: unknown }).data)));
    port1.start();
    g.quadraSend = (wire: unknown) => port1.postMessage(untag(wire));
    g.postMessage({ type: 'quadra-worker-port', pid: 4242 }, '*', [port2]);
  });
  return asker(
    (message) => void page.evaluate((wire) => (globalThis as unknown as { quadraSend(wire: unknown): void }).quadraSend(wire), toWire(message) as object),
    (listener) => replies.push(listener),
  );
}

/** The Node end: the same runtime on dawn.node, over Node's MessageChannel. */
function nodeWorker(): { ask: Ask; close: () => void } {
  const { port1, port2 } = new MessageChannel();
  serveWorker(messagePortChannel<ToWorker, FromWorker>(port2 as unknown as StandardMessagePort), { pid: process.pid, cudaVisibleDevices: null }, NODE_WORKER_PLATFORM);
  const ask = asker(
    (message) => port1.postMessage(message),
    (listener) => port1.on('message', listener),
  );
  return { ask, close: () => port1.close() };
}

function firstBitDifference(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

const why = skipReason();

describe.skipIf(why !== null)(`the webgpu worker page in headless Chromium${why ? ` (skipped: ${why})` : ''}`, () => {
  let server: http.Server;
  let origin = '';
  let browser: Browser | null = null;

  beforeAll(async () => {
    const files: Record<string, { file: string; type: string }> = {
      '/gpu-worker.html': { file: 'gpu-worker.html', type: 'text/html; charset=utf-8' },
      '/gpu-worker.js': { file: 'gpu-worker.js', type: 'text/javascript; charset=utf-8' },
    };
    server = http.createServer((request, response) => {
      const served = files[new URL(request.url ?? '/', 'http://127.0.0.1').pathname];
      if (!served) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { 'Content-Type': served.type }).end(readFileSync(path.join(DIST, served.file)));
    });
    // 127.0.0.1 is a secure context: navigator.gpu exists there.
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await launchChromium(WEBGPU_SWITCHES);
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => server?.close(resolve));
  });

  it('trains one step on Chromium\'s WebGPU to the parameters dawn.node reaches', async (context) => {
    const page = await browser!.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(`${origin}/gpu-worker.html`);
    const adapter = await page.evaluate(async () => {
      const gpu = (globalThis as unknown as { navigator: { gpu?: { requestAdapter(): Promise<{ info: { vendor: string; architecture: string } } | null> } } }).navigator.gpu;
      const found = gpu ? await gpu.requestAdapter() : null;
      return found ? `${found.info.vendor} ${found.info.architecture}` : null;
    });
    if (!adapter) {
      context.skip(`headless Chromium found no WebGPU adapter with ${WEBGPU_SWITCHES.join(' ')}`);
      return;
    }

    const inPage = await oneStep(await pageWorker(page));
    expect(pageErrors).toEqual([]);
    expect(inPage.ready).toMatchObject({ type: 'ready', pid: 4242, backend: 'webgpu', cudaVisibleDevices: null });
    expect((inPage.ready as Extract<FromWorker, { type: 'ready' }>).report[0]!.reason).toMatch(/Chromium's WebGPU/);
    expect(inPage.gradients).toMatchObject({ type: 'gradients', step: 1, rows: ROWS, applied: true });

    const node = nodeWorker();
    let inNode;
    try {
      inNode = await oneStep(node.ask);
    } catch (error) {
      // dawn.node needs its adapter too (SwiftShader through VK_ICD_FILENAMES).
      if (/adapter|webgpu.*not available/i.test((error as Error).message)) {
        context.skip(`dawn.node found no WebGPU adapter: ${(error as Error).message}`);
        return;
      }
      throw error;
    } finally {
      node.close();
    }
    const start = knownState().parameters;
    const a = inPage.state.parameters;
    const b = inNode.state.parameters;
    expect(a.length).toBe(b.length);
    expect(inPage.state.step).toBe(1);
    // The step started from the known parameters (set-state reached the kernel) and moved them:
    // AdamW's first step moves each by about lr (1e-3).
    expect(a.some((value, i) => value !== start[i])).toBe(true);
    expect(Math.max(...a.map((value, i) => Math.abs(value - start[i]!)))).toBeLessThan(2e-3);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    const bits = firstBitDifference(a, b);
    console.info(
      `webgpu in Chromium (${adapter}) vs dawn.node: ${a.length} parameters after one step, max |Δ| ${worst.toExponential(2)}, ${bits === -1 ? 'bit-identical' : `first differing bit at index ${bits}`}; loss ${inPage.gradients.type === 'gradients' ? inPage.gradients.loss.loss : '?'} vs ${inNode.gradients.type === 'gradients' ? inNode.gradients.loss.loss : '?'}`,
    );
    expect(worst).toBeLessThanOrEqual(1e-6);
    await page.close();
  }, 120_000);
});
