/**
 * A restricted unpickler for the `data.pkl` of a torch.save checkpoint: an interpreter of pickle
 * opcodes over a byte array that builds plain values and never calls anything the pickle names.
 * It knows the few globals a checkpoint of our model needs — OrderedDict, _rebuild_tensor_v2, the
 * typed storages and the original project's GPUConfig — as tags; any other global is refused by
 * name before anything else happens. Protocol 2 (torch.save's default) and the protocol 3–5
 * opcodes a checkpoint pickled with a newer protocol uses. Every stack, memo and count is bounded.
 */
import { QuadraError } from '../../../src-shared/errors';
import { bfloat16BitsToFloat32, float16BitsToFloat32 } from '../safetensors';

// ---- values ------------------------------------------------------------------------------------

export type PickleValue = null | boolean | number | bigint | string | PickleTuple | PickleList | PickleDict | PickleGlobal | StorageRef | TensorRef | PickledObject;
/** Python dict keys a checkpoint uses: names, and optimizer parameter indices. */
export type DictKey = string | number;

export class PickleTuple {
  constructor(readonly items: readonly PickleValue[]) {}
}

export class PickleList {
  readonly items: PickleValue[] = [];
}

export class PickleDict {
  readonly entries = new Map<DictKey, PickleValue>();
  /** Instance attributes a BUILD set on an OrderedDict (torch's state_dict keeps `_metadata` there). */
  attributes: Map<string, PickleValue> | null = null;
}

export type TorchDtype = 'F32' | 'F16' | 'BF16';
const DTYPE_BYTES: Record<TorchDtype, number> = { F32: 4, F16: 2, BF16: 2 };

/** What an allowed global stands for; nothing here is ever called. */
export type GlobalKind = { kind: 'ordered-dict' } | { kind: 'rebuild-tensor-v2' } | { kind: 'storage'; dtype: TorchDtype } | { kind: 'gpu-config' };

export class PickleGlobal {
  constructor(
    readonly qualifiedName: string,
    readonly tag: GlobalKind,
  ) {}
}

/** A storage named by a persistent id; its bytes were checked to hold exactly `numel` elements. */
export class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: TorchDtype,
    readonly numel: number,
    readonly location: string,
    readonly bytes: Uint8Array,
  ) {}
}

/** `_rebuild_tensor_v2(storage, offset, size, stride, …)`, bounds-checked but not yet copied out. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}

  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
}

/** An instance of an allowed class (GPUConfig): its name and the state dict its BUILD gave it. */
export class PickledObject {
  state: PickleDict | null = null;
  constructor(readonly qualifiedName: string) {}
}

// ---- the allowed globals -----------------------------------------------------------------------

const ALLOWED_GLOBALS = new Map<string, GlobalKind>([
  ['collections.OrderedDict', { kind: 'ordered-dict' }],
  ['torch._utils._rebuild_tensor_v2', { kind: 'rebuild-tensor-v2' }],
  ['torch.FloatStorage', { kind: 'storage', dtype: 'F32' }],
  ['torch.HalfStorage', { kind: 'storage', dtype: 'F16' }],
  ['torch.BFloat16Storage', { kind: 'storage', dtype: 'BF16' }],
  // The original project's engine config, saved from its module or from a script run directly.
  ['quadra_matrix_gpu.GPUConfig', { kind: 'gpu-config' }],
  ['__main__.GPUConfig', { kind: 'gpu-config' }],
]);

// ---- limits ------------------------------------------------------------------------------------

export interface UnpicklerLimits {
  /** Values on the stack, counting those set aside under marks. */
  maxStack: number;
  /** Marks open at once (nesting depth of tuples, lists and dicts being built). */
  maxMarks: number;
  maxMemo: number;
  /** Items in all tuples, lists and dicts together. */
  maxItems: number;
}

/** A checkpoint's pickle needs a few dozen stack slots, a depth of 6 and under a thousand memo entries. */
export const UNPICKLER_LIMITS: UnpicklerLimits = { maxStack: 100_000, maxMarks: 1_000, maxMemo: 100_000, maxItems: 1_000_000 };
const MAX_GLOBAL_NAME = 200;
const MAX_RANK = 16;

export interface UnpickleOptions {
  /** Names the file in errors. */
  fileLabel: string;
  /** The bytes of storage `key` (`data/<key>` in the archive), or undefined. */
  storageBytes: (key: string) => Uint8Array | undefined;
  limits?: UnpicklerLimits;
}

// ---- the interpreter ---------------------------------------------------------------------------

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

export function unpickle(data: Uint8Array, options: UnpickleOptions): PickleValue {
  const limits = options.limits ?? UNPICKLER_LIMITS;
  const label = options.fileLabel;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const stack: StackItem[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PickleValue>();
  const storages = new Map<string, StorageRef>();
  let items = 0;
  let pos = 0;
  let opStart = 0;
  let op = 0;

  // Typed explicitly so that calls narrow like `throw` does.
  const fail: (message: string, details?: Record<string, unknown>) => never = (message, details = {}) => {
    throw new QuadraError('INVALID_FILE', `${label}: data.pkl ${message}`, { file: label, offset: opStart, ...details });
  };
  const at = (): string => `${opcodeName(op)} at byte ${opStart}`;
  const need = (n: number): void => {
    if (pos + n > data.length) fail(`ends inside ${at()} (truncated)`);
  };
  const u8 = (): number => {
    need(1);
    return data[pos++]!;
  };
  const u16 = (): number => {
    need(2);
    pos += 2;
    return view.getUint16(pos - 2, true);
  };
  const u32 = (): number => {
    need(4);
    pos += 4;
    return view.getUint32(pos - 4, true);
  };
  const bytes = (n: number): Uint8Array => {
    need(n);
    pos += n;
    return data.subarray(pos - n, pos);
  };
  const text = (raw: Uint8Array): string => {
    try {
      return utf8.decode(raw);
    } catch {
      return fail(`has a string that is not valid UTF-8 (${at()})`);
    }
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0 || end - pos > MAX_GLOBAL_NAME) fail(`has no name of at most ${MAX_GLOBAL_NAME} characters ending in a newline (${at()})`);
    const raw = data.subarray(pos, end);
    pos = end + 1;
    return text(raw);
  };

  const push = (value: StackItem): void => {
    if (stack.length >= limits.maxStack) fail(`needs more than ${limits.maxStack} stack entries (${at()}); a checkpoint needs a few dozen`);
    stack.push(value);
  };
  const pop = (): PickleValue => {
    const floor = marks.length > 0 ? marks[marks.length - 1]! : 0;
    if (stack.length <= floor) fail(`pops an empty stack (${at()}): stack underflow`);
    return stack.pop() as PickleValue;
  };
  const top = (): PickleValue => {
    const floor = marks.length > 0 ? marks[marks.length - 1]! : 0;
    if (stack.length <= floor) fail(`reads an empty stack (${at()}): stack underflow`);
    return stack[stack.length - 1] as PickleValue;
  };
  /** Everything pushed since the last MARK, which is removed. */
  const popMark = (): PickleValue[] => {
    const start = marks.pop();
    if (start === undefined) return fail(`has ${at()} without a MARK before it`);
    const values = stack.splice(start) as PickleValue[];
    stack.pop(); // the MARK itself
    return values;
  };
  const count = (n: number): void => {
    items += n;
    if (items > limits.maxItems) fail(`builds more than ${limits.maxItems} container items (${at()}); a checkpoint builds a few thousand`);
  };
  const memoize = (index: number): void => {
    if (!memo.has(index) && memo.size >= limits.maxMemo) fail(`stores more than ${limits.maxMemo} memo entries (${at()})`);
    memo.set(index, top());
  };
  const recall = (index: number): PickleValue => {
    const value = memo.get(index);
    if (value === undefined) return fail(`reads memo entry ${index}, which was never stored (${at()})`);
    return value;
  };
  const resolve = (module: string, name: string): PickleGlobal => {
    const qualified = `${module}.${name}`;
    const tag = ALLOWED_GLOBALS.get(qualified);
    if (!tag) {
      throw new QuadraError('INVALID_FILE', `${label}: data.pkl references ${qualified}, which a checkpoint never needs; not loaded`, {
        file: label,
        global: qualified,
        offset: opStart,
      });
    }
    return new PickleGlobal(qualified, tag);
  };
  const int = (value: PickleValue, what: string): number => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) fail(`${what} is ${describe(value)}, expected a whole number (${at()})`);
    return value;
  };
  const setItem = (dict: PickleValue, key: PickleValue, value: PickleValue): void => {
    if (!(dict instanceof PickleDict)) fail(`sets an item on ${describe(dict)}, expected a dict (${at()})`);
    if (typeof key !== 'string' && !(typeof key === 'number' && Number.isSafeInteger(key))) {
      fail(`uses ${describe(key)} as a dict key; a checkpoint's keys are names and whole numbers (${at()})`);
    }
    count(1);
    dict.entries.set(key, value);
  };
  const append = (list: PickleValue, values: PickleValue[]): void => {
    if (!(list instanceof PickleList)) fail(`appends to ${describe(list)}, expected a list (${at()})`);
    count(values.length);
    for (const value of values) list.items.push(value);
  };
  const tuple = (values: PickleValue[]): PickleTuple => {
    count(values.length);
    return new PickleTuple(values);
  };

  const persistentLoad = (pid: PickleValue): StorageRef => {
    const parts = pid instanceof PickleTuple ? pid.items : [];
    const [kind, type, key, location, numel] = parts;
    if (parts.length !== 5 || kind !== 'storage') fail(`has persistent id ${describe(pid)}, expected ('storage', type, key, location, numel) (${at()})`);
    if (!(type instanceof PickleGlobal) || type.tag.kind !== 'storage') return fail(`has a storage of type ${describe(type)}, expected a typed storage (${at()})`);
    if (typeof key !== 'string' || typeof location !== 'string') return fail(`has a storage whose key or location is not a string (${at()})`);
    const dtype = type.tag.dtype;
    const elements = int(numel ?? null, `the element count of storage "${key}"`);
    if (elements < 0) fail(`has storage "${key}" with ${elements} elements (${at()})`);
    const known = storages.get(key);
    if (known) {
      if (known.dtype !== dtype || known.numel !== elements) fail(`names storage "${key}" twice with different types or sizes (${at()})`);
      return known;
    }
    const raw = options.storageBytes(key);
    if (!raw) return fail(`needs storage "${key}", but the archive has no data/${key} (${at()})`, { storage: key });
    const expected = elements * DTYPE_BYTES[dtype];
    if (raw.length !== expected) {
      fail(`says storage "${key}" holds ${elements} ${dtype} elements (${expected} bytes), but data/${key} has ${raw.length} bytes (${at()})`, { storage: key });
    }
    const ref = new StorageRef(key, dtype, elements, location, raw);
    storages.set(key, ref);
    return ref;
  };

  const rebuildTensor = (args: readonly PickleValue[]): TensorRef => {
    if (args.length !== 6 && args.length !== 7) fail(`calls _rebuild_tensor_v2 with ${args.length} arguments, expected 6 or 7 (${at()})`);
    const [storage, offsetValue, size, stride, requiresGrad, hooks, metadata] = args;
    if (!(storage instanceof StorageRef)) return fail(`calls _rebuild_tensor_v2 on ${describe(storage)}, expected a storage (${at()})`);
    const offset = int(offsetValue ?? null, 'a tensor storage offset');
    if (!(size instanceof PickleTuple) || !(stride instanceof PickleTuple)) return fail(`has a tensor whose size or stride is not a tuple (${at()})`);
    if (size.items.length !== stride.items.length || size.items.length > MAX_RANK) {
      fail(`has a tensor with size of rank ${size.items.length} and stride of rank ${stride.items.length} (at most ${MAX_RANK}, equal) (${at()})`);
    }
    if (typeof requiresGrad !== 'boolean') fail(`has a tensor whose requires_grad is ${describe(requiresGrad)} (${at()})`);
    // Backward hooks would have to be called; a saved tensor has none, and no metadata.
    if (!(hooks instanceof PickleDict) || hooks.entries.size > 0) fail(`has a tensor with backward hooks (${at()}); a checkpoint has none`);
    if (metadata !== undefined && metadata !== null && !(metadata instanceof PickleDict && metadata.entries.size === 0)) {
      fail(`has a tensor with metadata ${describe(metadata)} (${at()}); a checkpoint's tensors have none`);
    }
    const shape = size.items.map((d) => int(d, 'a tensor dimension'));
    const strides = stride.items.map((s) => int(s, 'a tensor stride'));
    if (offset < 0 || shape.some((d) => d < 0) || strides.some((s) => s < 0)) fail(`has a tensor with a negative offset, size or stride (${at()})`);
    const shown = `size [${shape.join(', ')}], stride [${strides.join(', ')}], offset ${offset}`;
    let elements = 1;
    let last = offset; // the storage index of the last element
    for (let d = 0; d < shape.length; d++) {
      elements *= shape[d]!;
      if (shape[d]! > 0) last += (shape[d]! - 1) * strides[d]!;
      if (!Number.isSafeInteger(elements) || !Number.isSafeInteger(last)) fail(`has a tensor of ${shown}, far larger than its storage (${at()})`);
    }
    if (elements > 0 ? last >= storage.numel : offset > storage.numel) {
      fail(`has a tensor of ${shown} reaching past the ${storage.numel} elements of storage "${storage.key}" (${at()})`, { storage: storage.key });
    }
    return new TensorRef(storage, offset, shape, strides);
  };

  const reduce = (callable: PickleValue, args: PickleValue): PickleValue => {
    if (!(args instanceof PickleTuple)) return fail(`calls with arguments ${describe(args)}, expected a tuple (${at()})`);
    if (callable instanceof PickleGlobal && callable.tag.kind === 'ordered-dict') {
      if (args.items.length !== 0) fail(`builds an OrderedDict from arguments (${at()}); torch.save builds it empty, then sets items`);
      return new PickleDict();
    }
    if (callable instanceof PickleGlobal && callable.tag.kind === 'rebuild-tensor-v2') return rebuildTensor(args.items);
    return fail(`calls ${describe(callable)} (${at()}); only OrderedDict and _rebuild_tensor_v2 are rebuilt`);
  };

  const build = (target: PickleValue, state: PickleValue): void => {
    if (!(state instanceof PickleDict)) return fail(`sets the state of ${describe(target)} from ${describe(state)}, expected a dict (${at()})`);
    if (target instanceof PickledObject) {
      for (const key of state.entries.keys()) if (typeof key !== 'string') fail(`sets attribute ${describe(key)} on ${target.qualifiedName} (${at()})`);
      target.state = state;
      return;
    }
    if (target instanceof PickleDict) {
      const attributes = (target.attributes ??= new Map());
      for (const [key, value] of state.entries) {
        if (typeof key !== 'string') return fail(`sets attribute ${describe(key)} on an OrderedDict (${at()})`);
        attributes.set(key, value);
      }
      return;
    }
    fail(`sets the state of ${describe(target)} (${at()}); only a GPUConfig or an OrderedDict takes state`);
  };

  for (;;) {
    opStart = pos;
    if (pos >= data.length) fail(`ends at byte ${pos} without a STOP opcode (truncated)`);
    op = data[pos++]!;
    switch (op) {
      case 0x80: {
        const protocol = u8();
        if (protocol < 2 || protocol > 5) fail(`uses pickle protocol ${protocol}; torch.save writes protocol 2 (or 3–5 on request)`);
        break;
      }
      case 0x95: // FRAME: a length prefix for buffering, nothing to build
        bytes(8);
        break;
      case 0x2e: {
        // STOP
        if (marks.length > 0 || stack.length !== 1) fail(`stops with ${stack.length} values on the stack and ${marks.length} marks open, expected one value`);
        return stack[0] as PickleValue;
      }
      case 0x28: // MARK
        if (marks.length >= limits.maxMarks) fail(`nests more than ${limits.maxMarks} marks (${at()})`);
        marks.push(stack.length + 1);
        push(MARK);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4a: // BININT
        need(4);
        pos += 4;
        push(view.getInt32(pos - 4, true));
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement of n bytes
        const n = u8();
        if (n > 8) fail(`has an integer of ${n} bytes (${at()}); a checkpoint's fit in 8`);
        const raw = bytes(n);
        let value = 0n;
        for (let i = n - 1; i >= 0; i--) value = (value << 8n) | BigInt(raw[i]!);
        if (n > 0 && raw[n - 1]! & 0x80) value -= 1n << BigInt(8 * n);
        push(value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value);
        break;
      }
      case 0x47: // BINFLOAT: big-endian float64
        need(8);
        pos += 8;
        push(view.getFloat64(pos - 8, false));
        break;
      case 0x58: // BINUNICODE
        push(text(bytes(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(text(bytes(u8())));
        break;
      case 0x54: // BINSTRING (Python 2 str)
        push(text(bytes(u32())));
        break;
      case 0x55: // SHORT_BINSTRING
        push(text(bytes(u8())));
        break;
      case 0x7d: // EMPTY_DICT
        push(new PickleDict());
        break;
      case 0x5d: // EMPTY_LIST
        push(new PickleList());
        break;
      case 0x29: // EMPTY_TUPLE
        push(new PickleTuple([]));
        break;
      case 0x74: // TUPLE
        push(tuple(popMark()));
        break;
      case 0x85: // TUPLE1
        push(tuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        push(tuple([pop(), b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        push(tuple([pop(), b, c]));
        break;
      }
      case 0x73: {
        // SETITEM
        const value = pop();
        const key = pop();
        setItem(top(), key, value);
        break;
      }
      case 0x75: {
        // SETITEMS
        const values = popMark();
        if (values.length % 2 !== 0) fail(`has an odd number of values for SETITEMS at byte ${opStart}`);
        const dict = top();
        for (let i = 0; i < values.length; i += 2) setItem(dict, values[i]!, values[i + 1]!);
        break;
      }
      case 0x61: {
        // APPEND
        const value = pop();
        append(top(), [value]);
        break;
      }
      case 0x65: {
        // APPENDS
        const values = popMark();
        append(top(), values);
        break;
      }
      case 0x71: // BINPUT
        memoize(u8());
        break;
      case 0x72: // LONG_BINPUT
        memoize(u32());
        break;
      case 0x94: // MEMOIZE
        memoize(memo.size);
        break;
      case 0x68: // BINGET
        push(recall(u8()));
        break;
      case 0x6a: // LONG_BINGET
        push(recall(u32()));
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        push(resolve(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') return fail(`names a global with ${describe(module)} and ${describe(name)}, expected strings (${at()})`);
        push(resolve(module, name));
        break;
      }
      case 0x69: {
        // INST "module\nname\n": refused like a GLOBAL it would call (no allowed class is built this way)
        const module = line();
        const global = resolve(module, line());
        fail(`builds ${global.qualifiedName} with INST at byte ${opStart}; torch.save does not`);
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 0x81: {
        // NEWOBJ: cls.__new__(cls, *args) — only for GPUConfig, and only with no arguments
        const args = pop();
        const cls = pop();
        if (!(cls instanceof PickleGlobal) || cls.tag.kind !== 'gpu-config') return fail(`creates an instance of ${describe(cls)} (${at()}); only GPUConfig is created`);
        if (!(args instanceof PickleTuple) || args.items.length > 0) fail(`creates ${cls.qualifiedName} with arguments (${at()})`);
        push(new PickledObject(cls.qualifiedName));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        build(top(), state);
        break;
      }
      case 0x51: // BINPERSID
        push(persistentLoad(pop()));
        break;
      default:
        fail(`has opcode ${opcodeName(op)} at byte ${opStart}, which a checkpoint never uses; not loaded`, { opcode: op });
    }
  }
}

/** A tensor's elements in row-major order as float32, gathered through its strides. */
export function materializeTensor(tensor: TensorRef): Float32Array {
  const { storage, shape, stride, offset } = tensor;
  const out = new Float32Array(tensor.numel);
  if (out.length === 0) return out;
  const view = new DataView(storage.bytes.buffer, storage.bytes.byteOffset, storage.bytes.byteLength);
  const read: (index: number) => number =
    storage.dtype === 'F32'
      ? (i) => view.getFloat32(4 * i, true)
      : storage.dtype === 'F16'
        ? (i) => float16BitsToFloat32(view.getUint16(2 * i, true))
        : (i) => bfloat16BitsToFloat32(view.getUint16(2 * i, true));
  const rank = shape.length;
  const index = new Array<number>(rank).fill(0);
  let at = offset;
  for (let n = 0; n < out.length; n++) {
    out[n] = read(at);
    // Odometer over the multi-index; `at` follows it through the strides.
    for (let d = rank - 1; d >= 0; d--) {
      if (++index[d]! < shape[d]!) {
        at += stride[d]!;
        break;
      }
      at -= (shape[d]! - 1) * stride[d]!;
      index[d] = 0;
    }
  }
  return out;
}

/** A short description of a value for error messages; never walks into containers. */
export function describe(value: PickleValue | undefined): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'None';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (value instanceof PickleTuple) return `a tuple of ${value.items.length}`;
  if (value instanceof PickleList) return `a list of ${value.items.length}`;
  if (value instanceof PickleDict) return `a dict of ${value.entries.size}`;
  if (value instanceof PickleGlobal) return value.qualifiedName;
  if (value instanceof StorageRef) return `storage "${value.key}"`;
  if (value instanceof TensorRef) return `a tensor of shape [${value.shape.join(', ')}]`;
  return `a ${value.qualifiedName}`;
}

const OPCODE_NAMES: Record<number, string> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT', 0x4a: 'BININT', 0x4b: 'BININT1',
  0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID', 0x51: 'BINPERSID', 0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING', 0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND', 0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT',
  0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET', 0x6c: 'LIST', 0x5d: 'EMPTY_LIST',
  0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT', 0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS',
  0x47: 'BINFLOAT', 0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2',
  0x87: 'TUPLE3', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME', 0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

function opcodeName(op: number): string {
  const hex = `0x${op.toString(16).padStart(2, '0')}`;
  return OPCODE_NAMES[op] ? `${OPCODE_NAMES[op]} (${hex})` : `${hex} (no pickle opcode)`;
}
