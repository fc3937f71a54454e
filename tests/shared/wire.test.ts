import { describe, expect, it } from 'vitest';
import { base64ToBytes, bytesToBase64, decodeWire, encodeWire } from '../../src-shared/wire';

describe('serve-mode wire format', () => {
  it('base64 agrees with Node for every length up to 300 and round-trips', () => {
    for (let n = 0; n <= 300; n++) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 97 + n) % 256);
      const text = bytesToBase64(bytes);
      expect(text).toBe(Buffer.from(bytes).toString('base64'));
      expect(Array.from(base64ToBytes(text))).toEqual(Array.from(bytes));
    }
    expect(() => base64ToBytes('ab$d')).toThrow('invalid base64');
  });

  it('carries Uint8Array values inside any JSON structure', () => {
    const value = { a: 1, files: [{ name: 'x', bytes: Uint8Array.from([1, 2, 3]) }], nested: { $bytes: 'not-alone', other: 1 } };
    const back = decodeWire(encodeWire(value)) as typeof value;
    expect(back.files[0]!.bytes).toBeInstanceOf(Uint8Array);
    expect(Array.from(back.files[0]!.bytes)).toEqual([1, 2, 3]);
    expect(back.nested).toEqual({ $bytes: 'not-alone', other: 1 });
  });

  it('carries Node Buffers (whose toJSON would otherwise run first) as bytes too', () => {
    const back = decodeWire(encodeWire({ file: Buffer.from([0, 255, 7]) })) as { file: Uint8Array };
    expect(back.file).toBeInstanceOf(Uint8Array);
    expect(Array.from(back.file)).toEqual([0, 255, 7]);
  });
});
