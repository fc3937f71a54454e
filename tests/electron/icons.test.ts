import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { WINDOW_ICON_PATH } from '../../src-main/electron/icon';

/**
 * The committed icons (made by `npm run build:icons` from resources/icons/icon.svg) read back with
 * a parser of our own, not the writer's code: containers, entries, and every PNG decoded.
 */
const require = createRequire(import.meta.url);
const ROOT = path.resolve(__dirname, '../..');
const ICONS = path.join(ROOT, 'resources/icons');
const PNG_SIZES = [16, 24, 32, 48, 64, 128, 256, 512, 1024];
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const ICNS_SIZES: Record<string, number> = { ic04: 16, ic05: 32, ic11: 32, ic12: 64, ic07: 128, ic13: 256, ic08: 256, ic14: 512, ic09: 512, ic10: 1024 };

const read = (file: string) => readFileSync(path.join(ROOT, file));
const png = (size: number) => readFileSync(path.join(ICONS, 'png', `${size}x${size}.png`));

/** Width and height after checking the signature, IHDR (8-bit RGBA, not interlaced) and that the pixels inflate to exactly that size. */
function decodePng(bytes: Buffer): { width: number; height: number } {
  expect(bytes.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  let at = 8;
  let sawEnd = false;
  while (at < bytes.length) {
    const length = bytes.readUInt32BE(at);
    const type = bytes.toString('latin1', at + 4, at + 8);
    const data = bytes.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      expect([data[8], data[9], data[12]], 'bit depth 8, colour type 6 (RGBA), no interlace').toEqual([8, 6, 0]);
    }
    if (type === 'IDAT') idat.push(data);
    if (type === 'IEND') sawEnd = true;
    at += 12 + length;
  }
  expect(sawEnd).toBe(true);
  expect(at).toBe(bytes.length);
  expect(inflateSync(Buffer.concat(idat)).length, 'one filter byte and 4 bytes a pixel per row').toBe(height * (1 + 4 * width));
  return { width, height };
}

function readIco(bytes: Buffer): { size: number; png: Buffer }[] {
  expect([bytes.readUInt16LE(0), bytes.readUInt16LE(2)], 'reserved 0, type 1 (icon)').toEqual([0, 1]);
  const count = bytes.readUInt16LE(4);
  return Array.from({ length: count }, (_, i) => {
    const entry = 6 + 16 * i;
    const size = bytes[entry] || 256;
    expect(bytes[entry + 1] || 256).toBe(size);
    expect([bytes.readUInt16LE(entry + 4), bytes.readUInt16LE(entry + 6)], 'planes 1, 32 bits a pixel').toEqual([1, 32]);
    const length = bytes.readUInt32LE(entry + 8);
    const offset = bytes.readUInt32LE(entry + 12);
    expect(offset + length).toBeLessThanOrEqual(bytes.length);
    return { size, png: bytes.subarray(offset, offset + length) };
  });
}

function readIcns(bytes: Buffer): { type: string; png: Buffer }[] {
  expect(bytes.toString('latin1', 0, 4)).toBe('icns');
  expect(bytes.readUInt32BE(4), 'the header holds the whole length').toBe(bytes.length);
  const entries: { type: string; png: Buffer }[] = [];
  for (let at = 8; at < bytes.length; ) {
    const type = bytes.toString('latin1', at, at + 4);
    const length = bytes.readUInt32BE(at + 4);
    expect(length).toBeGreaterThan(8);
    entries.push({ type, png: bytes.subarray(at + 8, at + length) });
    at += length;
  }
  return entries;
}

describe('app icons', () => {
  it('were generated from the current icon.svg (run `npm run build:icons` after editing it)', () => {
    const svg = read('resources/icons/icon.svg');
    const [recorded] = read('resources/icons/source.sha256').toString().split(/\s+/);
    expect(recorded).toBe(createHash('sha256').update(svg).digest('hex'));
    expect(svg.toString()).toMatch(/^<svg [^>]*viewBox="0 0 1024 1024"/);
  });

  it.each(PNG_SIZES)('png/%ix%i.png decodes to its size', (size) => {
    expect(decodePng(png(size))).toEqual({ width: size, height: size });
  });

  it('icon.ico holds PNG entries 16–256, each the same bytes as the PNG of its size', () => {
    const entries = readIco(read('resources/icons/icon.ico'));
    expect(entries.map((e) => e.size)).toEqual([16, 24, 32, 48, 64, 128, 256]);
    for (const { size, png: data } of entries) {
      expect(decodePng(data)).toEqual({ width: size, height: size });
      expect(data.equals(png(size))).toBe(true);
      // NSIS refuses an entry over 1 MiB ("invalid icon file size").
      expect(data.length).toBeLessThan(1 << 20);
    }
  });

  it('icon.icns holds PNG entries 16–1024 in the slots macOS reads them from', () => {
    const entries = readIcns(read('resources/icons/icon.icns'));
    expect(entries.map((e) => e.type).sort()).toEqual(Object.keys(ICNS_SIZES).sort());
    for (const { type, png: data } of entries) {
      const size = ICNS_SIZES[type]!;
      expect(decodePng(data)).toEqual({ width: size, height: size });
      expect(data.equals(png(size))).toBe(true);
    }
  });

  it("the renderer's public/ folder (copied into dist/renderer by vite) has favicon.ico and the SVG", () => {
    const favicon = readIco(read('src-renderer/public/favicon.ico'));
    expect(favicon.map((e) => e.size)).toEqual([16, 32, 48]);
    for (const { size, png: data } of favicon) expect(data.equals(png(size))).toBe(true);
    expect(read('src-renderer/public/icon.svg').equals(read('resources/icons/icon.svg'))).toBe(true);
    // index.html names it with vite's public-folder path (rewritten to ./icon.svg under base './').
    expect(read('src-renderer/index.html').toString()).toMatch(/<link rel="icon" href="\/icon\.svg" type="image\/svg\+xml" \/>/);
  });

  it('the window icon is the 256 PNG, and electron-builder packs it', async () => {
    expect(WINDOW_ICON_PATH).toBe(path.join(ICONS, 'png', '256x256.png'));
    expect(decodePng(readFileSync(WINDOW_ICON_PATH))).toEqual({ width: 256, height: 256 });
    const { load } = (await import('js-yaml')) as { load: (text: string) => unknown };
    const config = load(read('electron-builder.yml').toString()) as { files: string[] };
    expect(config.files).toContain(path.relative(ROOT, WINDOW_ICON_PATH));
  });
});

describe('electron-builder takes the icons', () => {
  const outDir = mkdtempSync(path.join(os.tmpdir(), 'quadra-icons-'));
  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  // app-builder-lib's own resolver (what PlatformPackager.resolveIcon calls) with our config's paths:
  // ready-made .ico/.icns and a folder of NxN.png pass through it without any conversion tool.
  type Converted = { icons: { file: string; size: number }[]; isFallback: boolean };
  const convertIcon = (
    require('app-builder-lib/out/util/iconConverter') as {
      convertIcon: (options: { sources: string[]; fallbackSources: string[]; roots: string[]; format: 'ico' | 'icns' | 'set'; outDir: string }) => Promise<Converted>;
    }
  ).convertIcon;

  it.each([
    ['win', 'ico'],
    ['mac', 'icns'],
    ['linux', 'set'],
  ] as const)('%s.icon (%s)', async (platform, format) => {
    const { load } = (await import('js-yaml')) as { load: (text: string) => unknown };
    const config = load(read('electron-builder.yml').toString()) as Record<string, { icon?: string; buildResources?: string }>;
    const source = config[platform]?.icon;
    expect(source, `${platform}.icon is set`).toBeTruthy();
    const roots = [path.join(ROOT, config.directories!.buildResources!), ROOT];
    const result = await convertIcon({ sources: [source!], fallbackSources: [], roots, format, outDir });
    expect(result.isFallback).toBe(false);
    expect(result.icons.length).toBeGreaterThan(0);
    for (const icon of result.icons) expect(icon.file.startsWith(ICONS + path.sep)).toBe(true);
    if (format === 'ico') expect(result.icons[0]!.size).toBe(256);
    if (format === 'set') expect(result.icons.map((i) => i.size)).toEqual(PNG_SIZES);
  });
});
