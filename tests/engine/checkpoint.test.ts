import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuadraError } from '../../src-shared/errors';
import { decodeCheckpoint, readCheckpointFile, writeFileAtomic } from '../../src-main/engine/checkpoint';
import type { OscillatorEngine } from '../../src-main/engine/engine';
import { Rng } from '../../src-main/engine/random';
import { float16BitsToFloat32, float32ToFloat16Bits, parseSafetensors, serializeSafetensors, type TensorToWrite } from '../../src-main/engine/safetensors';
import { createEngine, expectSameState, firstBitDifference, readFixture, safetensorsBytes, SMALL_MODEL, thrownBy } from '../helpers/engine';

const LABEL = 'runs/seven/step-3.safetensors';
const F = SMALL_MODEL.fieldSize!;
const H = SMALL_MODEL.hiddenSize!;
const CONFIG = { model: SMALL_MODEL, seed: 21 };

function batch(seed: number, rows = 5): Float32Array {
  return new Rng(seed).fillNormal(new Float32Array(rows * F), 1);
}

const engines: OscillatorEngine[] = [];
async function engine(config: Parameters<typeof createEngine>[0] = CONFIG): Promise<OscillatorEngine> {
  const e = await createEngine(config);
  engines.push(e);
  return e;
}

/** An engine with a history: 3 training steps (dropout on) and a moved field state. */
async function trained(config: Parameters<typeof createEngine>[0] = CONFIG, seed = 1): Promise<OscillatorEngine> {
  const e = await engine(config);
  for (let i = 0; i < 3; i++) e.trainStep(batch(seed + i));
  e.updateField(batch(seed + 10), 5, 0.5);
  return e;
}


afterAll(() => {
  for (const e of engines) e.dispose();
});

describe('round trip', () => {
  it('restores parameters, Adam moments, step counts and field state bit for bit, and resumes identically', async () => {
    const a = await trained();
    const bytes = a.toCheckpoint();
    const contents = decodeCheckpoint(bytes, LABEL);
    expect(contents.origin).toBe('quadra');
    expect(contents.step).toBe(3);
    expect(contents.model).toEqual(a.config.model);
    expect(contents.engineConfig).toEqual(a.config);
    expect(contents.metadata).toMatchObject({ format: 'quadra-matrix', step: '3', optimizer_field_step: '3', optimizer_spike_step: '3' });

    const b = await engine();
    // A fresh engine of the same seed starts elsewhere: the comparison below can fail.
    expect(firstBitDifference(b.getState().parameters, a.getState().parameters)).not.toBe(-1);
    expect(firstBitDifference(b.fieldState, a.fieldState)).not.toBe(-1);
    const tensors = tf.memory().numTensors;
    b.loadCheckpoint(contents);
    expect(tf.memory().numTensors).toBe(tensors); // the old tensors were replaced, not kept
    expectSameState(b.getState(), a.getState());

    const aLosses: number[] = [];
    const bLosses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const x = batch(100 + i);
      aLosses.push(a.trainStep(x).loss);
      bLosses.push(b.trainStep(x).loss);
    }
    expect(bLosses).toEqual(aLosses);
    expectSameState(b.getState(), a.getState());
  });

  it('survives a trip through the file system', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'quadra-ckpt-'));
    try {
      const a = await trained();
      const file = path.join(dir, 'a.safetensors');
      await writeFileAtomic(file, a.toCheckpoint());
      const { contents } = await readCheckpointFile(file);
      const b = await engine();
      b.loadCheckpoint(contents);
      expectSameState(b.getState(), a.getState());
      const missing = path.join(dir, 'missing.safetensors');
      const error = await thrownBy(() => readCheckpointFile(missing));
      expect(error).toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining(missing) });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('F16 export', () => {
  it('holds weights rounded to float16 and no optimizer tensors', async () => {
    const a = await trained();
    const original = a.getState();
    const bytes = a.toCheckpoint({ dtype: 'F16' });
    const file = parseSafetensors(bytes, LABEL);
    expect([...file.tensors.keys()].filter((name) => name.startsWith('optimizer.'))).toEqual([]);
    expect([...file.tensors.values()].every((t) => t.dtype === 'F16')).toBe(true);
    // Two bytes per value: the parameters and the field state, nothing else.
    const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    expect(bytes.length - 8 - headerLength).toBe(2 * (a.layout.total + F));

    const contents = decodeCheckpoint(bytes, LABEL);
    expect(contents.optimizer).toBeNull();
    expect(contents.metadata.optimizer_field_step).toBeUndefined();
    expect(contents.step).toBe(3);
    const check = (label: string, decoded: Float32Array, source: Float32Array) => {
      expect(decoded.length, label).toBe(source.length);
      let changed = 0;
      for (let i = 0; i < source.length; i++) {
        const o = source[i]!;
        const d = decoded[i]!;
        // Round to nearest: half an ulp of float16, 2^-11 relative for normals (|o| ≥ 2^-14),
        // half the subnormal spacing 2^-24 below that.
        expect(Math.abs(d - o), `${label}[${i}] ${o} → ${d}`).toBeLessThanOrEqual(Math.max(2 ** -11 * Math.abs(o), 2 ** -25));
        expect(d, `${label}[${i}]`).toBe(float16BitsToFloat32(float32ToFloat16Bits(o)));
        if (d !== o) changed++;
      }
      expect(changed, `${label}: some values were actually rounded`).toBeGreaterThan(0);
    };
    check('parameters', contents.parameters, original.parameters);
    check('field_state', contents.fieldState!, original.fieldState);

    // Loading weights only keeps the live optimiser state.
    const b = await trained(CONFIG, 50);
    const before = b.getState();
    b.loadCheckpoint(contents);
    const after = b.getState();
    expect(firstBitDifference(after.parameters, contents.parameters)).toBe(-1);
    expect(firstBitDifference(after.optimizer.m, before.optimizer.m)).toBe(-1);
    expect(firstBitDifference(after.optimizer.v, before.optimizer.v)).toBe(-1);
  });
});

describe('PyTorch state_dict import', () => {
  it('decodes a file written by PyTorch as weights only and loads just the weights', async () => {
    const contents = decodeCheckpoint(readFixture('pytorch/small.safetensors'), 'small.safetensors');
    expect(contents.origin).toBe('pytorch');
    expect(contents.optimizer).toBeNull();
    expect(contents.fieldState).toBeNull();
    expect(contents.step).toBeNull();
    expect(contents.engineConfig).toBeNull();
    expect(contents.model).toMatchObject({ fieldSize: 6, hiddenSize: 8, spikingHiddenSize: 5 });
    const live = await trained();
    const before = live.getState();
    live.loadCheckpoint(contents);
    const after = live.getState();
    expect(firstBitDifference(after.parameters, contents.parameters)).toBe(-1);
    expect(firstBitDifference(after.parameters, before.parameters)).not.toBe(-1);
    expect(firstBitDifference(after.optimizer.m, before.optimizer.m)).toBe(-1);
    expect(firstBitDifference(after.fieldState, before.fieldState)).toBe(-1);
    expect(after.step).toBe(before.step);
  });
});

describe('malformed checkpoints', () => {
  let good: Uint8Array;
  let live: OscillatorEngine;

  beforeAll(async () => {
    good = (await trained(CONFIG, 30)).toCheckpoint();
    live = await trained(CONFIG, 60);
  });

  /** Re-serialises `bytes` after `edit` changes its tensor list or metadata (data decoded to float32). */
  function rebuild(bytes: Uint8Array, edit: (tensors: TensorToWrite[], metadata: Record<string, string>) => void): Uint8Array {
    const file = parseSafetensors(bytes, 'source', { rejectNonFinite: false });
    const tensors = [...file.tensors].map(([name, t]) => ({ name, shape: [...t.shape], data: Float32Array.from(t.data) }));
    const metadata = { ...file.metadata };
    edit(tensors, metadata);
    return serializeSafetensors(tensors, metadata);
  }

  function find(tensors: TensorToWrite[], name: string): TensorToWrite {
    const t = tensors.find((candidate) => candidate.name === name);
    if (!t) throw new Error(`no tensor ${name}`);
    return t;
  }

  /** Rewrites the JSON header in place of the old one, keeping the byte buffer as it is. */
  function withHeader(bytes: Uint8Array, edit: (header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>, bufferLength: number) => void): Uint8Array {
    const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Parameters<typeof edit>[0];
    const buffer = bytes.subarray(8 + headerLength);
    edit(header, buffer.length);
    return safetensorsBytes(new TextEncoder().encode(JSON.stringify(header)), buffer);
  }


  /** Decoding (and, were it to succeed, loading) fails with `code`; the live engine stays as it was. */
  async function expectRejected(bytes: Uint8Array, code: string, ...fragments: string[]): Promise<QuadraError> {
    const before = live.getState();
    const tensors = tf.memory().numTensors;
    const error = await thrownBy(() => live.loadCheckpoint(decodeCheckpoint(bytes, LABEL)));
    expect(tf.memory().numTensors).toBe(tensors);
    expect(error).toBeInstanceOf(QuadraError);
    const quadra = error as QuadraError;
    expect(quadra.code, quadra.message).toBe(code);
    expect(quadra.message.startsWith(`${LABEL}: `), quadra.message).toBe(true);
    for (const fragment of fragments) expect(quadra.message).toContain(fragment);
    expectSameState(live.getState(), before);
    return quadra;
  }

  it('the unmodified file loads (so each failure below comes from its one defect)', () => {
    expect(() => decodeCheckpoint(rebuild(good, () => {}), LABEL)).not.toThrow();
    expect(() => decodeCheckpoint(withHeader(good, () => {}), LABEL)).not.toThrow();
  });

  it('a file shorter than the 8-byte length prefix', async () => {
    await expectRejected(good.subarray(0, 5), 'INVALID_FILE', '5 bytes', 'at least 8');
    await expectRejected(new Uint8Array(0), 'INVALID_FILE', '0 bytes');
  });

  it('a header length beyond the end of the file', async () => {
    const bytes = Uint8Array.from(good);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(bytes.length), true);
    await expectRejected(bytes, 'INVALID_FILE', `header length ${bytes.length}`, 'truncated');
    await expectRejected(good.subarray(0, 100), 'INVALID_FILE', 'header length');
  });

  it('a header that is not JSON', async () => {
    await expectRejected(safetensorsBytes(new TextEncoder().encode('{"field_network.encoder.0.weight": [1, 2'), new Uint8Array(16)), 'INVALID_FILE', 'not valid UTF-8 JSON');
    await expectRejected(safetensorsBytes(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), new Uint8Array(0)), 'INVALID_FILE', 'not valid UTF-8 JSON');
  });

  it('data offsets outside the byte buffer', async () => {
    const bytes = withHeader(good, (header, bufferLength) => {
      header['spike_network.decay']!.data_offsets = [bufferLength, bufferLength + 4];
    });
    const error = await expectRejected(bytes, 'INVALID_FILE', '"spike_network.decay"', 'data_offsets');
    expect(error.details).toMatchObject({ tensor: 'spike_network.decay' });
  });

  it('overlapping tensors', async () => {
    const bytes = withHeader(good, (header) => {
      header['spike_network.decay']!.data_offsets = header['spike_network.threshold']!.data_offsets;
    });
    await expectRejected(bytes, 'INVALID_FILE', 'overlapping', '"spike_network.threshold"', '"spike_network.decay"');
  });

  it.each(['F64', 'I32', 'U8'])('an unsupported dtype (%s)', async (dtype) => {
    const bytes = withHeader(good, (header) => {
      header['field_network.encoder.0.bias']!.dtype = dtype;
    });
    await expectRejected(bytes, 'INVALID_FILE', '"field_network.encoder.0.bias"', `dtype is ${dtype}`);
  });

  it('a transposed weight: SHAPE_MISMATCH naming the tensor and both shapes', async () => {
    const name = 'field_network.encoder.4.weight';
    const bytes = rebuild(good, (tensors) => {
      const t = find(tensors, name);
      const [rows, cols] = t.shape as [number, number];
      const transposed = new Float32Array(t.data.length);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) transposed[c * rows + r] = t.data[r * cols + c]!;
      t.shape = [cols, rows];
      t.data = transposed;
    });
    const error = await expectRejected(bytes, 'SHAPE_MISMATCH', `"${name}"`, `[${H}, ${2 * H}]`, `[${2 * H}, ${H}]`);
    expect(error.details).toMatchObject({ tensor: name, expected: [2 * H, H], found: [H, 2 * H] });
  });

  it('a wrongly shaped optimizer moment or field state', async () => {
    const moment = 'optimizer.exp_avg.spike_network.fc2.weight';
    await expectRejected(
      rebuild(good, (tensors) => {
        find(tensors, moment).shape = [25];
      }),
      'SHAPE_MISMATCH',
      `"${moment}"`,
      '[25]',
      '[5, 5]',
    );
    await expectRejected(
      rebuild(good, (tensors) => {
        find(tensors, 'field_state').shape = [2, 3];
      }),
      'SHAPE_MISMATCH',
      '"field_state"',
      `[${F}]`,
    );
  });

  it('a NaN or infinity inside a tensor, and a negative second moment', async () => {
    await expectRejected(
      rebuild(good, (tensors) => {
        find(tensors, 'field_network.decoder.0.weight').data[5] = Number.NaN;
      }),
      'INVALID_FILE',
      '"field_network.decoder.0.weight"',
      'NaN',
      'flat index 5',
    );
    await expectRejected(
      rebuild(good, (tensors) => {
        find(tensors, 'optimizer.exp_avg_sq.spike_network.threshold').data[0] = -Infinity;
      }),
      'INVALID_FILE',
      '"optimizer.exp_avg_sq.spike_network.threshold"',
    );
    await expectRejected(
      rebuild(good, (tensors) => {
        find(tensors, 'optimizer.exp_avg_sq.field_network.encoder.0.bias').data[1] = -1e-3;
      }),
      'INVALID_FILE',
      'exp_avg_sq',
      'negative',
    );
  });

  it.each(['field_network.decoder.1.bias', 'spike_network.decay', 'optimizer.exp_avg_sq.spike_network.fc3.bias', 'field_network.encoder.0.weight'])(
    'a missing tensor (%s)',
    async (name) => {
      const bytes = rebuild(good, (tensors) => {
        tensors.splice(tensors.indexOf(find(tensors, name)), 1);
      });
      const error = await expectRejected(bytes, 'INVALID_FILE', 'missing tensor', `"${name}"`);
      expect(error.details).toMatchObject({ tensor: name });
    },
  );

  it('an unexpected extra tensor', async () => {
    const bytes = rebuild(good, (tensors) => {
      tensors.push({ name: 'spike_network.fc4.weight', shape: [2], data: new Float32Array([1, 2]) });
    });
    const error = await expectRejected(bytes, 'INVALID_FILE', 'unexpected tensor', '"spike_network.fc4.weight"');
    expect(error.details).toMatchObject({ tensors: ['spike_network.fc4.weight'] });
  });

  it('bad metadata: a config that is not JSON, a config that disagrees with the shapes, a negative step', async () => {
    await expectRejected(
      rebuild(good, (_t, metadata) => {
        metadata.config = '{"model": ';
      }),
      'INVALID_FILE',
      '__metadata__.config',
    );
    await expectRejected(
      rebuild(good, (_t, metadata) => {
        const config = JSON.parse(metadata.config!) as { model: { hiddenSize: number } };
        config.model.hiddenSize = H + 1;
        metadata.config = JSON.stringify(config);
      }),
      'SHAPE_MISMATCH',
      `hiddenSize ${H}`,
      `hiddenSize ${H + 1}`,
    );
    await expectRejected(
      rebuild(good, (_t, metadata) => {
        metadata.step = '-1';
      }),
      'INVALID_FILE',
      '__metadata__.step',
    );
  });

  it('an architecture mismatch: a checkpoint for another size is refused, the engine untouched', async () => {
    const bigger = await trained({ model: { ...SMALL_MODEL, hiddenSize: H + 2 }, seed: 21 }, 70);
    const before = bigger.getState();
    const contents = decodeCheckpoint(good, LABEL);
    const error = await thrownBy(() => bigger.loadCheckpoint(contents));
    expect(error).toBeInstanceOf(QuadraError);
    expect(error).toMatchObject({ code: 'SHAPE_MISMATCH', details: { field: 'hiddenSize', expected: H + 2, found: H } });
    expect((error as QuadraError).message).toContain(`hiddenSize ${H}`);
    expectSameState(bigger.getState(), before);
    // Told what to expect, decoding itself refuses, naming the file.
    const early = await thrownBy(() => decodeCheckpoint(good, LABEL, { hiddenSize: H + 2 }));
    expect(early).toMatchObject({ code: 'SHAPE_MISMATCH', message: expect.stringContaining(LABEL) });
    expect((early as QuadraError).message).toContain(`hiddenSize ${H + 2}`);
  });
});

describe('writeFileAtomic', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'quadra-atomic-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function folder(name: string): Promise<string> {
    const p = path.join(dir, name);
    await mkdir(p);
    return p;
  }

  it('writes the bytes and leaves no temporary file, also when replacing a file', async () => {
    const where = await folder('plain');
    const target = path.join(where, 'model.safetensors');
    const first = new Uint8Array(10_000).map((_v, i) => i % 251);
    await writeFileAtomic(target, first);
    expect(new Uint8Array(await readFile(target))).toEqual(first);
    expect(await readdir(where)).toEqual(['model.safetensors']);
    const second = new Uint8Array([1, 2, 3]);
    await writeFileAtomic(target, second);
    expect(new Uint8Array(await readFile(target))).toEqual(second);
    expect(await readdir(where)).toEqual(['model.safetensors']);
  });

  it('fails with IO_ERROR naming the path when the folder does not exist', async () => {
    const target = path.join(dir, 'no-such-folder', 'model.safetensors');
    const error = await thrownBy(() => writeFileAtomic(target, new Uint8Array(4)));
    expect(error).toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining(target) });
  });

  it('leaves no temporary file behind when the final rename fails', async () => {
    const where = await folder('rename-fails');
    // A directory cannot be replaced by a file: writing the temp file works, the rename does not.
    await mkdir(path.join(where, 'model.safetensors'));
    const error = await thrownBy(() => writeFileAtomic(path.join(where, 'model.safetensors'), new Uint8Array(4)));
    expect(error).toMatchObject({ code: 'IO_ERROR' });
    expect(await readdir(where)).toEqual(['model.safetensors']);
  });

  it('two saves of the same file at once both succeed and leave one of them whole', async () => {
    const where = await folder('concurrent');
    const target = path.join(where, 'model.safetensors');
    await writeFile(target, new Uint8Array([9]));
    const big = new Uint8Array(2_000_000).fill(1);
    const small = new Uint8Array(1000).fill(2);
    const results = await Promise.allSettled([writeFileAtomic(target, big), writeFileAtomic(target, small)]);
    expect(results.map((r) => (r.status === 'rejected' ? String((r.reason as Error).message) : 'ok'))).toEqual(['ok', 'ok']);
    const written = new Uint8Array(await readFile(target));
    const whole = (written.length === big.length && written.every((v) => v === 1)) || (written.length === small.length && written.every((v) => v === 2));
    expect(whole, `file is ${written.length} bytes starting ${written[0]}, ending ${written[written.length - 1]}`).toBe(true);
    expect(await readdir(where)).toEqual(['model.safetensors']);
  });
});
