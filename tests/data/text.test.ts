import { describe, expect, it } from 'vitest';
import { QuadraError } from '../../src-shared/errors';
import { fnv1a32, textToFeatures } from '../../src-main/data/text';

const FILE = 'notes.txt';

/** Straightforward reference: FNV-1a over TextEncoder's bytes. */
function referenceFnv(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) hash = Math.imul(hash ^ byte, 0x01000193);
  return hash >>> 0;
}

function row(features: { data: Float32Array }, width: number, index: number): number[] {
  return Array.from(features.data.subarray(index * width, (index + 1) * width));
}

describe('fnv1a32', () => {
  it('matches the published FNV-1a 32-bit test vectors', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
  });

  it('hashes the UTF-8 bytes of 1-, 2-, 3- and 4-byte characters', () => {
    for (const word of ['straße', 'café', '日本語', 'ü', '𝔘𝔫𝔦', '😀', 'x\uD800y']) {
      expect(fnv1a32(word)).toBe(referenceFnv(word));
    }
  });
});

describe('textToFeatures', () => {
  it('makes one row per line holding term frequencies at hashed columns', () => {
    const width = 1000;
    const features = textToFeatures('the cat\nthe the dog\n', width, FILE);
    expect(features.rows).toBe(2);
    expect(features.skippedLines).toBe(0);
    expect(features.data.length).toBe(2 * width);

    const expected = (words: string[]): number[] => {
      const out = new Array<number>(width).fill(0);
      for (const word of words) out[fnv1a32(word) % width]! += 1 / words.length;
      return Array.from(Float32Array.from(out));
    };
    expect(row(features, width, 0)).toEqual(expected(['the', 'cat']));
    expect(row(features, width, 1)).toEqual(expected(['the', 'the', 'dog']));
  });

  it('gives every row a sum of 1 whatever the line length', () => {
    const width = 16;
    const features = textToFeatures('a\nlots of words on one long line of text here\n', width, FILE);
    for (let r = 0; r < features.rows; r++) {
      expect(row(features, width, r).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    }
  });

  it('lowercases and splits on anything that is not a letter or digit', () => {
    const width = 64;
    const a = textToFeatures('Hello, WORLD! 42-times', width, FILE);
    const b = textToFeatures('hello world 42 times', width, FILE);
    expect(a.data).toEqual(b.data);
  });

  it('treats composed and decomposed accents as the same word', () => {
    const width = 64;
    const composed = textToFeatures('caf\u00e9', width, FILE);
    const decomposed = textToFeatures('cafe\u0301', width, FILE);
    expect(decomposed.data).toEqual(composed.data);
  });

  it('keeps letters and digits of any script together as one token', () => {
    const width = 1 << 16;
    const features = textToFeatures('日本語 Straße', width, FILE);
    expect(features.data[fnv1a32('日本語') % width]).toBeCloseTo(0.5);
    expect(features.data[fnv1a32('straße') % width]).toBeCloseTo(0.5);
  });

  it('skips blank lines silently and counts lines without tokens', () => {
    const features = textToFeatures('\uFEFFone\r\n\r\n   \n---\n* * *\rtwo\n', 8, FILE);
    expect(features.rows).toBe(2);
    expect(features.skippedLines).toBe(2);
    expect(features.data.length).toBe(16);
  });

  it('adds equal counts in collision slots (width 1 puts every word in one column)', () => {
    const features = textToFeatures('a b c\n', 1, FILE);
    expect(Array.from(features.data)).toEqual([1]);
  });

  it.each([
    ['an empty file', ''],
    ['only blank lines', '\n  \n\t\n'],
    ['no letters or digits', '---\n!!!\n'],
  ])('rejects %s', (_name, text) => {
    let caught: unknown;
    try {
      textToFeatures(text, 10, FILE);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(QuadraError);
    expect((caught as QuadraError).code).toBe('INVALID_FILE');
    expect((caught as QuadraError).message).toMatch(/^notes\.txt: no text to turn into features/);
    expect((caught as QuadraError).details).toEqual({ file: FILE });
  });

  it('rejects a width that is not a whole number ≥ 1', () => {
    for (const width of [0, -3, 1.5, Number.NaN]) {
      expect(() => textToFeatures('word', width, FILE)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });
});
