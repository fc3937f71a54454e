/**
 * The original Python project's `.pth` checkpoints, read without PyTorch and without executing
 * the pickle: the zip (zip-entries.ts), then data.pkl through the restricted unpickler
 * (unpickler.ts), then the result mapped onto our flat parameter layout.
 *
 * Accepted: what its `engine.save_checkpoint()` writes — `{field_network, spike_network,
 * optimizer_field, optimizer_spike, config}` — and a bare combined state_dict
 * (`field_network.…` / `spike_network.…` keys); in both, the `module` components DataParallel and
 * DDP add to keys (`encoder.module.0.weight`, `module.fc1.weight`) are dropped.
 */
import { EngineConfigSchema, ModelConfigSchema, type EngineConfig, type ModelConfig } from '../../../src-shared/engine-config';
import { QuadraError } from '../../../src-shared/errors';
import type { CheckpointContents } from '../checkpoint';
import type { OptimizerState } from '../kernel';
import { buildLayout, type ParamEntry, type ParamLayout } from '../layout';
import { readTorchArchive } from './zip-entries';
import { describe, materializeTensor, PickledObject, PickleDict, PickleList, TensorRef, unpickle, type PickleValue } from './unpickler';

export { isZip } from './zip-entries';

const NETWORKS = ['field_network', 'spike_network'] as const;
type Network = (typeof NETWORKS)[number];
const ENGINE_KEYS = new Set(['field_network', 'spike_network', 'optimizer_field', 'optimizer_spike', 'config']);
const FIELD_STATE = 'field_state';

/**
 * torch.save's format before PyTorch 1.6 (or with `_use_new_zipfile_serialization=False`): a bare
 * pickle stream opening with PROTO 2 and LONG1 of torch's magic number 0x1950a86a20f9469cfc6c.
 */
export function isLegacyTorchSave(bytes: Uint8Array): boolean {
  const head = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
  return bytes.length >= head.length && head.every((b, i) => bytes[i] === b);
}

export function decodePthCheckpoint(bytes: Uint8Array, fileLabel: string, expected?: Partial<ModelConfig>): CheckpointContents {
  const fail: (message: string, details?: Record<string, unknown>) => never = (message, details = {}) => {
    throw new QuadraError('INVALID_FILE', `${fileLabel}: ${message}`, { file: fileLabel, ...details });
  };
  const archive = readTorchArchive(bytes, fileLabel);
  const root = unpickle(archive.pickle, { fileLabel, storageBytes: (key) => archive.storages.get(key) });
  if (!(root instanceof PickleDict)) return fail(`data.pkl holds ${describe(root)}, expected a dict (a checkpoint or a state_dict)`);

  const isEngine = root.entries.has('field_network') || root.entries.has('spike_network');
  const tensors = new Map<string, { tensor: TensorRef; key: string }>();
  const addTensor = (name: string, key: string, value: PickleValue) => {
    if (!(value instanceof TensorRef)) fail(`"${key}" is ${describe(value)}, expected a tensor`, { tensor: key });
    if (tensors.has(name)) fail(`"${key}" and "${tensors.get(name)!.key}" are the same parameter once DataParallel's "module" is dropped`, { tensor: key });
    tensors.set(name, { tensor: value, key });
  };
  let config: PickledObject | null = null;
  let optimizers: Partial<Record<Network, PickleDict>> | null = null;

  if (isEngine) {
    const unexpected = [...root.entries.keys()].filter((k) => typeof k !== 'string' || !ENGINE_KEYS.has(k));
    if (unexpected.length > 0) fail(`unexpected entr${unexpected.length > 1 ? 'ies' : 'y'} ${unexpected.map((k) => `"${k}"`).join(', ')} in the checkpoint dict — expected ${[...ENGINE_KEYS].join(', ')}`);
    for (const network of NETWORKS) {
      const dict = root.entries.get(network);
      if (!(dict instanceof PickleDict)) return fail(`"${network}" is ${describe(dict)}, expected that network's state_dict`);
      for (const [key, value] of dict.entries) {
        const name = `${network}.${withoutModule(String(key))}`;
        addTensor(name, `${network}.${key}`, value);
      }
    }
    const cfg = root.entries.get('config');
    if (cfg !== undefined && cfg !== null) {
      if (!(cfg instanceof PickledObject)) return fail(`"config" is ${describe(cfg)}, expected a GPUConfig`);
      config = cfg;
    }
    if (root.entries.has('optimizer_field') || root.entries.has('optimizer_spike')) {
      optimizers = {};
      for (const network of NETWORKS) {
        const key = network === 'field_network' ? 'optimizer_field' : 'optimizer_spike';
        const value = root.entries.get(key);
        if (value === undefined || value === null) continue;
        if (!(value instanceof PickleDict)) return fail(`"${key}" is ${describe(value)}, expected an optimizer state_dict`);
        optimizers[network] = value;
      }
    }
  } else {
    for (const [key, value] of root.entries) {
      const name = withoutModule(String(key));
      if (name === FIELD_STATE || NETWORKS.some((n) => name.startsWith(`${n}.`))) {
        addTensor(name, String(key), value);
        continue;
      }
      if (/^(encoder|decoder|fc[123])\.|^(threshold|decay)$/.test(name)) {
        fail(`holds one network's state_dict ("${key}"); a checkpoint needs both networks, as field_network.* and spike_network.* (the combined model's state_dict)`, { tensor: key });
      }
      fail(`unexpected entry "${key}" — not part of the Quadra Matrix model (expected field_network.* and spike_network.* tensors)`, { tensor: key });
    }
  }

  // The model: sizes from the shapes, steps and the rest from the config when it says, then `expected`.
  const inferred = inferModel(tensors, fileLabel);
  const plainConfig = config ? plainObject(config) : null;
  const fromConfig = plainConfig ? engineConfigFrom(plainConfig) : null;
  const parsed = ModelConfigSchema.safeParse({ ...inferred, ...(fromConfig?.model ?? {}), ...expected });
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    fail(`the model config (from its shapes${fromConfig ? ' and its GPUConfig' : ''}) is invalid — ${problems}`, { field: 'config' });
  }
  const model = parsed.data;
  for (const key of ['fieldSize', 'hiddenSize', 'spikingHiddenSize'] as const) {
    if (model[key] !== inferred[key]) {
      throw new QuadraError('SHAPE_MISMATCH', `${fileLabel}: the tensors are for ${key} ${inferred[key]}, but ${key} ${model[key]} was expected`, {
        file: fileLabel,
        field: key,
        expected: model[key],
        found: inferred[key],
      });
    }
  }
  const layout = buildLayout(model);
  const known = new Set([...layout.byName.keys(), FIELD_STATE]);
  const unexpected = [...tensors.entries()].filter(([name]) => !known.has(name)).map(([, t]) => t.key);
  if (unexpected.length > 0) {
    fail(`unexpected tensor${unexpected.length > 1 ? 's' : ''} ${unexpected.map((n) => `"${n}"`).join(', ')} — not part of the Quadra Matrix model`, { tensors: unexpected });
  }

  const parameters = new Float32Array(layout.total);
  for (const e of layout.entries) {
    const found = tensors.get(e.name);
    if (!found) return fail(`missing tensor "${e.name}" (shape [${e.shape.join(', ')}])`, { tensor: e.name });
    parameters.set(readTensor(found.tensor, e.shape, found.key, fileLabel), e.offset);
  }
  let fieldState: Float32Array | null = null;
  const fs = tensors.get(FIELD_STATE);
  if (fs) fieldState = readTensor(fs.tensor, [model.fieldSize], fs.key, fileLabel);

  const optimizer = optimizers ? readOptimizers(optimizers, layout, fileLabel) : null;
  const metadata: Record<string, string> = { pth_layout: isEngine ? 'engine checkpoint' : 'state_dict', pth_folder: archive.root };
  if (archive.version !== null) metadata.pth_version = archive.version;
  if (config && plainConfig) {
    metadata.pth_config_class = config.qualifiedName;
    metadata.pth_config = JSON.stringify(plainConfig);
  }
  return {
    model,
    parameters,
    optimizer,
    fieldState,
    step: optimizer ? optimizer.fieldStep : null,
    origin: 'pth',
    engineConfig: fromConfig ? { ...fromConfig.rest, model } : null,
    metadata,
  };
}

/** DataParallel and DDP wrap a module as `.module`; its keys gain a `module` component wherever the wrap was. */
function withoutModule(key: string): string {
  return key
    .split('.')
    .filter((part) => part !== 'module')
    .join('.');
}

function inferModel(tensors: Map<string, { tensor: TensorRef; key: string }>, fileLabel: string): Pick<ModelConfig, 'fieldSize' | 'hiddenSize' | 'spikingHiddenSize'> {
  const shapeOf = (name: string): readonly number[] => {
    const t = tensors.get(name);
    if (!t) {
      throw new QuadraError('INVALID_FILE', `${fileLabel}: missing tensor "${name}" — not a Quadra Matrix checkpoint (expected the reference state_dict keys)`, {
        file: fileLabel,
        tensor: name,
      });
    }
    if (t.tensor.shape.length !== 2) {
      throw new QuadraError('SHAPE_MISMATCH', `${fileLabel}: tensor "${t.key}" has shape [${t.tensor.shape.join(', ')}], expected rank 2`, { file: fileLabel, tensor: t.key });
    }
    return t.tensor.shape;
  };
  const [hidden, field] = shapeOf('field_network.encoder.0.weight') as [number, number];
  const [spikingHidden] = shapeOf('spike_network.fc1.weight') as [number, number];
  return { fieldSize: field, hiddenSize: hidden, spikingHiddenSize: spikingHidden };
}

/** A tensor of exactly `shape`, as float32, all finite. */
function readTensor(tensor: TensorRef, shape: readonly number[], key: string, fileLabel: string): Float32Array {
  if (tensor.shape.length !== shape.length || tensor.shape.some((d, i) => d !== shape[i])) {
    throw new QuadraError('SHAPE_MISMATCH', `${fileLabel}: tensor "${key}" has shape [${tensor.shape.join(', ')}], expected [${shape.join(', ')}]`, {
      file: fileLabel,
      tensor: key,
      expected: shape,
      found: tensor.shape,
    });
  }
  const data = materializeTensor(tensor);
  const bad = data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new QuadraError('INVALID_FILE', `${fileLabel}: tensor "${key}" has a non-finite value (${data[bad]}) at flat index ${bad}, expected only finite values`, {
      file: fileLabel,
      tensor: key,
    });
  }
  return data;
}

/**
 * The position of each parameter in `network.parameters()`, which is how a PyTorch optimizer
 * indexes its state: a module's own parameters come before its children's, so the spiking
 * network's `threshold` and `decay` (registered on it directly) are 0 and 1, before fc1…fc3.
 */
function registrationOrder(layout: ParamLayout, network: Network): ParamEntry[] {
  const entries = layout.entries.filter((e) => e.name.startsWith(`${network}.`));
  const own = entries.filter((e) => e.name.split('.').length === 2);
  return [...own, ...entries.filter((e) => !own.includes(e))];
}

function readOptimizers(optimizers: Partial<Record<Network, PickleDict>>, layout: ParamLayout, fileLabel: string): OptimizerState {
  const m = new Float32Array(layout.total);
  const v = new Float32Array(layout.total);
  const steps: Record<Network, number> = { field_network: 0, spike_network: 0 };
  for (const network of NETWORKS) {
    const dict = optimizers[network];
    // The original's spiking network gets no gradients, so its optimizer state is empty: zero moments, step 0.
    if (!dict) continue;
    const label = network === 'field_network' ? 'optimizer_field' : 'optimizer_spike';
    const fail: (message: string) => never = (message) => {
      throw new QuadraError('INVALID_FILE', `${fileLabel}: ${label} ${message}`, { file: fileLabel, field: label });
    };
    const order = registrationOrder(layout, network);
    for (const key of dict.entries.keys()) if (key !== 'state' && key !== 'param_groups') fail(`has an unexpected entry "${key}"; expected state and param_groups`);
    const groups = dict.entries.get('param_groups');
    if (groups !== undefined) {
      if (!(groups instanceof PickleList)) return fail(`param_groups is ${describe(groups)}, expected a list`);
      const indices: PickleValue[] = [];
      for (const group of groups.items) {
        const params = group instanceof PickleDict ? group.entries.get('params') : undefined;
        if (!(params instanceof PickleList)) return fail(`has a parameter group without a params list`);
        indices.push(...params.items);
      }
      if (indices.length !== order.length || indices.some((index, i) => index !== i)) {
        fail(`param_groups list ${indices.length} parameters (${indices.slice(0, 12).map((i) => describe(i)).join(', ')}${indices.length > 12 ? ', …' : ''}); the ${network} has ${order.length}, numbered 0…${order.length - 1}`);
      }
    }
    const state = dict.entries.get('state') ?? new PickleDict();
    if (!(state instanceof PickleDict)) return fail(`state is ${describe(state)}, expected a dict`);
    const seenSteps = new Map<number, number>();
    for (const [index, entry] of state.entries) {
      const param = typeof index === 'number' ? order[index] : undefined;
      if (!param) return fail(`has state for parameter ${describe(index)}; the ${network} has parameters 0…${order.length - 1}`);
      if (!(entry instanceof PickleDict)) return fail(`state[${index}] is ${describe(entry)}, expected a dict`);
      for (const key of entry.entries.keys()) {
        if (key !== 'step' && key !== 'exp_avg' && key !== 'exp_avg_sq') fail(`state[${index}] has "${key}"; only Adam(W)'s step, exp_avg and exp_avg_sq are read (amsgrad is not)`);
      }
      const tensorAt = (name: string): Float32Array => {
        const t = entry.entries.get(name);
        if (!(t instanceof TensorRef)) return fail(`state[${index}].${name} is ${describe(t)}, expected a tensor shaped like ${param.name}`);
        return readTensor(t, param.shape, `${label}.state[${index}].${name} (${param.name})`, fileLabel);
      };
      m.set(tensorAt('exp_avg'), param.offset);
      const second = tensorAt('exp_avg_sq');
      const negative = second.findIndex((x) => x < 0);
      if (negative >= 0) fail(`state[${index}].exp_avg_sq (${param.name}) holds a negative value at flat index ${negative}; second moments are never negative`);
      v.set(second, param.offset);
      seenSteps.set(index as number, readStep(entry.entries.get('step'), `${label}.state[${index}].step`, fileLabel));
    }
    const distinct = [...new Set(seenSteps.values())];
    if (distinct.length > 1) {
      const shown = [...seenSteps].map(([i, s]) => `${i}: ${s}`).join(', ');
      fail(`has parameters at different step counts (${shown}); this engine keeps one step count per optimizer`);
    }
    // A parameter missing from a non-empty state never had a gradient: zero moments, like the empty case.
    steps[network] = distinct[0] ?? 0;
  }
  return { m, v, fieldStep: steps.field_network, spikeStep: steps.spike_network };
}

/** Adam's step: an int in files from torch < 1.12, a 0-d float tensor since. */
function readStep(value: PickleValue | undefined, what: string, fileLabel: string): number {
  let step: number | null = null;
  if (typeof value === 'number') step = value;
  else if (value instanceof TensorRef && value.numel === 1) step = materializeTensor(value)[0]!;
  if (step === null || !Number.isSafeInteger(step) || step < 0) {
    throw new QuadraError('INVALID_FILE', `${fileLabel}: ${what} is ${value instanceof TensorRef ? `a tensor of shape [${value.shape.join(', ')}] holding ${step}` : describe(value)}, expected a whole number ≥ 0`, {
      file: fileLabel,
      field: what,
    });
  }
  return step;
}

/** A GPUConfig's attributes as plain data: numbers, strings, booleans and None; anything else is left out. */
function plainObject(object: PickledObject): Record<string, number | string | boolean | null> {
  const out: Record<string, number | string | boolean | null> = {};
  for (const [key, value] of object.state?.entries ?? []) {
    if (typeof value === 'bigint') out[String(key)] = String(value);
    else if (value === null || typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean') out[String(key)] = value;
  }
  return out;
}

/** The original's GPUConfig has no model sizes; a copy that carries them (field_size, hidden_size, …) sets ours. */
const MODEL_FIELDS: Record<string, keyof ModelConfig> = {
  field_size: 'fieldSize',
  hidden_size: 'hiddenSize',
  spiking_hidden_size: 'spikingHiddenSize',
  spike_hidden_size: 'spikingHiddenSize',
  num_steps: 'spikingSteps',
  spiking_steps: 'spikingSteps',
  dropout: 'dropout',
};

function engineConfigFrom(config: Record<string, unknown>): { model: Partial<ModelConfig>; rest: Partial<Omit<EngineConfig, 'model'>> } | null {
  const model: Record<string, unknown> = {};
  for (const [from, to] of Object.entries(MODEL_FIELDS)) if (config[from] !== undefined) model[to] = config[from];
  if (Object.keys(model).length === 0) return null;
  const rest: Partial<Omit<EngineConfig, 'model'>> = {};
  const batchSize = EngineConfigSchema.shape.batchSize.safeParse(config.batch_size);
  if (config.batch_size !== undefined && batchSize.success) rest.batchSize = batchSize.data;
  return { model, rest };
}
