import { describe, expect, it } from 'vitest';
import { QuadraError } from '../../src-shared/errors';
import {
  bfloat16BitsToFloat32,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  parseSafetensors,
  serializeSafetensors,
  type ParseOptions,
} from '../../src-main/engine/safetensors';
import { safetensorsBytes } from '../helpers/engine';

const FILE = 'model.safetensors';

/** Builds a file from a raw header (object or text) and a byte buffer, with no padding. */
function buildFile(header: unknown, buffer: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  return safetensorsBytes(json, buffer);
}


function f32Bytes(values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  values.forEach((value, i) => view.setFloat32(i * 4, value, true));
  return out;
}

function u16Bytes(values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  values.forEach((value, i) => view.setUint16(i * 2, value, true));
  return out;
}

function catchError(action: () => unknown): QuadraError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(QuadraError);
    return error as QuadraError;
  }
  throw new Error('expected an error, none was thrown');
}

function expectInvalid(
  bytes: Uint8Array,
  fragments: string[],
  tensor?: string,
  options?: ParseOptions,
): QuadraError {
  const error = catchError(() => parseSafetensors(bytes, FILE, options));
  expect(error.code).toBe('INVALID_FILE');
  expect(error.message.startsWith(`${FILE}: `)).toBe(true);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
  expect(error.details).toEqual(tensor === undefined ? { file: FILE } : { file: FILE, tensor });
  return error;
}

describe('serializeSafetensors / parseSafetensors round trip', () => {
  it('round-trips F32 bit-exactly, keeps order and metadata', () => {
    const weight = new Float32Array([1.5, -0, 3.4028234663852886e38, 1e-45, -7.25, 0.1]);
    const bias = new Float32Array([0.3, -0.7]);
    const bytes = serializeSafetensors(
      [
        { name: 'spike_network.fc1.weight', shape: [2, 3], data: weight },
        { name: 'spike_network.fc1.bias', shape: [2], data: bias },
        { name: 'scalar', shape: [], data: new Float32Array([42]) },
        { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
      ],
      { format: 'pt', epoch: '3' },
    );
    const file = parseSafetensors(bytes, FILE);
    expect([...file.tensors.keys()]).toEqual([
      'spike_network.fc1.weight',
      'spike_network.fc1.bias',
      'scalar',
      'empty',
    ]);
    expect(file.metadata).toEqual({ format: 'pt', epoch: '3' });
    const parsedWeight = file.tensors.get('spike_network.fc1.weight');
    expect(parsedWeight?.dtype).toBe('F32');
    expect(parsedWeight?.shape).toEqual([2, 3]);
    expect(new Uint32Array(parsedWeight!.data.buffer)).toEqual(new Uint32Array(weight.buffer));
    expect(file.tensors.get('spike_network.fc1.bias')?.data).toEqual(bias);
    expect(file.tensors.get('scalar')).toEqual({ dtype: 'F32', shape: [], data: new Float32Array([42]) });
    expect(file.tensors.get('empty')).toEqual({ dtype: 'F32', shape: [0, 4], data: new Float32Array(0) });
  });

  it('keeps header order for integer-like tensor names', () => {
    const bytes = serializeSafetensors(
      [
        { name: 'b', shape: [1], data: new Float32Array([1]) },
        { name: '10', shape: [1], data: new Float32Array([2]) },
        { name: '2', shape: [1], data: new Float32Array([3]) },
      ],
      {},
    );
    const file = parseSafetensors(bytes, FILE);
    expect([...file.tensors.keys()]).toEqual(['b', '10', '2']);
    expect(file.tensors.get('2')?.data).toEqual(new Float32Array([3]));
  });

  it('pads the header with spaces so the buffer starts 8-byte aligned, and omits empty metadata', () => {
    for (let nameLength = 1; nameLength <= 9; nameLength++) {
      const name = 'x'.repeat(nameLength);
      const bytes = serializeSafetensors([{ name, shape: [1], data: new Float32Array([1]) }], {});
      const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      expect((8 + headerLength) % 8).toBe(0);
      expect(bytes.length).toBe(8 + headerLength + 4);
      const text = new TextDecoder().decode(bytes.subarray(8, 8 + headerLength));
      expect(text).toMatch(/^\{.*\} *$/);
      expect(text).not.toContain('__metadata__');
      expect(JSON.parse(text)).toEqual({ [name]: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } });
    }
  });

  it('lays tensors out little-endian in the given order', () => {
    const bytes = serializeSafetensors(
      [
        { name: 'a', shape: [1], data: new Float32Array([1]) },
        { name: 'b', shape: [1], data: new Float32Array([-2]) },
      ],
      { note: 'x' },
    );
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const buffer = bytes.subarray(8 + headerLength);
    expect([...buffer]).toEqual([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0]);
  });

  it('round-trips F16 within half-precision rounding', () => {
    const values = new Float32Array([0, -0, 1, -1, 0.1, 3.14159, 65504, -65504, 6e-8, 1e-4, 1234.5678]);
    const bytes = serializeSafetensors([{ name: 'w', shape: [values.length], data: values }], {}, { dtype: 'F16' });
    const tensor = parseSafetensors(bytes, FILE).tensors.get('w')!;
    expect(tensor.dtype).toBe('F16');
    for (const [i, value] of values.entries()) {
      // Half precision has 11 significant bits; subnormals have an absolute step of 2^-24.
      const tolerance = Math.max(Math.abs(value) * 2 ** -11, 2 ** -25);
      expect(Math.abs(tensor.data[i]! - value)).toBeLessThanOrEqual(tolerance);
    }
    expect(Object.is(tensor.data[1], -0)).toBe(true);
    expect(tensor.data[6]).toBe(65504);
  });

  it('returns fresh copies, never views of the input', () => {
    const bytes = serializeSafetensors([{ name: 'w', shape: [2], data: new Float32Array([1, 2]) }], {});
    const tensor = parseSafetensors(bytes, FILE).tensors.get('w')!;
    expect(tensor.data.buffer).not.toBe(bytes.buffer);
    bytes.fill(0);
    expect(tensor.data).toEqual(new Float32Array([1, 2]));
  });

  it('decodes from an unaligned subarray', () => {
    const inner = serializeSafetensors([{ name: 'w', shape: [3], data: new Float32Array([1.25, -3, 9]) }], {});
    const outer = new Uint8Array(inner.length + 3);
    outer.set(inner, 3);
    const tensor = parseSafetensors(outer.subarray(3), FILE).tensors.get('w')!;
    expect(tensor.data).toEqual(new Float32Array([1.25, -3, 9]));
  });

  it('decodes BF16 known bit patterns', () => {
    const bits = [0x3f80, 0xc000, 0x0000, 0x8000, 0x4049, 0x7f7f, 0x0001];
    const bytes = buildFile({ b: { dtype: 'BF16', shape: [7], data_offsets: [0, 14] } }, u16Bytes(bits));
    const tensor = parseSafetensors(bytes, FILE).tensors.get('b')!;
    expect(tensor.dtype).toBe('BF16');
    expect([...tensor.data]).toEqual([1, -2, 0, -0, 3.140625, 3.3895313892515355e38, 9.183549615799121e-41]);
  });

  it('tolerates holes in the buffer and reads tensors by their offsets', () => {
    const buffer = f32Bytes([9, 1, 9, 2]);
    const bytes = buildFile(
      {
        second: { dtype: 'F32', shape: [1], data_offsets: [12, 16] },
        first: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
      },
      buffer,
    );
    const file = parseSafetensors(bytes, FILE);
    expect([...file.tensors.keys()]).toEqual(['second', 'first']);
    expect(file.tensors.get('first')?.data).toEqual(new Float32Array([1]));
    expect(file.tensors.get('second')?.data).toEqual(new Float32Array([2]));
  });

  it('accepts non-finite values when rejectNonFinite is false', () => {
    const bytes = buildFile({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, f32Bytes([NaN, -Infinity]));
    const data = parseSafetensors(bytes, FILE, { rejectNonFinite: false }).tensors.get('w')!.data;
    expect(Number.isNaN(data[0])).toBe(true);
    expect(data[1]).toBe(-Infinity);
  });
});

describe('parseSafetensors validation', () => {
  it('rejects a file shorter than 8 bytes', () => {
    expectInvalid(new Uint8Array(5), ['5 bytes', 'at least 8']);
  });

  it('rejects a header length above maxHeaderBytes', () => {
    const bytes = buildFile({ w: { dtype: 'F32', shape: [0], data_offsets: [0, 0] } });
    expectInvalid(bytes, ['exceeds the limit of 16 bytes'], undefined, { maxHeaderBytes: 16 });
  });

  it('rejects a header length beyond the end of the file', () => {
    const bytes = new Uint8Array(20);
    new DataView(bytes.buffer).setBigUint64(0, 2n ** 63n, true);
    expectInvalid(bytes, ['header length 9223372036854775808', 'exceeds the limit']);
    new DataView(bytes.buffer).setBigUint64(0, 13n, true);
    expectInvalid(bytes, ['header length 13 bytes', 'exceeds the 12 bytes', 'truncated']);
  });

  it('rejects a header that is not UTF-8', () => {
    expectInvalid(safetensorsBytes(new Uint8Array([0x7b, 0xff, 0x7d]), new Uint8Array(0)), ['not valid UTF-8 JSON']);
  });

  it('rejects a header that is not JSON', () => {
    expectInvalid(buildFile('{"w": {'), ['not valid UTF-8 JSON']);
  });

  it('rejects a header that is not a JSON object', () => {
    expectInvalid(buildFile('[1, 2]'), ['header is an array', 'expected a JSON object']);
    expectInvalid(buildFile('null'), ['header is null']);
  });

  it('rejects __metadata__ that is not an object of strings', () => {
    expectInvalid(buildFile({ __metadata__: ['a'] }), ['"__metadata__" is an array', 'string values']);
    expectInvalid(buildFile({ __metadata__: { epoch: 3 } }), ['"__metadata__" field "epoch" is number 3', 'expected a string']);
  });

  it('rejects a tensor entry that is not an object', () => {
    expectInvalid(buildFile({ 'fc1.weight': 7 }), ['tensor "fc1.weight"', 'number 7', 'expected an object'], 'fc1.weight');
  });

  it('rejects a missing dtype', () => {
    expectInvalid(
      buildFile({ w: { shape: [0], data_offsets: [0, 0] } }),
      ['tensor "w" dtype is missing', 'expected one of F32, F16, BF16'],
      'w',
    );
  });

  it.each(['F64', 'I64', 'BOOL', 'U8', 'f32'])('rejects dtype %s and names it', (dtype) => {
    expectInvalid(
      buildFile({ w: { dtype, shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)),
      [`tensor "w" dtype is ${dtype}`, 'expected one of F32, F16, BF16'],
      'w',
    );
  });

  it.each([
    ['missing', undefined],
    ['not an array', 3],
    ['negative', [-1]],
    ['fractional', [1.5]],
    ['a string dim', ['2']],
    ['unsafe integer', [2 ** 53]],
  ])('rejects a shape that is %s', (_label, shape) => {
    expectInvalid(
      buildFile({ w: { dtype: 'F32', shape, data_offsets: [0, 4] } }, new Uint8Array(4)),
      ['tensor "w" shape', 'expected an array of non-negative integers'],
      'w',
    );
  });

  it.each([
    ['missing', undefined],
    ['one number', [0]],
    ['three numbers', [0, 4, 8]],
    ['not integers', [0, 3.5]],
    ['reversed', [4, 0]],
    ['negative', [-4, 0]],
    ['past the buffer', [4, 12]],
  ])('rejects data_offsets that are %s', (_label, offsets) => {
    expectInvalid(
      buildFile({ w: { dtype: 'F32', shape: [1], data_offsets: offsets } }, new Uint8Array(8)),
      ['tensor "w" data_offsets', '0 <= begin <= end <= 8'],
      'w',
    );
  });

  it('rejects data_offsets that do not match dtype and shape', () => {
    const bytes = buildFile(
      { 'spike_network.fc1.weight': { dtype: 'F32', shape: [5, 6], data_offsets: [0, 100] } },
      new Uint8Array(120),
    );
    const error = expectInvalid(bytes, [], 'spike_network.fc1.weight');
    expect(error.message).toBe(
      'model.safetensors: tensor "spike_network.fc1.weight" data_offsets [0, 100] do not match dtype F32 and shape [5,6] (expected 120 bytes)',
    );
    expectInvalid(
      buildFile({ h: { dtype: 'F16', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)),
      ['tensor "h"', 'dtype F16 and shape [3] (expected 6 bytes)'],
      'h',
    );
  });

  it('rejects overlapping tensors and names both', () => {
    const bytes = buildFile(
      {
        big: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
        small: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
      },
      new Uint8Array(16),
    );
    expectInvalid(bytes, ['"big" [0, 16]', '"small" [4, 8]', 'overlapping'], 'small');
  });

  it('accepts adjacent ranges and empty tensors sharing an offset', () => {
    const bytes = buildFile(
      {
        a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
        b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
        empty: { dtype: 'F32', shape: [0], data_offsets: [4, 4] },
      },
      f32Bytes([1, 2]),
    );
    expect(parseSafetensors(bytes, FILE).tensors.size).toBe(3);
  });

  it('rejects a tensor name that appears twice in the header', () => {
    const header = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
    expectInvalid(buildFile(header, new Uint8Array(8)), ['tensor "w" appears more than once'], 'w');
  });

  it.each([
    ['NaN', NaN],
    ['Infinity', Infinity],
    ['-Infinity', -Infinity],
  ])('rejects %s and names the tensor and flat index', (_label, bad) => {
    const bytes = buildFile(
      {
        ok: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
        'layer.weight': { dtype: 'F32', shape: [2, 2], data_offsets: [4, 20] },
      },
      f32Bytes([1, 0, 1, bad, bad]),
    );
    expectInvalid(bytes, ['tensor "layer.weight"', 'at flat index 2', 'finite'], 'layer.weight');
  });

  it('rejects non-finite F16 and BF16 values', () => {
    expectInvalid(
      buildFile({ h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] } }, u16Bytes([0x3c00, 0x7c00])),
      ['tensor "h"', 'flat index 1'],
      'h',
    );
    expectInvalid(
      buildFile({ b: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] } }, u16Bytes([0x7fc0])),
      ['tensor "b"', 'flat index 0'],
      'b',
    );
  });
});

describe('serializeSafetensors argument checks', () => {
  function expectInvalidArgument(action: () => unknown, fragments: string[]): void {
    const error = catchError(action);
    expect(error.code).toBe('INVALID_ARGUMENT');
    for (const fragment of fragments) expect(error.message).toContain(fragment);
  }

  it('rejects duplicate names', () => {
    const tensor = { name: 'w', shape: [1], data: new Float32Array(1) };
    expectInvalidArgument(() => serializeSafetensors([tensor, tensor], {}), ['tensor "w"', 'more than once']);
  });

  it('rejects a shape that does not match the data length', () => {
    expectInvalidArgument(
      () => serializeSafetensors([{ name: 'w', shape: [2, 3], data: new Float32Array(5) }], {}),
      ['tensor "w"', '[2,3]', '6 elements', '5 values'],
    );
  });

  it('rejects finite values outside the F16 range instead of writing Inf', () => {
    const data = new Float32Array([1, 65504, -65505]);
    expectInvalidArgument(
      () => serializeSafetensors([{ name: 'big', shape: [3], data }], {}, { dtype: 'F16' }),
      ['tensor "big"', '-65505', 'flat index 2', 'F16'],
    );
    expect(() => serializeSafetensors([{ name: 'big', shape: [3], data }], {})).not.toThrow();
  });
});

describe('float16 conversion', () => {
  it.each([
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff],
    [-65504, 0xfbff],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
    [3 * 2 ** -24, 0x0003],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [65520, 0x7c00], // halfway to the next step rounds to even: overflow
    [65519, 0x7bff],
    [1e10, 0x7c00],
    [-1e10, 0xfc00],
    [2 ** -25, 0x0000], // halfway to the smallest subnormal: ties to even (0)
    [2 ** -25 + 2 ** -40, 0x0001],
    [3 * 2 ** -25, 0x0002], // 1.5 steps: ties to even (2)
    [5 * 2 ** -25, 0x0002], // 2.5 steps: ties to even (2)
    [1e-10, 0x0000],
    [-1e-10, 0x8000],
    [1 + 2 ** -11, 0x3c00], // tie between 1 and next: even (1)
    [1 + 3 * 2 ** -11, 0x3c02], // tie between odd and even mantissa: up to even
    [1 + 2 ** -11 + 2 ** -20, 0x3c01],
    [2047.5, 0x6800], // step is 1 here: tie between 2047 (odd) and 2048, carries into the exponent
    [2046.5, 0x67fe], // tie between 2046 (even) and 2047
  ])('float32ToFloat16Bits(%s) = %s', (value, bits) => {
    expect(float32ToFloat16Bits(value)).toBe(bits);
  });

  it('keeps NaN a NaN', () => {
    const bits = float32ToFloat16Bits(NaN);
    expect(bits & 0x7c00).toBe(0x7c00);
    expect(bits & 0x03ff).not.toBe(0);
    expect(Number.isNaN(float16BitsToFloat32(bits))).toBe(true);
  });

  it.each([
    [0x0000, 0],
    [0x8000, -0],
    [0x3c00, 1],
    [0xc000, -2],
    [0x7bff, 65504],
    [0x0001, 2 ** -24],
    [0x03ff, 2 ** -14 - 2 ** -24],
    [0x0400, 2 ** -14],
    [0x3555, 0.333251953125],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ])('float16BitsToFloat32(%s) = %s', (bits, value) => {
    expect(Object.is(float16BitsToFloat32(bits), value)).toBe(true);
  });

  it('decodes NaN bit patterns to NaN', () => {
    expect(Number.isNaN(float16BitsToFloat32(0x7e00))).toBe(true);
    expect(Number.isNaN(float16BitsToFloat32(0xfc01))).toBe(true);
  });

  it('round-trips every finite half value exactly', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      if ((bits & 0x7c00) === 0x7c00) continue;
      const value = float16BitsToFloat32(bits);
      if (float32ToFloat16Bits(value) !== bits) {
        expect(float32ToFloat16Bits(value)).toBe(bits);
      }
    }
    expect(float32ToFloat16Bits(float16BitsToFloat32(0x1234))).toBe(0x1234);
  });

  it('decodes bfloat16 bit patterns', () => {
    expect(bfloat16BitsToFloat32(0x3f80)).toBe(1);
    expect(bfloat16BitsToFloat32(0xbfc0)).toBe(-1.5);
    expect(bfloat16BitsToFloat32(0x4049)).toBe(3.140625);
    expect(Object.is(bfloat16BitsToFloat32(0x8000), -0)).toBe(true);
    expect(bfloat16BitsToFloat32(0x7f80)).toBe(Infinity);
    expect(bfloat16BitsToFloat32(0xff80)).toBe(-Infinity);
    expect(Number.isNaN(bfloat16BitsToFloat32(0x7fc0))).toBe(true);
  });
});
