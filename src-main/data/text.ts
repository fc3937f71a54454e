/**
 * Text → fixed-width rows by hashed bag-of-words (the "hashing trick"): the reference turned text
 * into word-count features; hashing keeps the width fixed without storing a vocabulary.
 *
 * - One row per non-blank line. Lines are NFC-normalized so "é" typed either way is one letter.
 * - Tokens are runs of Unicode letters/digits, lowercased.
 * - Each token goes to column fnv1a32(UTF-8 bytes of the token) mod width.
 * - A row holds term frequencies: the token count per column divided by the line's token count,
 *   so every row sums to 1 and long lines don't dominate short ones.
 * - A non-blank line with no tokens (e.g. "----") is skipped and counted in `skippedLines`.
 */
import { QuadraError } from '../../src-shared/errors';

export interface TextFeatures {
  rows: number;
  /** Row-major, rows × width. */
  data: Float32Array;
  skippedLines: number;
}

const TOKEN = /[\p{L}\p{N}]+/gu;
const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

export function textToFeatures(text: string, width: number, fileLabel: string): TextFeatures {
  if (!Number.isSafeInteger(width) || width < 1) {
    throw new QuadraError('INVALID_ARGUMENT', `${fileLabel}: text feature width must be a whole number ≥ 1, got ${width}`, {
      file: fileLabel,
      width,
    });
  }
  const lines = (text.startsWith('\uFEFF') ? text.slice(1) : text).split(/\r\n|\r|\n/);
  const nonBlank = lines.filter((line) => line.trim() !== '');
  let data = new Float32Array(nonBlank.length * width);
  let rows = 0;
  let skippedLines = 0;
  const counts = new Map<number, number>();

  for (const line of nonBlank) {
    counts.clear();
    let tokens = 0;
    for (const match of line.normalize('NFC').matchAll(TOKEN)) {
      const column = fnv1a32(match[0].toLowerCase()) % width;
      counts.set(column, (counts.get(column) ?? 0) + 1);
      tokens++;
    }
    if (tokens === 0) {
      skippedLines++;
      continue;
    }
    // Divide whole counts once (not add 1/n per token) so equal frequencies give equal floats.
    const rowStart = rows * width;
    for (const [column, count] of counts) data[rowStart + column] = count / tokens;
    rows++;
  }

  if (rows === 0) {
    throw new QuadraError('INVALID_FILE', `${fileLabel}: no text to turn into features (no letters or digits in the file)`, {
      file: fileLabel,
    });
  }
  if (rows < nonBlank.length) data = data.slice(0, rows * width);
  return { rows, data, skippedLines };
}

/** 32-bit FNV-1a over the UTF-8 bytes of `text` (encoded inline to avoid a buffer per token). */
export function fnv1a32(text: string): number {
  let hash = FNV_OFFSET_BASIS;
  const byte = (value: number): void => {
    hash = Math.imul(hash ^ value, FNV_PRIME);
  };
  for (const char of text) {
    // Lone surrogates encode as U+FFFD, as TextEncoder does.
    let code = char.codePointAt(0) as number;
    if (code >= 0xd800 && code <= 0xdfff) code = 0xfffd;
    if (code < 0x80) {
      byte(code);
    } else if (code < 0x800) {
      byte(0xc0 | (code >> 6));
      byte(0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      byte(0xe0 | (code >> 12));
      byte(0x80 | ((code >> 6) & 0x3f));
      byte(0x80 | (code & 0x3f));
    } else {
      byte(0xf0 | (code >> 18));
      byte(0x80 | ((code >> 12) & 0x3f));
      byte(0x80 | ((code >> 6) & 0x3f));
      byte(0x80 | (code & 0x3f));
    }
  }
  return hash >>> 0;
}
