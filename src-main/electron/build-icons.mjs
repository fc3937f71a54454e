// Renders resources/icons/icon.svg into every icon the installers and the browser use, with Debian's
// Chromium (no browser is ever downloaded) and plain Node for the containers:
//   resources/icons/png/NxN.png   Linux icon set (electron-builder linux.icon) and the window icon
//   resources/icons/icon.ico      Windows (PNG-compressed entries 16–256, Vista and later)
//   resources/icons/icon.icns     macOS (PNG entries 16–1024)
//   src-renderer/public/          favicon.ico (16–48) and icon.svg, which vite copies into dist/renderer
//   resources/icons/source.sha256 the SVG these were made from; a test fails when the SVG changes without them
// The outputs are committed, so packaging and CI need no Chromium. Run `npm run build:icons` after
// editing the SVG; `--out DIR` writes everything under DIR instead (to compare or to look at).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync, inflateSync } from 'node:zlib';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const PNG_SIZES = [16, 24, 32, 48, 64, 128, 256, 512, 1024];
export const ICO_SIZES = [16, 24, 32, 48, 64, 128, 256];
export const FAVICON_SIZES = [16, 32, 48];
// OSType → pixels. ic04/ic05 take PNG data as well as ARGB; ic11–ic14 are the @2x ("retina") slots.
export const ICNS_ENTRIES = [
  ['ic04', 16],
  ['ic05', 32],
  ['ic11', 32],
  ['ic12', 64],
  ['ic07', 128],
  ['ic13', 256],
  ['ic08', 256],
  ['ic14', 512],
  ['ic09', 512],
  ['ic10', 1024],
];

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** ICONDIR + one 16-byte ICONDIRENTRY per image + the PNGs themselves; 256 is written as 0. */
export function encodeIco(pngs) {
  const header = Buffer.alloc(6 + 16 * pngs.length);
  header.writeUInt16LE(0, 0);
  header.writeUInt16LE(1, 2); // 1 = icon
  header.writeUInt16LE(pngs.length, 4);
  let offset = header.length;
  pngs.forEach(({ size, png }, i) => {
    const entry = 6 + 16 * i;
    header.writeUInt8(size >= 256 ? 0 : size, entry);
    header.writeUInt8(size >= 256 ? 0 : size, entry + 1);
    header.writeUInt8(0, entry + 2); // no palette
    header.writeUInt8(0, entry + 3);
    header.writeUInt16LE(1, entry + 4); // colour planes
    header.writeUInt16LE(32, entry + 6); // bits per pixel
    header.writeUInt32LE(png.length, entry + 8);
    header.writeUInt32LE(offset, entry + 12);
    offset += png.length;
  });
  return Buffer.concat([header, ...pngs.map(({ png }) => png)]);
}

/** 'icns' + total length, then per entry its OSType, its length (8 + data) and the PNG; all big-endian. */
export function encodeIcns(entries) {
  const chunks = entries.map(({ type, png }) => {
    const head = Buffer.alloc(8);
    head.write(type, 0, 'latin1');
    head.writeUInt32BE(8 + png.length, 4);
    return Buffer.concat([head, png]);
  });
  const head = Buffer.alloc(8);
  head.write('icns', 0, 'latin1');
  head.writeUInt32BE(8 + chunks.reduce((sum, chunk) => sum + chunk.length, 0), 4);
  return Buffer.concat([head, ...chunks]);
}

/**
 * Chromium's screenshots are quickly compressed; this keeps IHDR, the pixels (one IDAT, deflated
 * at level 9) and IEND, and drops the rest, which also makes the files independent of the
 * Chromium version's ancillary chunks.
 */
export function recompressPng(png) {
  if (!png.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG');
  let ihdr = null;
  const idat = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') ihdr = data;
    if (type === 'IDAT') idat.push(data);
    at += 12 + length;
  }
  if (!ihdr || idat.length === 0) throw new Error('PNG without IHDR or IDAT');
  const pixels = deflateSync(inflateSync(Buffer.concat(idat)), { level: 9, memLevel: 9 });
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), pngChunk('IDAT', pixels), pngChunk('IEND', Buffer.alloc(0))]);
}

function pngChunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Each size drawn from the vector source (not scaled down from 1024), so small sizes stay crisp. */
async function renderPngs(svg, sizes) {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`);
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--force-color-profile=srgb'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1024, height: 1024 }, deviceScaleFactor: 1 });
    const source = `data:image/svg+xml;base64,${svg.toString('base64')}`;
    const pngs = new Map();
    for (const size of sizes) {
      await page.setContent(`<!doctype html><body style="margin:0;background:transparent"><img src="${source}" width="${size}" height="${size}" style="display:block"></body>`);
      await page.evaluate(() => document.images[0].decode());
      const shot = await page.screenshot({ clip: { x: 0, y: 0, width: size, height: size }, omitBackground: true, type: 'png' });
      pngs.set(size, recompressPng(shot));
    }
    return pngs;
  } finally {
    await browser.close();
  }
}

async function main() {
  const outFlag = process.argv.indexOf('--out');
  const out = outFlag >= 0 ? path.resolve(process.argv[outFlag + 1] ?? '') : null;
  const iconsDir = out ? path.join(out, 'icons') : path.join(ROOT, 'resources/icons');
  const publicDir = out ? path.join(out, 'public') : path.join(ROOT, 'src-renderer/public');
  const svg = await readFile(path.join(ROOT, 'resources/icons/icon.svg'));
  const pngs = await renderPngs(svg, PNG_SIZES);
  const entries = (sizes) => sizes.map((size) => ({ size, png: pngs.get(size) }));

  await mkdir(path.join(iconsDir, 'png'), { recursive: true });
  await mkdir(publicDir, { recursive: true });
  for (const [size, png] of pngs) await writeFile(path.join(iconsDir, 'png', `${size}x${size}.png`), png);
  await writeFile(path.join(iconsDir, 'icon.ico'), encodeIco(entries(ICO_SIZES)));
  await writeFile(path.join(iconsDir, 'icon.icns'), encodeIcns(ICNS_ENTRIES.map(([type, size]) => ({ type, png: pngs.get(size) }))));
  await writeFile(path.join(publicDir, 'favicon.ico'), encodeIco(entries(FAVICON_SIZES)));
  await writeFile(path.join(publicDir, 'icon.svg'), svg);
  if (out) await writeFile(path.join(iconsDir, 'icon.svg'), svg);
  await writeFile(path.join(iconsDir, 'source.sha256'), `${createHash('sha256').update(svg).digest('hex')}  icon.svg\n`);
  console.log(`icons: ${PNG_SIZES.length} PNGs, icon.ico, icon.icns → ${path.relative(ROOT, iconsDir) || '.'}; favicon.ico, icon.svg → ${path.relative(ROOT, publicDir)}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(`build-icons: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}
