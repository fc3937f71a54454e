import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { QuadraError } from '../../src-shared/errors';
import { parseNpy, serializeNpy } from '../../src-main/data/npy';
import { expectQuadraErrorSync } from '../helpers/errors';

/** Fixtures written by NumPy 1.24 (np.save / np.lib.format.write_array). */
function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(`../fixtures/npy/${name}`, import.meta.url)));
}

/** A hand-built version 1.0 file with the given header text and data bytes. */
function npyFile(header: string, data: Uint8Array = new Uint8Array(0), version = [1, 0]): Uint8Array {
  const headerBytes = new TextEncoder().encode(header);
  const lengthBytes = version[0] === 1 ? 2 : 4;
  const out = new Uint8Array(8 + lengthBytes + headerBytes.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version[0]!, version[1]!]);
  const view = new DataView(out.buffer);
  if (lengthBytes === 2) view.setUint16(8, headerBytes.length, true);
  else view.setUint32(8, headerBytes.length, true);
  out.set(headerBytes, 8 + lengthBytes);
  out.set(data, 8 + lengthBytes + headerBytes.length);
  return out;
}

function expectInvalid(bytes: Uint8Array, fragments: string[], label = 'x.npy'): QuadraError {
  const error = expectQuadraErrorSync(() => parseNpy(bytes, label), 'INVALID_FILE', ...fragments);
  expect(error.message.startsWith(`${label}: `)).toBe(true);
  expect(error.details).toEqual({ file: label });
  return error;
}

describe('parseNpy on NumPy-written files', () => {
  it("reads '<f4' 1-D", () => {
    const array = parseNpy(fixture('f4-1d.npy'), 'f4-1d.npy');
    expect(array.shape).toEqual([5]);
    expect(array.sourceDtype).toBe('<f4');
    expect(array.data).toEqual(new Float32Array([1.5, -2.25, 0, 3e-4, 65504]));
  });

  it("reads '<f8' 2-D and converts to float32", () => {
    const array = parseNpy(fixture('f8-2d.npy'), 'f8-2d.npy');
    expect(array.shape).toEqual([2, 3]);
    expect(array.sourceDtype).toBe('<f8');
    expect(array.data).toEqual(new Float32Array([1, 2.5, -3, 0.1, 1e-10, 123456.789]));
  });

  it('reads a version 2.0 header', () => {
    const array = parseNpy(fixture('f4-2d-v2.npy'), 'v2.npy');
    expect(array.shape).toEqual([2, 3]);
    expect(array.data).toEqual(new Float32Array([0, 0.25, 0.5, 0.75, 1, 1.25]));
  });

  it('reads a version 3.0 header', () => {
    const array = parseNpy(fixture('f4-1d-v3.npy'), 'v3.npy');
    expect(array.shape).toEqual([2]);
    expect(array.data).toEqual(new Float32Array([7, 8]));
  });

  it('rejects fortran order', () => {
    expectInvalid(fixture('fortran.npy'), ['Fortran', 'expected C order'], 'fortran.npy');
  });

  it("rejects big-endian '>f4'", () => {
    expectInvalid(fixture('big-endian.npy'), ["'>f4'", "expected little-endian float32 '<f4' or float64 '<f8'"]);
  });

  it("rejects integer '<i8'", () => {
    expectInvalid(fixture('int64.npy'), ["'<i8'", "expected little-endian float32 '<f4' or float64 '<f8'"]);
  });

  it('rejects 0-D and 3-D arrays', () => {
    expectInvalid(fixture('f4-0d.npy'), ['0-D', 'expected a 1-D or 2-D array']);
    expectInvalid(fixture('f4-3d.npy'), ['3-D', '(2, 1, 2)', 'expected a 1-D or 2-D array']);
  });
});

describe('parseNpy validation', () => {
  const goodHeader = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const twoFloats = new Uint8Array(new Float32Array([1, 2]).buffer);

  it('accepts a well-formed hand-built file, also from an unaligned subarray', () => {
    const bytes = npyFile(goodHeader, twoFloats);
    expect(parseNpy(bytes, 'x.npy').data).toEqual(new Float32Array([1, 2]));
    const outer = new Uint8Array(bytes.length + 1);
    outer.set(bytes, 1);
    expect(parseNpy(outer.subarray(1), 'x.npy').data).toEqual(new Float32Array([1, 2]));
  });

  it('rejects a bad magic', () => {
    expectInvalid(new TextEncoder().encode('col1,col2\n1,2\n'), ['not a .npy file', 'magic']);
    expectInvalid(new Uint8Array(3), ['not a .npy file']);
  });

  it('rejects an unknown version', () => {
    expectInvalid(npyFile(goodHeader, twoFloats, [4, 0]), ['version 4.0', 'expected 1.0, 2.0 or 3.0']);
    expectInvalid(npyFile(goodHeader, twoFloats, [1, 1]), ['version 1.1']);
  });

  it('rejects a truncated header', () => {
    const bytes = npyFile(goodHeader, twoFloats);
    expectInvalid(bytes.subarray(0, 7), ['truncated']);
    expectInvalid(bytes.subarray(0, 9), ['truncated']);
    expectInvalid(bytes.subarray(0, 30), ['truncated', `declares ${goodHeader.length} bytes`]);
  });

  it.each([
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), ",
    "{'descr': '<f4' 'fortran_order': False}",
    "{'descr': <f4, 'fortran_order': False, 'shape': (2,)}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} extra",
    '',
  ])('rejects an unparsable header dict: %s', (header) => {
    expectInvalid(npyFile(header, twoFloats), ['header dict could not be parsed']);
  });

  it('rejects a header that is not a dict or lacks keys', () => {
    expectInvalid(npyFile('(1, 2)', twoFloats), ['not a dict']);
    expectInvalid(npyFile("{'fortran_order': False, 'shape': (2,)}", twoFloats), ['"descr" is missing']);
    expectInvalid(npyFile("{'descr': '<f4', 'shape': (2,)}", twoFloats), ['"fortran_order" is missing']);
    expectInvalid(npyFile("{'descr': '<f4', 'fortran_order': False}", twoFloats), ['"shape" is missing']);
  });

  it.each(["'<f2'", "'|b1'", "'<i8'", "'>f8'", "'<c8'"])('rejects dtype %s', (descr) => {
    expectInvalid(npyFile(`{'descr': ${descr}, 'fortran_order': False, 'shape': (2,), }`, twoFloats), [
      descr,
      "expected little-endian float32 '<f4' or float64 '<f8'",
    ]);
  });

  it('parses shapes (5,), (2, 3) and the empty 2-D shape', () => {
    const five = npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", new Uint8Array(20));
    expect(parseNpy(five, 'x.npy').shape).toEqual([5]);
    const empty = npyFile("{'descr':'<f8','fortran_order':False,'shape':(0, 3)}");
    expect(parseNpy(empty, 'x.npy')).toEqual({ shape: [0, 3], data: new Float32Array(0), sourceDtype: '<f8' });
  });

  it('rejects a 0-D shape ()', () => {
    expectInvalid(npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", new Uint8Array(4)), ['0-D']);
  });

  it('rejects a data length that does not match the shape', () => {
    expectInvalid(npyFile("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", twoFloats), [
      'data is 8 bytes',
      "expected 24 bytes for dtype '<f8' and shape (3)",
    ]);
    expectInvalid(npyFile(goodHeader, new Uint8Array(12)), ['data is 12 bytes', 'expected 8 bytes']);
  });
});

describe('serializeNpy', () => {
  it('writes the exact NumPy 1.0 layout with data starting at a multiple of 64', () => {
    for (const [data, shape] of [
      [new Float32Array([1, 2.5, -3]), [3]],
      [new Float32Array(12).map((_, i) => i / 7), [3, 4]],
      [new Float32Array(0), [0, 123456]],
    ] as const) {
      const bytes = serializeNpy(data, [...shape]);
      expect([...bytes.subarray(0, 8)]).toEqual([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
      const headerLength = new DataView(bytes.buffer).getUint16(8, true);
      const dataStart = 10 + headerLength;
      expect(dataStart % 64).toBe(0);
      const header = new TextDecoder().decode(bytes.subarray(10, dataStart));
      expect(header.endsWith('\n')).toBe(true);
      expect(header.trimEnd()).toBe(
        `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`}, }`,
      );
      expect(bytes.length).toBe(dataStart + data.length * 4);
      const back = parseNpy(bytes, 'round.npy');
      expect(back).toEqual({ shape: [...shape], data, sourceDtype: '<f4' });
    }
  });

  it('round-trips float32 values bit-exactly', () => {
    const data = new Float32Array([0.1, -0, 1e-45, 3.4028234663852886e38, -123.456]);
    const back = parseNpy(serializeNpy(data, [5]), 'round.npy');
    expect(new Uint32Array(back.data.buffer)).toEqual(new Uint32Array(data.buffer));
  });

  it('matches the bytes NumPy writes for the same array', () => {
    const ours = serializeNpy(new Float32Array([1.5, -2.25, 0, 3e-4, 65504]), [5]);
    expect(ours).toEqual(fixture('f4-1d.npy'));
  });

  it('rejects shapes that are not 1-D/2-D or do not match the data', () => {
    const cases: [Float32Array, number[], string][] = [
      [new Float32Array(1), [], '0-D'],
      [new Float32Array(8), [2, 2, 2], '3-D'],
      [new Float32Array(5), [2, 3], 'holds 6 values but data has 5'],
      [new Float32Array(2), [-1, -2], 'non-negative integers'],
    ];
    for (const [data, shape, fragment] of cases) expectQuadraErrorSync(() => serializeNpy(data, shape), 'INVALID_ARGUMENT', fragment);
  });
});
