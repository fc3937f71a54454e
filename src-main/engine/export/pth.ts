/**
 * The `.pth` export: what the original project's `engine.save_checkpoint()` writes —
 * `{field_network, spike_network, optimizer_field, optimizer_spike}` — as a torch.save zip, so its
 * own trainer (and `torch.load(path, weights_only=True)`) continues from one of our checkpoints.
 *
 * The mirror of the reader in ../pth/: a zip of stored entries `<stem>/data.pkl` (pickle protocol
 * 2), `<stem>/data/<key>` (raw little-endian float32 storages), `<stem>/byteorder` and
 * `<stem>/version` ("3"). Like torch.save, every entry's data starts at a multiple of 64 bytes,
 * padded with an extra field of id "FB". The pickle names only what weights_only allows:
 * collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch.FloatStorage. The original's
 * GPUConfig is left out (it is a custom class, which weights_only refuses).
 */
import { zipSync, type ZipOptions } from 'fflate';
import { QuadraError } from '../../../src-shared/errors';
import type { OptimizerState } from '../kernel';
import { buildLayout, type ParamEntry, type ParamLayout } from '../layout';
import type { ExportInput } from './formats';

/** The zip's one folder; torch.save names it after the file's stem, and readers take any name. */
export const PTH_ROOT = 'archive';
const ALIGNMENT = 64;
/** torch's padding extra field: the bytes "FB" read as a little-endian uint16. */
const PADDING_FIELD_ID = 0x4246;
/** A fixed time for every entry, so one checkpoint always exports to the same bytes. */
const ENTRY_TIME = new Date(2000, 0, 1);

// ---- a small pickle writer ---------------------------------------------------------------------

/** A Python float (a JS number alone is written as an int). */
export class PyFloat {
  constructor(readonly value: number) {}
}
export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}
/** A dict (`ordered` for collections.OrderedDict, `attributes` set by BUILD as state_dict's `_metadata` is). */
export class PyDict {
  constructor(
    readonly entries: ReadonlyArray<readonly [string | number, PyValue]>,
    readonly ordered = false,
    readonly attributes: ReadonlyArray<readonly [string, PyValue]> = [],
  ) {}
}
/** A float32 tensor with a storage of its own, saved under `data/<key>`. */
export class PyTensor {
  constructor(
    readonly shape: readonly number[],
    readonly data: Float32Array,
  ) {}
}
export type PyValue = null | boolean | number | string | PyFloat | PyTuple | PyDict | PyValue[] | PyTensor;

const OP = {
  PROTO: 0x80,
  STOP: 0x2e,
  MARK: 0x28,
  NONE: 0x4e,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  BININT: 0x4a,
  BININT1: 0x4b,
  BININT2: 0x4d,
  LONG1: 0x8a,
  BINFLOAT: 0x47,
  BINUNICODE: 0x58,
  EMPTY_DICT: 0x7d,
  EMPTY_LIST: 0x5d,
  EMPTY_TUPLE: 0x29,
  TUPLE: 0x74,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  SETITEMS: 0x75,
  APPENDS: 0x65,
  GLOBAL: 0x63,
  REDUCE: 0x52,
  BUILD: 0x62,
  BINPERSID: 0x51,
} as const;

/**
 * Pickles `root` with protocol 2, as torch.save does (no memo: nothing is shared). Tensors become
 * `_rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())` with the storage as a
 * persistent id `('storage', FloatStorage, key, 'cpu', numel)`; keys are "0", "1", … in the order
 * the tensors appear, and `storages` receives each one's bytes.
 */
export function pickleWithStorages(root: PyValue): { pickle: Uint8Array; storages: Array<{ key: string; bytes: Uint8Array }> } {
  const out: number[] = [OP.PROTO, 2];
  const storages: Array<{ key: string; bytes: Uint8Array }> = [];
  const encoder = new TextEncoder();
  const u32 = (n: number) => out.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  const str = (s: string) => {
    const bytes = encoder.encode(s);
    out.push(OP.BINUNICODE);
    u32(bytes.length);
    for (const b of bytes) out.push(b);
  };
  const global = (module: string, name: string) => {
    out.push(OP.GLOBAL, ...encoder.encode(`${module}\n${name}\n`));
  };
  const int = (n: number) => {
    if (!Number.isSafeInteger(n)) throw new QuadraError('INTERNAL', `pickle: ${n} is not a whole number; write floats as PyFloat`);
    if (n >= 0 && n < 0x100) out.push(OP.BININT1, n);
    else if (n >= 0 && n < 0x10000) out.push(OP.BININT2, n & 0xff, n >> 8);
    else if (n >= -0x80000000 && n <= 0x7fffffff) {
      out.push(OP.BININT);
      u32(n);
    } else {
      // LONG1: little-endian two's complement, as few bytes as keep the sign.
      const bytes: number[] = [];
      let v = BigInt(n);
      for (;;) {
        const byte = Number(v & 0xffn);
        bytes.push(byte);
        v >>= 8n;
        if ((v === 0n && byte < 0x80) || (v === -1n && byte >= 0x80)) break;
      }
      out.push(OP.LONG1, bytes.length, ...bytes);
    }
  };
  const tuple = (items: readonly PyValue[]) => {
    if (items.length === 0) return out.push(OP.EMPTY_TUPLE);
    if (items.length > 3) out.push(OP.MARK);
    for (const item of items) write(item);
    out.push(items.length > 3 ? OP.TUPLE : [OP.TUPLE1, OP.TUPLE2, OP.TUPLE3][items.length - 1]!);
  };
  const emptyOrderedDict = () => {
    global('collections', 'OrderedDict');
    out.push(OP.EMPTY_TUPLE, OP.REDUCE);
  };
  const setItems = (entries: ReadonlyArray<readonly [string | number, PyValue]>) => {
    if (entries.length === 0) return;
    out.push(OP.MARK);
    for (const [key, value] of entries) {
      write(key);
      write(value);
    }
    out.push(OP.SETITEMS);
  };
  function write(value: PyValue): void {
    if (value === null) out.push(OP.NONE);
    else if (value === true) out.push(OP.NEWTRUE);
    else if (value === false) out.push(OP.NEWFALSE);
    else if (typeof value === 'number') int(value);
    else if (typeof value === 'string') str(value);
    else if (value instanceof PyFloat) {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setFloat64(0, value.value, false);
      out.push(OP.BINFLOAT, ...bytes);
    } else if (value instanceof PyTuple) tuple(value.items);
    else if (Array.isArray(value)) {
      out.push(OP.EMPTY_LIST);
      if (value.length === 0) return;
      out.push(OP.MARK);
      for (const item of value) write(item);
      out.push(OP.APPENDS);
    } else if (value instanceof PyDict) {
      if (value.ordered) emptyOrderedDict();
      else out.push(OP.EMPTY_DICT);
      setItems(value.entries);
      if (value.attributes.length > 0) {
        out.push(OP.EMPTY_DICT);
        setItems(value.attributes);
        out.push(OP.BUILD);
      }
    } else {
      const key = String(storages.length);
      const data = value.data;
      storages.push({ key, bytes: littleEndianBytes(data) });
      const stride: number[] = [];
      let step = 1;
      for (let d = value.shape.length - 1; d >= 0; d--) {
        stride.unshift(step);
        step *= value.shape[d]!;
      }
      global('torch._utils', '_rebuild_tensor_v2');
      out.push(OP.MARK, OP.MARK);
      str('storage');
      global('torch', 'FloatStorage');
      str(key);
      str('cpu');
      int(data.length);
      out.push(OP.TUPLE, OP.BINPERSID);
      int(0);
      tuple(value.shape);
      tuple(stride);
      out.push(OP.NEWFALSE);
      emptyOrderedDict();
      out.push(OP.TUPLE, OP.REDUCE);
    }
  }
  write(root);
  out.push(OP.STOP);
  return { pickle: Uint8Array.from(out), storages };
}

function littleEndianBytes(data: Float32Array): Uint8Array {
  const bytes = new Uint8Array(data.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i]!, true);
  return bytes;
}

// ---- the torch.save zip ------------------------------------------------------------------------

/**
 * A torch.save zip: entries stored, each one's data at a multiple of 64 bytes. fflate writes
 * local headers back to back (30 bytes + name + extra fields + data), so the padding each needs
 * is known before it writes; an extra field is 4 bytes of header plus its padding.
 */
export function torchZip(root: string, pickle: Uint8Array, storages: Array<{ key: string; bytes: Uint8Array }>): Uint8Array {
  const entries: Array<[string, Uint8Array]> = [
    [`${root}/data.pkl`, pickle],
    [`${root}/byteorder`, new TextEncoder().encode('little')],
    ...storages.map(({ key, bytes }): [string, Uint8Array] => [`${root}/data/${key}`, bytes]),
    [`${root}/version`, new TextEncoder().encode('3\n')],
  ];
  const files: Record<string, [Uint8Array, ZipOptions]> = {};
  let offset = 0;
  for (const [name, bytes] of entries) {
    const nameLength = new TextEncoder().encode(name).length;
    const padding = (ALIGNMENT - ((offset + 30 + nameLength + 4) % ALIGNMENT)) % ALIGNMENT;
    files[name] = [bytes, { level: 0, mtime: ENTRY_TIME, extra: { [PADDING_FIELD_ID]: new Uint8Array(padding).fill(0x5a) } }];
    offset += 30 + nameLength + 4 + padding + bytes.length;
  }
  return zipSync(files);
}

// ---- the original's checkpoint -----------------------------------------------------------------

type Network = 'field_network' | 'spike_network';

/**
 * `network.parameters()` order, which is also its state_dict order and how its optimizer indexes
 * state: a module's own parameters (the spiking network's threshold and decay) before its children's.
 */
function parameterOrder(layout: ParamLayout, network: Network): ParamEntry[] {
  const entries = layout.entries.filter((e) => e.name.startsWith(`${network}.`));
  const own = entries.filter((e) => e.name.split('.').length === 2);
  return [...own, ...entries.filter((e) => !own.includes(e))];
}

/** Every module's prefix in `network` (state_dict's `_metadata`, each {version: 1}). */
const MODULE_PREFIXES: Record<Network, string[]> = {
  field_network: ['', 'encoder', ...[0, 1, 2, 3, 4, 5, 6].map((i) => `encoder.${i}`), 'decoder', ...[0, 1, 2, 3, 4].map((i) => `decoder.${i}`)],
  spike_network: ['', 'fc1', 'fc2', 'fc3'],
};

function stateDict(network: Network, order: ParamEntry[], parameters: Float32Array): PyDict {
  const entries = order.map((e): [string, PyValue] => [e.name.slice(network.length + 1), new PyTensor(e.shape, parameters.slice(e.offset, e.offset + e.size))]);
  const metadata = new PyDict(MODULE_PREFIXES[network].map((prefix): [string, PyValue] => [prefix, new PyDict([['version', 1]])]), true);
  return new PyDict(entries, true, [['_metadata', metadata]]);
}

/**
 * AdamW's state_dict as torch ≥ 1.12 writes it: per parameter {step (a 0-d float tensor), exp_avg,
 * exp_avg_sq}, and one param group. An optimizer that never stepped has empty state, as the
 * original's spiking one (its network gets no gradients there).
 */
function optimizerStateDict(order: ParamEntry[], optimizer: OptimizerState | null, step: number, input: ExportInput): PyDict {
  const o = input.engine.optimizer;
  const state =
    optimizer && step > 0
      ? order.map((e, i): [number, PyValue] => [
          i,
          new PyDict([
            ['step', new PyTensor([], Float32Array.of(step))],
            ['exp_avg', new PyTensor(e.shape, optimizer.m.slice(e.offset, e.offset + e.size))],
            ['exp_avg_sq', new PyTensor(e.shape, optimizer.v.slice(e.offset, e.offset + e.size))],
          ]),
        ])
      : [];
  const group = new PyDict([
    ['lr', new PyFloat(o.learningRate)],
    ['betas', new PyTuple([new PyFloat(o.beta1), new PyFloat(o.beta2)])],
    ['eps', new PyFloat(o.epsilon)],
    ['weight_decay', new PyFloat(o.weightDecay)],
    ['amsgrad', false],
    // The original builds both optimisers with foreach=True; a loaded param group keeps it.
    ['foreach', true],
    ['maximize', false],
    ['capturable', false],
    // torch 2.x's two extra keys; torch 1.13 carries them along unused.
    ['differentiable', false],
    ['fused', null],
    ['params', order.map((_, i) => i)],
  ]);
  return new PyDict([
    ['state', new PyDict(state)],
    ['param_groups', [group]],
  ]);
}

/** The original project's checkpoint dict for `input`, as a torch.save zip. */
export function exportPth(input: ExportInput): Uint8Array {
  const { contents } = input;
  const layout = buildLayout(contents.model);
  if (contents.parameters.length !== layout.total) {
    throw new QuadraError('INTERNAL', `pth export: ${contents.parameters.length} parameters for a model of ${layout.total}`);
  }
  const field = parameterOrder(layout, 'field_network');
  const spike = parameterOrder(layout, 'spike_network');
  const optimizer = contents.optimizer;
  const root = new PyDict([
    ['field_network', stateDict('field_network', field, contents.parameters)],
    ['spike_network', stateDict('spike_network', spike, contents.parameters)],
    ['optimizer_field', optimizerStateDict(field, optimizer, optimizer?.fieldStep ?? 0, input)],
    ['optimizer_spike', optimizerStateDict(spike, optimizer, optimizer?.spikeStep ?? 0, input)],
  ]);
  const { pickle, storages } = pickleWithStorages(root);
  return torchZip(PTH_ROOT, pickle, storages);
}
