import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ModelConfigSchema, parseEngineConfig, type EngineConfig, type ModelConfig } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import type { LossScalerState, OptimizerState } from './kernel';
import { buildLayout, type ParamLayout } from './layout';
import { decodePthCheckpoint, isLegacyTorchSave, isZip } from './pth/pth-checkpoint';
import { parseSafetensors, serializeSafetensors, type SafetensorsTensor, type TensorToWrite } from './safetensors';
import { versions } from './versions';

/**
 * Checkpoints are safetensors files whose tensor names are the reference PyTorch state_dict keys
 * (Linear weights [out, in]) with each network's prefix (`field_network.`, `spike_network.`): in
 * PyTorch, each network loads the tensors under its prefix with the prefix stripped, strictly
 * (README.md, "Checkpoints and PyTorch"). Extras: `field_state`, and `optimizer.exp_avg.<key>` /
 * `optimizer.exp_avg_sq.<key>`; config, step counts and versions live in `__metadata__`.
 * The original project's `.pth` files are read too (pth/), and stored re-encoded as ours.
 */

export const CHECKPOINT_FORMAT = 'quadra-matrix';
export const CHECKPOINT_FORMAT_VERSION = '1';
const EXP_AVG = 'optimizer.exp_avg.';
const EXP_AVG_SQ = 'optimizer.exp_avg_sq.';
const FIELD_STATE = 'field_state';

export interface CheckpointContents {
  model: ModelConfig;
  parameters: Float32Array;
  optimizer: OptimizerState | null;
  fieldState: Float32Array | null;
  step: number | null;
  /** A mixed-precision run's loss scaler, when the file carries one. */
  lossScaler?: LossScalerState | null;
  /** Where it came from: one of ours, a PyTorch state_dict in safetensors, or the original project's .pth. */
  origin: 'quadra' | 'pytorch' | 'pth';
  /** The full engine config when the file carries one (ours do). */
  engineConfig: Partial<EngineConfig> | null;
  metadata: Record<string, string>;
}

export interface EncodeOptions {
  /** 'F16' halves the file; then only weights and field state are written (Adam's second moments underflow in F16). */
  dtype?: 'F32' | 'F16';
  includeOptimizer?: boolean;
  extraMetadata?: Record<string, string>;
}

export interface EncodableState {
  config: EngineConfig;
  parameters: Float32Array;
  optimizer: OptimizerState;
  fieldState: Float32Array;
  step: number;
  backend?: string;
  /** Mixed precision: the loss scaler (scale, growth tracker, skipped steps), kept in __metadata__. */
  lossScaler?: LossScalerState | null;
}

export function encodeCheckpoint(state: EncodableState, options: EncodeOptions = {}): Uint8Array {
  const dtype = options.dtype ?? 'F32';
  const includeOptimizer = (options.includeOptimizer ?? true) && dtype === 'F32';
  const layout = buildLayout(state.config.model);
  const tensors: TensorToWrite[] = layout.entries.map((e) => ({
    name: e.name,
    shape: e.shape,
    data: state.parameters.subarray(e.offset, e.offset + e.size),
  }));
  tensors.push({ name: FIELD_STATE, shape: [state.fieldState.length], data: state.fieldState });
  if (includeOptimizer) {
    for (const e of layout.entries) {
      tensors.push({ name: EXP_AVG + e.name, shape: e.shape, data: state.optimizer.m.subarray(e.offset, e.offset + e.size) });
    }
    for (const e of layout.entries) {
      tensors.push({ name: EXP_AVG_SQ + e.name, shape: e.shape, data: state.optimizer.v.subarray(e.offset, e.offset + e.size) });
    }
  }
  const metadata: Record<string, string> = {
    format: CHECKPOINT_FORMAT,
    format_version: CHECKPOINT_FORMAT_VERSION,
    config: JSON.stringify(state.config),
    step: String(state.step),
    versions: JSON.stringify(versions()),
    created: new Date().toISOString(),
    ...(includeOptimizer
      ? { optimizer_field_step: String(state.optimizer.fieldStep), optimizer_spike_step: String(state.optimizer.spikeStep) }
      : {}),
    ...(state.backend ? { backend: state.backend } : {}),
    ...(state.lossScaler && includeOptimizer ? { loss_scaler: JSON.stringify(state.lossScaler) } : {}),
    ...options.extraMetadata,
  };
  return serializeSafetensors(tensors, metadata, { dtype });
}

/**
 * Decodes and validates a checkpoint completely, touching no live model: header and offsets (in the
 * safetensors parser), dtypes, NaN/Inf, every tensor name and shape against the config — the one
 * in the file, the one `expected` gives, or one inferred from the tensor shapes.
 */
export function decodeCheckpoint(bytes: Uint8Array, fileLabel: string, expected?: Partial<ModelConfig>): CheckpointContents {
  if (isZip(bytes)) return decodePthCheckpoint(bytes, fileLabel, expected);
  if (isLegacyTorchSave(bytes)) {
    throw new QuadraError('INVALID_FILE', `${fileLabel}: a torch.save file in the format before PyTorch 1.6, which is not read; load and save it again with a newer PyTorch`, {
      file: fileLabel,
    });
  }
  const file = parseSafetensors(bytes, fileLabel, { rejectNonFinite: true });
  const { tensors, metadata } = file;
  const ours = metadata.format === CHECKPOINT_FORMAT;
  const engineConfig = ours ? parseConfigMetadata(metadata.config, fileLabel) : null;
  const inferred = inferModel(tensors, fileLabel);
  const parsedModel = ModelConfigSchema.safeParse({ ...inferred, ...(engineConfig?.model ?? {}), ...expected });
  if (!parsedModel.success) {
    const problems = parsedModel.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new QuadraError('INVALID_FILE', `${fileLabel}: the model config in __metadata__ is invalid — ${problems}`, { file: fileLabel, field: 'config' });
  }
  const model = parsedModel.data;
  for (const key of ['fieldSize', 'hiddenSize', 'spikingHiddenSize'] as const) {
    if (model[key] !== inferred[key]) {
      throw new QuadraError(
        'SHAPE_MISMATCH',
        `${fileLabel}: the tensors are for ${key} ${inferred[key]}, but ${key} ${model[key]} was expected`,
        { file: fileLabel, field: key, expected: model[key], found: inferred[key] },
      );
    }
  }
  const layout = buildLayout(model);
  checkNames(tensors, layout, fileLabel);
  const parameters = gather(tensors, layout, '', fileLabel);
  const hasOptimizer = layout.entries.some((e) => tensors.has(EXP_AVG + e.name) || tensors.has(EXP_AVG_SQ + e.name));
  let optimizer: OptimizerState | null = null;
  if (hasOptimizer) {
    optimizer = {
      m: gather(tensors, layout, EXP_AVG, fileLabel),
      v: gather(tensors, layout, EXP_AVG_SQ, fileLabel),
      fieldStep: stepFromMetadata(metadata, 'optimizer_field_step', fileLabel),
      spikeStep: stepFromMetadata(metadata, 'optimizer_spike_step', fileLabel),
    };
    const negative = firstNegative(optimizer.v);
    if (negative >= 0) {
      throw new QuadraError('INVALID_FILE', `${fileLabel}: optimizer.exp_avg_sq holds a negative value at flat index ${negative}; second moments are never negative`, {
        file: fileLabel,
      });
    }
  }
  let fieldState: Float32Array | null = null;
  const fs = tensors.get(FIELD_STATE);
  if (fs) {
    if (fs.shape.length !== 1 || fs.shape[0] !== model.fieldSize) {
      throw new QuadraError('SHAPE_MISMATCH', `${fileLabel}: tensor "${FIELD_STATE}" has shape [${fs.shape.join(', ')}], expected [${model.fieldSize}]`, {
        file: fileLabel,
        tensor: FIELD_STATE,
      });
    }
    fieldState = fs.data;
  }
  return {
    model,
    parameters,
    optimizer,
    fieldState,
    step: metadata.step !== undefined ? stepFromMetadata(metadata, 'step', fileLabel) : null,
    lossScaler: lossScalerFromMetadata(metadata.loss_scaler, fileLabel),
    origin: ours ? 'quadra' : 'pytorch',
    engineConfig,
    metadata,
  };
}

/**
 * The bytes the checkpoint store keeps for a decoded file: ours and PyTorch safetensors as they
 * are; a .pth re-encoded as our safetensors checkpoint (with its optimizer state when it has one),
 * so the store holds one format only.
 */
export function storableCheckpoint(bytes: Uint8Array, contents: CheckpointContents): Uint8Array {
  if (!isZip(bytes)) return bytes;
  const none = new Float32Array(0);
  return encodeCheckpoint(
    {
      config: parseEngineConfig({ ...(contents.engineConfig ?? {}), model: contents.model }),
      parameters: contents.parameters,
      optimizer: contents.optimizer ?? { m: none, v: none, fieldStep: 0, spikeStep: 0 },
      // The original keeps its field state in a plain attribute that save_checkpoint() leaves out.
      // Zeros, not a fresh N(0, 0.1²) draw: a stored checkpoint decodes the same every time, and
      // updateField moves the state toward the network's output from wherever it starts.
      fieldState: contents.fieldState ?? new Float32Array(contents.model.fieldSize),
      step: contents.step ?? 0,
    },
    {
      includeOptimizer: contents.optimizer !== null,
      extraMetadata: { imported_from: 'pth', ...contents.metadata },
    },
  );
}

/**
 * A checkpoint re-encoded as F16 for use elsewhere: weights and field state only (half the size).
 * Works on ours and on PyTorch state_dicts (the config is inferred from the shapes then).
 */
export function toF16Checkpoint(bytes: Uint8Array, fileLabel: string): Uint8Array {
  const contents = decodeCheckpoint(bytes, fileLabel);
  const config = parseEngineConfig({ ...(contents.engineConfig ?? {}), model: contents.model });
  const none = new Float32Array(0);
  return encodeCheckpoint(
    {
      config,
      parameters: contents.parameters,
      optimizer: contents.optimizer ?? { m: none, v: none, fieldStep: 0, spikeStep: 0 },
      fieldState: contents.fieldState ?? new Float32Array(contents.model.fieldSize),
      step: contents.step ?? 0,
    },
    { dtype: 'F16' },
  );
}

/** Reads and fully validates a checkpoint file; returns the decoded contents and the raw bytes. */
export async function readCheckpointFile(filePath: string, expected?: Partial<ModelConfig>): Promise<{ contents: CheckpointContents; bytes: Uint8Array }> {
  let buffer: Buffer;
  try {
    buffer = await readFile(filePath);
  } catch (error) {
    throw new QuadraError('IO_ERROR', `${filePath}: cannot read checkpoint (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, {
      file: filePath,
    });
  }
  const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  return { contents: decodeCheckpoint(bytes, filePath, expected), bytes };
}

let tmpCounter = 0;

/**
 * Writes to a temporary file beside the target, then renames: a crash never leaves half a file,
 * concurrent writers each rename a whole file of their own, and a failure removes the temporary.
 */
export async function writeFileAtomic(filePath: string, bytes: Uint8Array): Promise<void> {
  const tmp = path.join(path.dirname(filePath), `.${path.basename(filePath)}.${process.pid}.${++tmpCounter}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, bytes, { flag: 'wx' });
    await rename(tmp, filePath);
  } catch (error) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw new QuadraError('IO_ERROR', `${filePath}: cannot write (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, {
      file: filePath,
    });
  }
}

/** The architecture implied by the tensor shapes (spiking steps are not visible in shapes). */
function inferModel(tensors: Map<string, SafetensorsTensor>, fileLabel: string): Pick<ModelConfig, 'fieldSize' | 'hiddenSize' | 'spikingHiddenSize'> {
  const shapeOf = (name: string, rank: number): number[] => {
    const t = tensors.get(name);
    if (!t) {
      throw new QuadraError('INVALID_FILE', `${fileLabel}: missing tensor "${name}" — not a Quadra Matrix checkpoint (expected the reference state_dict keys)`, {
        file: fileLabel,
        tensor: name,
      });
    }
    if (t.shape.length !== rank) {
      throw new QuadraError('SHAPE_MISMATCH', `${fileLabel}: tensor "${name}" has rank ${t.shape.length} (shape [${t.shape.join(', ')}]), expected rank ${rank}`, {
        file: fileLabel,
        tensor: name,
      });
    }
    return t.shape;
  };
  const [hidden, field] = shapeOf('field_network.encoder.0.weight', 2) as [number, number];
  const [spikingHidden] = shapeOf('spike_network.fc1.weight', 2) as [number, number];
  for (const [name, value] of [['fieldSize', field], ['hiddenSize', hidden], ['spikingHiddenSize', spikingHidden]] as const) {
    if (value < 1) throw new QuadraError('SHAPE_MISMATCH', `${fileLabel}: ${name} inferred from the shapes is ${value}, expected at least 1`, { file: fileLabel });
  }
  return { fieldSize: field, hiddenSize: hidden, spikingHiddenSize: spikingHidden };
}

function checkNames(tensors: Map<string, SafetensorsTensor>, layout: ParamLayout, fileLabel: string): void {
  const known = new Set<string>([FIELD_STATE]);
  for (const e of layout.entries) {
    known.add(e.name);
    known.add(EXP_AVG + e.name);
    known.add(EXP_AVG_SQ + e.name);
  }
  const unexpected = [...tensors.keys()].filter((name) => !known.has(name));
  if (unexpected.length > 0) {
    throw new QuadraError('INVALID_FILE', `${fileLabel}: unexpected tensor${unexpected.length > 1 ? 's' : ''} ${unexpected.map((n) => `"${n}"`).join(', ')} — not part of the Quadra Matrix model`, {
      file: fileLabel,
      tensors: unexpected,
    });
  }
}

function gather(tensors: Map<string, SafetensorsTensor>, layout: ParamLayout, prefix: string, fileLabel: string): Float32Array {
  const flat = new Float32Array(layout.total);
  for (const e of layout.entries) {
    const name = prefix + e.name;
    const t = tensors.get(name);
    if (!t) {
      throw new QuadraError('INVALID_FILE', `${fileLabel}: missing tensor "${name}" (shape [${e.shape.join(', ')}])`, { file: fileLabel, tensor: name });
    }
    if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
      throw new QuadraError('SHAPE_MISMATCH', `${fileLabel}: tensor "${name}" has shape [${t.shape.join(', ')}], expected [${e.shape.join(', ')}]`, {
        file: fileLabel,
        tensor: name,
        expected: e.shape,
        found: t.shape,
      });
    }
    flat.set(t.data, e.offset);
  }
  return flat;
}

function parseConfigMetadata(text: string | undefined, fileLabel: string): Partial<EngineConfig> | null {
  if (text === undefined) return null;
  try {
    const value: unknown = JSON.parse(text);
    if (value && typeof value === 'object') return value;
  } catch {
    // fall through to the error below
  }
  throw new QuadraError('INVALID_FILE', `${fileLabel}: __metadata__.config is not a JSON object`, { file: fileLabel, field: 'config' });
}

function stepFromMetadata(metadata: Record<string, string>, key: string, fileLabel: string): number {
  const text = metadata[key];
  if (text === undefined) return 0;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new QuadraError('INVALID_FILE', `${fileLabel}: __metadata__.${key} is "${text}", expected a whole number ≥ 0`, { file: fileLabel, field: key });
  }
  return value;
}

function firstNegative(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) if (values[i]! < 0) return i;
  return -1;
}

/** The loss scaler a mixed-precision run saved, checked: a positive finite scale, whole counts. */
function lossScalerFromMetadata(text: string | undefined, fileLabel: string): LossScalerState | null {
  if (text === undefined) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = null;
  }
  const v = value as Partial<LossScalerState> | null;
  const whole = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
  if (!v || typeof v.scale !== 'number' || !Number.isFinite(v.scale) || v.scale <= 0 || !whole(v.growthTracker) || !whole(v.skippedSteps)) {
    throw new QuadraError('INVALID_FILE', `${fileLabel}: __metadata__.loss_scaler is "${text.slice(0, 80)}", expected { scale > 0, growthTracker ≥ 0, skippedSteps ≥ 0 }`, {
      file: fileLabel,
      field: 'loss_scaler',
    });
  }
  return { scale: v.scale, growthTracker: v.growthTracker!, skippedSteps: v.skippedSteps! };
}
