import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { strToU8, unzipSync, zipSync, type Zippable } from 'fflate';
import { afterAll, describe, expect, it } from 'vitest';
import { QuadraError } from '../../src-shared/errors';
import { decodeCheckpoint, type CheckpointContents } from '../../src-main/engine/checkpoint';
import { buildLayout, view } from '../../src-main/engine/layout';
import { readTorchArchive } from '../../src-main/engine/pth/zip-entries';
import { PickleDict, TensorRef, unpickle } from '../../src-main/engine/pth/unpickler';
import { float32ToFloat16Bits } from '../../src-main/engine/safetensors';
import { firstBitDifference, readFixture, thrownBy } from '../helpers/engine';

/**
 * .pth files built here: hostile and broken ones, each of which must fail with a QuadraError that
 * says what is wrong while nothing a pickle names ever runs, and a few valid shapes the original
 * does not happen to write.
 */
const LABEL = 'x.pth';
const scratch = mkdtempSync(path.join(os.tmpdir(), 'quadra-pth-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

// ---- a tiny pickler: just enough to write what torch.save writes, and what it must not ---------

type Py =
  | null
  | boolean
  | number
  | bigint
  | string
  | { list: Py[] }
  | { tuple: Py[] }
  | { dict: Array<[string | number, Py]>; ordered?: boolean }
  | { tensor: TensorSpec }
  | { object: string; state: Array<[string, Py]> }
  | { raw: number[] };

interface TensorSpec {
  storage: string;
  numel: number | bigint;
  shape: number[];
  stride?: number[];
  offset?: number;
  /** `Float`, `Half`, … for torch.<type>Storage, or a qualified name. */
  type?: string;
  hooks?: boolean;
}

class Pickler {
  readonly out: number[] = [];

  op(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }

  text(s: string): this {
    const b = strToU8(s);
    return this.op(0x58, b.length & 0xff, (b.length >> 8) & 0xff, (b.length >> 16) & 0xff, b.length >>> 24, ...b);
  }

  global(qualified: string): this {
    const dot = qualified.lastIndexOf('.');
    return this.op(0x63, ...strToU8(`${qualified.slice(0, dot)}\n${qualified.slice(dot + 1)}\n`));
  }

  int(n: number | bigint): this {
    if (typeof n === 'number' && n >= 0 && n < 256) return this.op(0x4b, n);
    if (typeof n === 'number' && n >= -(2 ** 31) && n < 2 ** 31) return this.op(0x4a, ...le32(n));
    let v = BigInt.asUintN(64, BigInt(n));
    const bytes: number[] = [];
    for (let i = 0; i < 8; i++, v >>= 8n) bytes.push(Number(v & 0xffn));
    return this.op(0x8a, 8, ...bytes);
  }

  float(x: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, false);
    return this.op(0x47, ...b);
  }

  value(v: Py): this {
    if (v === null) return this.op(0x4e);
    if (typeof v === 'boolean') return this.op(v ? 0x88 : 0x89);
    if (typeof v === 'bigint') return this.int(v);
    if (typeof v === 'number') return Number.isInteger(v) ? this.int(v) : this.float(v);
    if (typeof v === 'string') return this.text(v);
    if ('raw' in v) return this.op(...v.raw);
    if ('list' in v) {
      this.op(0x5d);
      if (v.list.length === 0) return this;
      this.op(0x28);
      for (const item of v.list) this.value(item);
      return this.op(0x65);
    }
    if ('tuple' in v) {
      this.op(0x28);
      for (const item of v.tuple) this.value(item);
      return this.op(0x74);
    }
    if ('dict' in v) {
      if (v.ordered) this.global('collections.OrderedDict').op(0x29, 0x52);
      else this.op(0x7d);
      if (v.dict.length === 0) return this;
      this.op(0x28);
      for (const [key, value] of v.dict) this.value(key).value(value);
      return this.op(0x75);
    }
    if ('object' in v) return this.global(v.object).op(0x29, 0x81).value({ dict: v.state }).op(0x62);
    const t = v.tensor;
    const stride = t.stride ?? t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, b) => a * b, 1));
    this.global('torch._utils._rebuild_tensor_v2').op(0x28);
    const type = t.type?.includes('.') ? t.type : `torch.${t.type ?? 'Float'}Storage`;
    this.op(0x28).text('storage').global(type).text(t.storage).text('cpu').int(t.numel).op(0x74, 0x51);
    this.int(t.offset ?? 0).value({ tuple: t.shape }).value({ tuple: stride }).op(0x89);
    this.global('collections.OrderedDict').op(0x29, 0x52);
    if (t.hooks) this.op(0x28).int(0).global('builtins.print').op(0x75);
    return this.op(0x74, 0x52);
  }

  /** PROTO 2, the value, STOP. */
  static dump(v: Py): Uint8Array {
    return new Uint8Array(new Pickler().op(0x80, 2).value(v).op(0x2e).out);
  }
}

function le32(n: number): number[] {
  return [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff];
}

function f32(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) dv.setFloat32(4 * i, values[i]!, true);
  return out;
}

/** A zip as torch.save lays it out (stored entries in one folder), around a pickle and storages. */
function torchZip(pickle: Uint8Array, storages: Record<string, Uint8Array> = {}, folder = 'x'): Uint8Array {
  const files: Zippable = { [`${folder}/data.pkl`]: [pickle, { level: 0 }] };
  for (const [key, bytes] of Object.entries(storages)) files[`${folder}/data/${key}`] = [bytes, { level: 0 }];
  files[`${folder}/version`] = [strToU8('3\n'), { level: 0 }];
  return zipSync(files);
}

async function refusal(bytes: Uint8Array, code = 'INVALID_FILE'): Promise<QuadraError> {
  const error = await thrownBy(() => decodeCheckpoint(bytes, LABEL));
  expect(error).toBeInstanceOf(QuadraError);
  expect((error as QuadraError).code, (error as Error).message).toBe(code);
  expect((error as Error).message.startsWith(`${LABEL}: `)).toBe(true);
  return error as QuadraError;
}

// ---- valid checkpoints to start from -----------------------------------------------------------

const REFERENCE: CheckpointContents = decodeCheckpoint(readFixture('pth/engine.pth'), 'engine.pth');
const LAYOUT = buildLayout(REFERENCE.model);
/** Registration order inside a network: a module's own parameters first (threshold, decay). */
const SPIKE_ORDER = [6, 7, 0, 1, 2, 3, 4, 5];

interface Entry {
  key: string;
  values: Float32Array;
  shape: number[];
}

function entries(): Entry[] {
  return LAYOUT.entries.map((e) => ({ key: e.name, values: view(REFERENCE.parameters, e).slice(), shape: e.shape }));
}

/** A bare combined state_dict, one storage per tensor. */
function stateDict(list: Entry[] = entries(), extra: Array<[string, Py]> = []): Uint8Array {
  const storages: Record<string, Uint8Array> = {};
  const dict: Array<[string, Py]> = list.map((t, i) => {
    storages[String(i)] = f32(t.values);
    return [t.key, { tensor: { storage: String(i), numel: t.values.length, shape: t.shape } }];
  });
  return torchZip(Pickler.dump({ dict: [...dict, ...extra], ordered: true }), storages);
}

interface EngineOptions {
  fieldState?: (index: number, entry: Entry) => Array<[string, Py]> | null;
  fieldGroups?: Py;
  spikeState?: Array<[number, Py]>;
  config?: Py;
  extra?: Array<[string, Py]>;
}

/** What the original's save_checkpoint() writes, from REFERENCE's tensors. */
function engineCheckpoint(options: EngineOptions = {}): Uint8Array {
  const storages: Record<string, Uint8Array> = {};
  let next = 0;
  const tensorOf = (values: Float32Array, shape: number[]): Py => {
    const key = String(next++);
    storages[key] = f32(values);
    return { tensor: { storage: key, numel: values.length, shape } };
  };
  const all = entries();
  const field = all.filter((e) => e.key.startsWith('field_network.'));
  const spike = SPIKE_ORDER.map((i) => all[field.length + i]!);
  const network = (list: Entry[], prefix: string): Py => ({ dict: list.map((e) => [e.key.slice(prefix.length), tensorOf(e.values, e.shape)]), ordered: true });
  const fieldState: Array<[number, Py]> = [];
  field.forEach((e, i) => {
    const layoutEntry = LAYOUT.byName.get(e.key)!;
    const defaults: Array<[string, Py]> = [
      ['step', tensorOf(new Float32Array([3]), [])],
      ['exp_avg', tensorOf(view(REFERENCE.optimizer!.m, layoutEntry).slice(), e.shape)],
      ['exp_avg_sq', tensorOf(view(REFERENCE.optimizer!.v, layoutEntry).slice(), e.shape)],
    ];
    const state = options.fieldState ? options.fieldState(i, e) : defaults;
    if (state) fieldState.push([i, { dict: state }]);
  });
  const group = (n: number): Py => ({ list: [{ dict: [['lr', 0.001], ['weight_decay', 0.01], ['params', { list: Array.from({ length: n }, (_, i) => i) }]] }] });
  const pickle = Pickler.dump({
    dict: [
      ['field_network', network(field, 'field_network.')],
      ['spike_network', network(spike, 'spike_network.')],
      ['optimizer_field', { dict: [['state', { dict: fieldState }], ['param_groups', options.fieldGroups ?? group(field.length)]] }],
      ['optimizer_spike', { dict: [['state', { dict: options.spikeState ?? [] }], ['param_groups', group(spike.length)]] }],
      ['config', options.config ?? { object: 'quadra_matrix_gpu.GPUConfig', state: [['use_cuda', false], ['batch_size', 32]] }],
      ...(options.extra ?? []),
    ],
  });
  return torchZip(pickle, storages);
}

describe('the test pickler', () => {
  it('writes checkpoints that decode to the tensors it was given', () => {
    const bare = decodeCheckpoint(stateDict(), LABEL);
    expect(firstBitDifference(bare.parameters, REFERENCE.parameters)).toBe(-1);
    const full = decodeCheckpoint(engineCheckpoint(), LABEL);
    expect(firstBitDifference(full.parameters, REFERENCE.parameters)).toBe(-1);
    expect(firstBitDifference(full.optimizer!.m, REFERENCE.optimizer!.m)).toBe(-1);
    expect(firstBitDifference(full.optimizer!.v, REFERENCE.optimizer!.v)).toBe(-1);
    expect(full.optimizer!.fieldStep).toBe(3);
  });
});

describe('a pickle that would run code is refused before anything runs', () => {
  const pwned = (tag: string) => path.join(scratch, `pwned-${tag}`);
  /** `module.name('touch <file>')`: what a malicious checkpoint does in `torch.load`. */
  const attack = (qualified: string, file: string) => Pickler.dump({ raw: [...new Pickler().global(qualified).value({ tuple: [`touch ${file}`] }).op(0x52).out] });

  const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import pickle'], { stdio: 'ignore' }).status === 0);
  it.skipIf(!python)('(the attack pickle is real: Python’s own pickle.loads runs it)', () => {
    const file = pwned('control');
    const pickleFile = path.join(scratch, 'attack.pkl');
    writeFileSync(pickleFile, attack('os.system', file));
    const run = spawnSync(python!, ['-c', 'import pickle, sys; pickle.loads(open(sys.argv[1], "rb").read())', pickleFile], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    expect(existsSync(file)).toBe(true);
  });

  for (const qualified of ['os.system', 'posix.system', 'nt.system', 'builtins.eval', 'builtins.exec', '__builtin__.eval', 'subprocess.Popen', 'subprocess.check_output', 'torch.load', 'numpy.core.multiarray._reconstruct', 'torch._utils._rebuild_parameter', 'collections.defaultdict']) {
    it(`GLOBAL ${qualified} + REDUCE`, async () => {
      const file = pwned(qualified);
      const error = await refusal(torchZip(attack(qualified, file)));
      expect(error.message).toBe(`${LABEL}: data.pkl references ${qualified}, which a checkpoint never needs; not loaded`);
      expect(error.details).toMatchObject({ file: LABEL, global: qualified });
      expect(existsSync(file)).toBe(false);
    });
  }

  it('whichever way the global is named: STACK_GLOBAL (protocol 4), INST, inside a valid state_dict, as a storage type', async () => {
    const file = pwned('variants');
    const stack = new Pickler().op(0x80, 4).op(0x8c, 2, ...strToU8('os'), 0x8c, 6, ...strToU8('system'), 0x93).value({ tuple: [`touch ${file}`] }).op(0x52, 0x2e);
    expect((await refusal(torchZip(new Uint8Array(stack.out)))).message).toContain('references os.system,');
    const inst = new Pickler().op(0x80, 2, 0x28).text(`touch ${file}`).op(0x69, ...strToU8('os\nsystem\n'), 0x2e);
    expect((await refusal(torchZip(new Uint8Array(inst.out)))).message).toContain('references os.system,');
    const nested = stateDict(entries(), [['field_network.evil', { raw: [...new Pickler().global('posix.system').value({ tuple: [`touch ${file}`] }).op(0x52).out] }]]);
    expect((await refusal(nested)).message).toContain('references posix.system,');
    const storageType = Pickler.dump({ tensor: { storage: '0', numel: 1, shape: [1], type: 'os.system' } });
    expect((await refusal(torchZip(storageType, { 0: f32([1]) }))).message).toContain('references os.system,');
    expect(existsSync(file)).toBe(false);
  });

  it('calls nothing, not even the globals it knows', async () => {
    const cases: Array<[Py, RegExp]> = [
      [{ raw: [...new Pickler().global('__main__.GPUConfig').value({ tuple: ['x'] }).op(0x52).out] }, /calls __main__\.GPUConfig .*only OrderedDict and _rebuild_tensor_v2 are rebuilt/],
      [{ raw: [...new Pickler().global('torch.FloatStorage').value({ tuple: [4] }).op(0x52).out] }, /calls torch\.FloatStorage/],
      [{ raw: [...new Pickler().global('collections.OrderedDict').value({ tuple: [{ list: [] }] }).op(0x52).out] }, /builds an OrderedDict from arguments/],
      [{ raw: [...new Pickler().global('collections.OrderedDict').op(0x29, 0x81).out] }, /creates an instance of collections\.OrderedDict .*only GPUConfig/],
      [{ raw: [...new Pickler().global('quadra_matrix_gpu.GPUConfig').value({ tuple: [1] }).op(0x81).out] }, /creates quadra_matrix_gpu\.GPUConfig with arguments/],
      [{ raw: [...new Pickler().value({ list: [] }).value({ dict: [['a', 1]] }).op(0x62).out] }, /sets the state of a list of 0/],
    ];
    for (const [value, message] of cases) expect((await refusal(torchZip(Pickler.dump(value)))).message).toMatch(message);
    // A tensor's backward hooks would be called by torch; here they are refused (and the hook is print, not allowed anyway).
    const hooked = Pickler.dump({ tensor: { storage: '0', numel: 1, shape: [1], hooks: true } });
    expect((await refusal(torchZip(hooked, { 0: f32([1]) }))).message).toContain('references builtins.print,');
  });
});

describe('malformed zip archives', () => {
  const good = readFixture('pth/engine.pth');

  it('a truncated file', async () => {
    for (const length of [good.length - 10, good.length >> 1, 40]) {
      expect((await refusal(good.slice(0, length))).message).toMatch(/^x\.pth: not a readable zip archive \(invalid zip data; truncated\?\)$/);
    }
  });

  it('an entry that runs past the end of the file', async () => {
    const zip = torchZip(Pickler.dump(null), { 0: f32([1, 2, 3]) });
    // Raise the sizes of data/0 in its central-directory record (offsets 20 and 24 after its signature).
    const name = strToU8('x/data/0');
    const at = findCentralRecord(zip, name);
    const dv = new DataView(zip.buffer);
    dv.setUint32(at + 20, 4000, true);
    dv.setUint32(at + 24, 4000, true);
    expect((await refusal(zip)).message).toMatch(/^x\.pth: entry "x\/data\/0" is truncated: \d+ of its 4000 bytes are in the file$/);
  });

  it('no data.pkl, entries outside one folder, a compressed entry, a repeated name', async () => {
    const version: Zippable = { 'x/version': [strToU8('3\n'), { level: 0 }] };
    expect((await refusal(zipSync(version))).message).toBe('x.pth: no "x/data.pkl" in the zip archive — not a torch.save checkpoint');
    expect((await refusal(zipSync({ 'data.pkl': [Pickler.dump(null), { level: 0 }] }))).message).toMatch(/entry "data\.pkl" is not inside a folder/);
    expect((await refusal(zipSync({ 'a/data.pkl': [Pickler.dump(null), { level: 0 }], 'b/version': [strToU8('3'), { level: 0 }] }))).message).toMatch(/entries in two folders \("a\/" and "b\/"\)/);
    expect((await refusal(zipSync({ 'x/data.pkl': [Pickler.dump(null), { level: 6 }] }))).message).toMatch(/entry "x\/data\.pkl" is compressed \(zip method 8\); torch\.save stores every entry uncompressed/);
    const twice = torchZip(Pickler.dump(null), { 0: f32([1]), 1: f32([2]) });
    renameEntry(twice, 'x/data/1', 'x/data/0');
    expect((await refusal(twice)).message).toBe('x.pth: entry "x/data/0" appears twice in the zip archive');
  });

  it('bounds the number of entries and the size of data.pkl', async () => {
    const many: Zippable = { 'x/data.pkl': [Pickler.dump(null), { level: 0 }] };
    for (let i = 0; i < 10_000; i++) many[`x/e${i}`] = [new Uint8Array(0), { level: 0 }];
    expect((await refusal(zipSync(many))).message).toBe('x.pth: the zip archive has more than 10000 entries; a checkpoint has a few dozen');
    const zip = torchZip(Pickler.dump({ list: Array.from({ length: 100 }, () => 'padding') }));
    const error = await thrownBy(() => readTorchArchive(zip, LABEL, { maxEntries: 10, maxPickleBytes: 1000 }));
    expect(error).toMatchObject({ code: 'INVALID_FILE', message: expect.stringMatching(/^x\.pth: data\.pkl is \d+ bytes, over the limit of 1000 bytes/) });
  });

  it('big-endian storages and the pre-1.6 format are named', async () => {
    const files: Zippable = { 'x/data.pkl': [Pickler.dump(null), { level: 0 }], 'x/byteorder': [strToU8('big'), { level: 0 }] };
    expect((await refusal(zipSync(files))).message).toBe('x.pth: the storages are "big"-endian; only little-endian files are read');
    const legacy = new Uint8Array([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e, 0x80, 0x02]);
    expect((await refusal(legacy)).message).toMatch(/format before PyTorch 1\.6, which is not read/);
  });
});

describe('malformed pickles', () => {
  const pklOf = (bytes: number[]) => torchZip(new Uint8Array(bytes));
  const pkl = (...bytes: number[]) => pklOf(bytes);

  it('unknown and unused opcodes, protocols, truncation', async () => {
    expect((await refusal(pkl(0x80, 2, 0xff, 0x2e))).message).toBe('x.pth: data.pkl has opcode 0xff (no pickle opcode) at byte 2, which a checkpoint never uses; not loaded');
    expect((await refusal(pkl(0x80, 2, 0x6f, 0x2e))).message).toMatch(/has opcode OBJ \(0x6f\) at byte 2/);
    expect((await refusal(pkl(0x80, 2, 0x82, 1, 0x2e))).message).toMatch(/has opcode EXT1 \(0x82\)/);
    expect((await refusal(pkl(0x80, 1, 0x4e, 0x2e))).message).toMatch(/uses pickle protocol 1/);
    expect((await refusal(pkl(0x80, 2, 0x4e))).message).toMatch(/ends at byte 3 without a STOP opcode \(truncated\)/);
    expect((await refusal(pkl(0x80, 2, 0x58, 100, 0, 0, 0, 0x61, 0x2e))).message).toMatch(/ends inside BINUNICODE \(0x58\) at byte 2 \(truncated\)/);
    expect((await refusal(pkl(0x80, 2, 0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x2e))).message).toMatch(/an integer of 9 bytes/);
    expect((await refusal(pkl(0x80, 2, 0x58, 2, 0, 0, 0, 0xc3, 0x28, 0x2e))).message).toMatch(/not valid UTF-8/);
    expect((await refusal(pkl(0x80, 2, 0x63, ...strToU8('os'), 0x2e))).message).toMatch(/has no name of at most 200 characters ending in a newline/);
  });

  it('stack underflow, a missing MARK, an unset memo entry, leftovers at STOP, bad keys', async () => {
    expect((await refusal(pkl(0x80, 2, 0x85, 0x2e))).message).toBe('x.pth: data.pkl pops an empty stack (TUPLE1 (0x85) at byte 2): stack underflow');
    expect((await refusal(pkl(0x80, 2, 0x7d, 0x28, 0x4e, 0x73, 0x2e))).message).toMatch(/pops an empty stack \(SETITEM \(0x73\) at byte 5\): stack underflow/);
    expect((await refusal(pkl(0x80, 2, 0x4e, 0x74, 0x2e))).message).toMatch(/has TUPLE \(0x74\) at byte 3 without a MARK before it/);
    expect((await refusal(pkl(0x80, 2, 0x68, 7, 0x2e))).message).toMatch(/reads memo entry 7, which was never stored/);
    expect((await refusal(pkl(0x80, 2, 0x4e, 0x4e, 0x2e))).message).toMatch(/stops with 2 values on the stack and 0 marks open/);
    expect((await refusal(pkl(0x80, 2, 0x28, 0x2e))).message).toMatch(/stops with 1 values on the stack and 1 marks open/);
    expect((await refusal(pkl(0x80, 2, 0x7d, 0x29, 0x4e, 0x73, 0x2e))).message).toMatch(/uses a tuple of 0 as a dict key/);
    expect((await refusal(pkl(0x80, 2, 0x4e, 0x4e, 0x4e, 0x73, 0x2e))).message).toMatch(/sets an item on None, expected a dict/);
    expect((await refusal(pkl(0x80, 2, 0x5d, 0x2e))).message).toBe('x.pth: data.pkl holds a list of 0, expected a dict (a checkpoint or a state_dict)');
  });

  it('bounds marks, stack, memo and items, with the default limits', async () => {
    expect((await refusal(pklOf([0x80, 2, ...new Array<number>(1001).fill(0x28), 0x2e]))).message).toMatch(/nests more than 1000 marks/);
    expect((await refusal(pklOf([0x80, 2].concat(new Array<number>(100_001).fill(0x4e), [0x2e])))).message).toMatch(/needs more than 100000 stack entries/);
    const memo: number[] = [0x80, 2, 0x4e];
    for (let i = 0; i <= 100_000; i++) memo.push(0x72, ...le32(i));
    memo.push(0x2e);
    expect((await refusal(pklOf(memo))).message).toMatch(/stores more than 100000 memo entries/);
    const items: number[] = [0x80, 2, 0x5d, 0x71, 0];
    for (let i = 0; i < 1_000_001; i++) items.push(0x4e, 0x61);
    items.push(0x2e);
    expect((await refusal(pklOf(items))).message).toMatch(/builds more than 1000000 container items/);
  });

  it('memo tricks build no more than they reference: a 2^60-leaf list and a list inside itself', async () => {
    // L0 = []; L(i+1) = [Li, Li] — 60 levels, each a memo reference, never a copy.
    const bomb = new Pickler().op(0x5d, 0x71, 0, 0x30);
    for (let i = 0; i < 60; i++) {
      bomb.op(0x5d, 0x28, 0x68, i, 0x68, i, 0x65, 0x71, i + 1);
      if (i < 59) bomb.op(0x30); // POP: only the memo keeps the lower levels
    }
    const started = performance.now();
    const asTensor = stateDict(entries(), [['field_network.bomb', { raw: bomb.out }]]);
    expect((await refusal(asTensor)).message).toBe('x.pth: "field_network.bomb" is a list of 2, expected a tensor');
    // In the config, it is left out of the plain data, not walked.
    const inConfig = engineCheckpoint({ config: { object: '__main__.GPUConfig', state: [['batch_size', 8], ['bomb', { raw: bomb.out }]] } });
    expect(JSON.parse(decodeCheckpoint(inConfig, LABEL).metadata.pth_config!)).toEqual({ batch_size: 8 });
    const selfish = new Pickler().op(0x5d, 0x71, 0, 0x68, 0, 0x61); // l = []; l.append(l)
    expect((await refusal(stateDict(entries(), [['spike_network.loop', { raw: selfish.out }]]))).message).toBe('x.pth: "spike_network.loop" is a list of 1, expected a tensor');
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe('storages and tensors', () => {
  const one = (spec: Partial<TensorSpec>, storages: Record<string, Uint8Array> = { 0: f32([1, 2, 3, 4]) }) =>
    torchZip(Pickler.dump({ dict: [['t', { tensor: { storage: '0', numel: 4, shape: [4], ...spec } }]], ordered: true }), storages);

  it('a missing storage, a storage of the wrong size, a huge or negative element count', async () => {
    expect((await refusal(one({ storage: '9' }))).message).toMatch(/needs storage "9", but the archive has no data\/9/);
    expect((await refusal(one({ numel: 10 }))).message).toMatch(/says storage "0" holds 10 F32 elements \(40 bytes\), but data\/0 has 16 bytes/);
    expect((await refusal(one({ numel: 2n ** 40n }))).message).toMatch(/holds 1099511627776 F32 elements \(4398046511104 bytes\), but data\/0 has 16 bytes/);
    expect((await refusal(one({ numel: 2n ** 62n }))).message).toMatch(/the element count of storage "0" is 4611686018427387904, expected a whole number/);
    expect((await refusal(one({ numel: -1 }))).message).toMatch(/has storage "0" with -1 elements/);
    const twice = Pickler.dump({ list: [{ tensor: { storage: '0', numel: 4, shape: [4] } }, { tensor: { storage: '0', numel: 8, shape: [8], type: 'Half' } }] });
    expect((await refusal(torchZip(twice, { 0: f32([1, 2, 3, 4]) }))).message).toMatch(/names storage "0" twice with different types or sizes/);
  });

  it('a view reaching past its storage, through size, stride or offset', async () => {
    expect((await refusal(one({ shape: [5] }))).message).toMatch(/has a tensor of size \[5\], stride \[1\], offset 0 reaching past the 4 elements of storage "0"/);
    expect((await refusal(one({ shape: [2, 2], stride: [3, 1] }))).message).toMatch(/size \[2, 2\], stride \[3, 1\], offset 0 reaching past the 4 elements/);
    expect((await refusal(one({ offset: 2, shape: [3] }))).message).toMatch(/offset 2 reaching past/);
    expect((await refusal(one({ offset: 5, shape: [0] }))).message).toMatch(/offset 5 reaching past/);
    expect((await refusal(one({ shape: [2 ** 30, 2 ** 30, 2 ** 30], stride: [2 ** 30, 2 ** 30, 1] }))).message).toMatch(/far larger than its storage/);
    expect((await refusal(one({ shape: [2], stride: [-1], offset: 1 }))).message).toMatch(/a negative offset, size or stride/);
    expect((await refusal(one({ shape: [2, 2], stride: [1] }))).message).toMatch(/size of rank 2 and stride of rank 1/);
  });

  it('never allocates for a broadcast shape that is not the model’s', async () => {
    const list = entries();
    const storages: Record<string, Uint8Array> = {};
    const dict: Array<[string, Py]> = list.map((t, i) => {
      storages[String(i)] = f32(t.values);
      // 10^12 elements, all stride 0 over one float: in bounds, and 4 TB if materialized.
      const spec: TensorSpec = t.key === 'field_network.encoder.1.bias' ? { storage: String(i), numel: t.values.length, shape: [1e6, 1e6], stride: [0, 0] } : { storage: String(i), numel: t.values.length, shape: t.shape };
      return [t.key, { tensor: spec }];
    });
    const error = await refusal(torchZip(Pickler.dump({ dict, ordered: true }), storages), 'SHAPE_MISMATCH');
    expect(error.message).toBe('x.pth: tensor "field_network.encoder.1.bias" has shape [1000000, 1000000], expected [12]');
  });

  it('the unpickler returns tensor references and reads them only through their strides', () => {
    const pickle = Pickler.dump({ dict: [['t', { tensor: { storage: '0', numel: 6, shape: [3, 2], stride: [1, 3], offset: 0 } }]] });
    const root = unpickle(pickle, { fileLabel: LABEL, storageBytes: (key) => (key === '0' ? f32([1, 2, 3, 4, 5, 6]) : undefined) });
    expect(root).toBeInstanceOf(PickleDict);
    const t = (root as PickleDict).entries.get('t');
    expect(t).toBeInstanceOf(TensorRef);
    expect((t as TensorRef).shape).toEqual([3, 2]);
  });
});

describe('checkpoint contents', () => {
  const without = (key: string) => entries().filter((e) => e.key !== key);
  const replaced = (key: string, change: (e: Entry) => Entry) => entries().map((e) => (e.key === key ? change(e) : e));

  it('unexpected, missing and misshapen tensors', async () => {
    const extra = entries();
    extra.push({ key: 'field_network.encoder.2.weight', values: new Float32Array(4), shape: [4] });
    expect((await refusal(stateDict(extra))).message).toBe('x.pth: unexpected tensor "field_network.encoder.2.weight" — not part of the Quadra Matrix model');
    expect((await refusal(stateDict(without('spike_network.decay')))).message).toBe('x.pth: missing tensor "spike_network.decay" (shape [])');
    expect((await refusal(stateDict(without('field_network.encoder.0.weight')))).message).toMatch(/missing tensor "field_network\.encoder\.0\.weight" — not a Quadra Matrix checkpoint/);
    const transposed = replaced('field_network.decoder.4.weight', (e) => ({ ...e, shape: [e.shape[1]!, e.shape[0]!] }));
    expect((await refusal(stateDict(transposed), 'SHAPE_MISMATCH')).message).toBe('x.pth: tensor "field_network.decoder.4.weight" has shape [12, 8], expected [8, 12]');
    const wrongRank = replaced('spike_network.threshold', (e) => ({ ...e, shape: [1] }));
    expect((await refusal(stateDict(wrongRank), 'SHAPE_MISMATCH')).message).toBe('x.pth: tensor "spike_network.threshold" has shape [1], expected []');
    const mismatched = replaced('spike_network.fc1.weight', (e) => ({ ...e, values: new Float32Array(8 * 7), shape: [8, 7] }));
    expect((await refusal(stateDict(mismatched), 'SHAPE_MISMATCH')).message).toBe('x.pth: tensor "spike_network.fc1.weight" has shape [8, 7], expected [8, 8]');
  });

  it('NaN and Inf, in F32 and in F16', async () => {
    const nan = replaced('field_network.decoder.4.bias', (e) => ({ ...e, values: Float32Array.from(e.values, (v, i) => (i === 3 ? NaN : v)) }));
    expect((await refusal(stateDict(nan))).message).toBe('x.pth: tensor "field_network.decoder.4.bias" has a non-finite value (NaN) at flat index 3, expected only finite values');
    const half = new Uint8Array(2);
    new DataView(half.buffer).setUint16(0, float32ToFloat16Bits(Infinity), true);
    const list = entries();
    const storages: Record<string, Uint8Array> = {};
    const dict: Array<[string, Py]> = list.map((t, i) => {
      const isDecay = t.key === 'spike_network.decay';
      storages[String(i)] = isDecay ? half : f32(t.values);
      return [t.key, { tensor: { storage: String(i), numel: t.values.length, shape: t.shape, ...(isDecay ? { type: 'Half' } : {}) } }];
    });
    expect((await refusal(torchZip(Pickler.dump({ dict, ordered: true }), storages))).message).toBe('x.pth: tensor "spike_network.decay" has a non-finite value (Infinity) at flat index 0, expected only finite values');
  });

  it('one network alone, keys that collide once "module" is dropped, unknown top-level entries', async () => {
    const field = entries()
      .filter((e) => e.key.startsWith('field_network.'))
      .map((e) => ({ ...e, key: e.key.slice('field_network.'.length) }));
    expect((await refusal(stateDict(field))).message).toMatch(/holds one network's state_dict \("encoder\.0\.weight"\); a checkpoint needs both networks/);
    const twice = entries();
    twice.push({ ...twice[0]!, key: 'module.field_network.encoder.0.weight' });
    expect((await refusal(stateDict(twice))).message).toBe('x.pth: "module.field_network.encoder.0.weight" and "field_network.encoder.0.weight" are the same parameter once DataParallel\'s "module" is dropped');
    expect((await refusal(engineCheckpoint({ extra: [['epoch', 5]] }))).message).toMatch(/unexpected entry "epoch" in the checkpoint dict — expected field_network, spike_network, optimizer_field, optimizer_spike, config/);
    expect((await refusal(engineCheckpoint({ config: { dict: [['batch_size', 3]] } }))).message).toBe('x.pth: "config" is a dict of 1, expected a GPUConfig');
    // A module-prefixed bare state_dict is fine.
    const wrapped = entries().map((e) => ({ ...e, key: `module.${e.key.replace('.encoder.', '.encoder.module.')}` }));
    expect(firstBitDifference(decodeCheckpoint(stateDict(wrapped), LABEL).parameters, REFERENCE.parameters)).toBe(-1);
  });

  it("the spiking network's optimizer state, indexed in registration order: 0 is threshold, 2 is fc1.weight", () => {
    const fc1 = LAYOUT.byName.get('spike_network.fc1.weight')!;
    const threshold = LAYOUT.byName.get('spike_network.threshold')!;
    const moments = Float32Array.from({ length: fc1.size }, (_, k) => k / 100);
    const scalar = (storage: string): Py => ({ tensor: { storage, numel: 1, shape: [] } });
    const state = (m: string, v: string): Py => ({ dict: [['step', 4], ['exp_avg', m === 'tm' ? scalar(m) : { tensor: { storage: m, numel: fc1.size, shape: fc1.shape } }], ['exp_avg_sq', m === 'tm' ? scalar(v) : { tensor: { storage: v, numel: fc1.size, shape: fc1.shape } }]] });
    const zip = engineCheckpoint({ spikeState: [[0, state('tm', 'tv')], [2, state('fm', 'fv')]] });
    const contents = decodeCheckpoint(addStorages(zip, { tm: f32([0.5]), tv: f32([0.25]), fm: f32(moments), fv: f32(moments) }), LABEL);
    const optimizer = contents.optimizer!;
    expect(optimizer.spikeStep).toBe(4);
    expect(optimizer.fieldStep).toBe(3);
    expect(optimizer.m[threshold.offset]).toBe(0.5);
    expect(optimizer.v[threshold.offset]).toBe(0.25);
    expect(firstBitDifference(view(optimizer.m, fc1), moments)).toBe(-1);
    expect(optimizer.m[LAYOUT.byName.get('spike_network.decay')!.offset]).toBe(0);
  });

  it('a field_state tensor in a bare state_dict is the field state', () => {
    const fieldState = Float32Array.from({ length: 8 }, (_, k) => k - 4);
    const contents = decodeCheckpoint(stateDict([...entries(), { key: 'field_state', values: fieldState, shape: [8] }]), LABEL);
    expect(contents.fieldState).toEqual(fieldState);
  });

  it('a GPUConfig whose sizes disagree with the tensors, or are invalid', async () => {
    const config = (state: Array<[string, Py]>): Py => ({ object: '__main__.GPUConfig', state });
    expect((await refusal(engineCheckpoint({ config: config([['field_size', 9]]) }), 'SHAPE_MISMATCH')).message).toBe('x.pth: the tensors are for fieldSize 8, but fieldSize 9 was expected');
    expect((await refusal(engineCheckpoint({ config: config([['num_steps', 0]]) }))).message).toMatch(/the model config \(from its shapes and its GPUConfig\) is invalid — spikingSteps: spikingSteps must be at least 1/);
    const ok = decodeCheckpoint(engineCheckpoint({ config: config([['num_steps', 4], ['batch_size', 0]]) }), LABEL);
    expect(ok.model.spikingSteps).toBe(4);
    expect(ok.engineConfig).toEqual({ model: ok.model }); // an invalid batch size is left out, not passed on
  });

  it('optimizer state: negative second moments, foreign indices, mixed or bad steps, amsgrad, misordered params', async () => {
    const negative = engineCheckpoint({
      fieldState: (i, e) =>
        i === 2
          ? [
              ['step', 3],
              ['exp_avg', { tensor: { storage: 'neg_m', numel: e.values.length, shape: e.shape } }],
              ['exp_avg_sq', { tensor: { storage: 'neg_v', numel: e.values.length, shape: e.shape } }],
            ]
          : null,
    });
    const withStorages = addStorages(negative, { neg_m: f32(new Float32Array(12)), neg_v: f32(Float32Array.from({ length: 12 }, (_, k) => (k === 5 ? -1e-9 : 0))) });
    expect((await refusal(withStorages)).message).toBe(
      'x.pth: optimizer_field state[2].exp_avg_sq (field_network.encoder.1.weight) holds a negative value at flat index 5; second moments are never negative',
    );

    const foreign = engineCheckpoint({ spikeState: [[8, { dict: [['step', 1]] }]] });
    expect((await refusal(foreign)).message).toBe('x.pth: optimizer_spike has state for parameter 8; the spike_network has parameters 0…7');
    const mixed = engineCheckpoint({ fieldState: (i) => (i < 2 ? [['step', i + 1], ...momentsOf(i)] : null) });
    expect((await refusal(addStorages(mixed, momentStorages(2)))).message).toMatch(/optimizer_field has parameters at different step counts \(0: 1, 1: 2\); this engine keeps one step count per optimizer/);
    for (const [step, shown] of [[2.5, '2.5'], [-1, '-1'], ['3', '"3"']] as const) {
      const bad = engineCheckpoint({ fieldState: (i) => (i === 0 ? [['step', step], ...momentsOf(0)] : null) });
      expect((await refusal(addStorages(bad, momentStorages(1)))).message).toBe(`x.pth: optimizer_field.state[0].step is ${shown}, expected a whole number ≥ 0`);
    }
    const amsgrad = engineCheckpoint({ fieldState: (i) => (i === 0 ? [['step', 1], ...momentsOf(0), ['max_exp_avg_sq', null]] : null) });
    expect((await refusal(addStorages(amsgrad, momentStorages(1)))).message).toMatch(/optimizer_field state\[0\] has "max_exp_avg_sq"; only Adam\(W\)'s step, exp_avg and exp_avg_sq are read \(amsgrad is not\)/);
    const groups = engineCheckpoint({ fieldGroups: { list: [{ dict: [['params', { list: [0, 1, 2] }]] }] } });
    expect((await refusal(groups)).message).toMatch(/optimizer_field param_groups list 3 parameters \(0, 1, 2\); the field_network has 14, numbered 0…13/);
    // Moments stored for parameter 1 (encoder.0.bias, [12]) under index 0 (encoder.0.weight, [12, 8]).
    const misordered = engineCheckpoint({ fieldState: (i) => (i === 0 ? [['step', 1], ...momentsOf(1)] : null) });
    expect((await refusal(addStorages(misordered, momentStorages(2)), 'SHAPE_MISMATCH')).message).toMatch(
      /tensor "optimizer_field\.state\[0\]\.exp_avg \(field_network\.encoder\.0\.weight\)" has shape \[12\], expected \[12, 8\]/,
    );
    // Partial state: the rest are zero moments at the common step; int and tensor steps agree.
    const partial = decodeCheckpoint(addStorages(engineCheckpoint({ fieldState: (i) => (i === 1 ? [['step', 5], ...momentsOf(1)] : null) }), momentStorages(2)), LABEL);
    expect(partial.optimizer!.fieldStep).toBe(5);
    expect(partial.step).toBe(5);
  });
});

// ---- helpers for the optimizer cases -----------------------------------------------------------

/** exp_avg / exp_avg_sq of field parameter `i` (registration order = layout order there), in storages m<i> / v<i>. */
function momentsOf(i: number): Array<[string, Py]> {
  const e = LAYOUT.entries[i]!;
  return [
    ['exp_avg', { tensor: { storage: `m${i}`, numel: e.size, shape: e.shape } }],
    ['exp_avg_sq', { tensor: { storage: `v${i}`, numel: e.size, shape: e.shape } }],
  ];
}

function momentStorages(count: number): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  for (let i = 0; i < count; i++) {
    const e = LAYOUT.entries[i]!;
    out[`m${i}`] = f32(view(REFERENCE.optimizer!.m, e));
    out[`v${i}`] = f32(view(REFERENCE.optimizer!.v, e));
  }
  return out;
}

/** The same archive with more storages in it. */
function addStorages(zip: Uint8Array, storages: Record<string, Uint8Array>): Uint8Array {
  const files = unzipSync(zip);
  const out: Zippable = {};
  for (const [name, bytes] of Object.entries(files)) out[name] = [bytes, { level: 0 }];
  for (const [key, bytes] of Object.entries(storages)) out[`x/data/${key}`] = [bytes, { level: 0 }];
  return zipSync(out);
}

function findCentralRecord(zip: Uint8Array, name: Uint8Array): number {
  for (let at = zip.length - 46; at >= 0; at--) {
    if (zip[at] === 0x50 && zip[at + 1] === 0x4b && zip[at + 2] === 0x01 && zip[at + 3] === 0x02) {
      const length = zip[at + 28]! | (zip[at + 29]! << 8);
      if (length === name.length && name.every((b, i) => zip[at + 46 + i] === b)) return at;
    }
  }
  throw new Error('no such central directory record');
}

/** Renames an entry in place (same length), in its local header and its central-directory record. */
function renameEntry(zip: Uint8Array, from: string, to: string): void {
  const a = strToU8(from);
  const b = strToU8(to);
  for (let at = 0; at + a.length <= zip.length; at++) {
    if (a.every((x, i) => zip[at + i] === x)) zip.set(b, at);
  }
}
