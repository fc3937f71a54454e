import { BACKEND_IDS, PRECISIONS, SPIKE_GRADIENTS, type BackendId, type EngineConfigInput } from '../../src-shared/engine-config';
import type { HardwareInfo } from '../../src-shared/hardware';
import { formatBackendReport } from '../engine/backends';
import { OscillatorEngine } from '../engine/engine';
import { detectHardware } from '../hardware/detect';
import { openStore, type Store } from '../store/database';
import { defaultDatabasePath } from '../store/paths';
import type { OptionSpec, ParsedOptions } from './args';
import type { Output } from './output';

export const BACKEND_OPTION: OptionSpec = {
  kind: 'string',
  description: `compute backend: auto (default) or one of ${BACKEND_IDS.join(', ')}`,
  choices: ['auto', ...BACKEND_IDS],
  placeholder: 'B',
};
export const JSON_OPTION: OptionSpec = { kind: 'boolean', description: 'print one JSON object on stdout and nothing else there' };
export const SPIKE_GRADIENT_OPTION: OptionSpec = {
  kind: 'string',
  description: "spiking gradient: 'surrogate' (default) or 'none' (the reference: the spiking net never learns)",
  choices: SPIKE_GRADIENTS,
  placeholder: 'MODE',
};
export const BATCH_OPTION: OptionSpec = { kind: 'int', description: 'batch size (default: the recommended one)', max: 65_536, placeholder: 'N' };
export const PRECISION_OPTION: OptionSpec = {
  kind: 'string',
  description: "'fp32' (default) or 'mixed' (f16 matrix products with f32 accumulation and dynamic loss scaling, as torch.cuda.amp; webgpu only)",
  choices: PRECISIONS.filter((p) => p !== 'fp16'),
  placeholder: 'P',
};
export const SEED_OPTION: OptionSpec = { kind: 'int', min: 0, max: 4_294_967_295, description: 'random seed (default 42)', placeholder: 'N' };

/** Model architecture options shared by the commands that build a fresh model. */
export const MODEL_OPTIONS: Record<string, OptionSpec> = {
  'field-size': { kind: 'int', description: 'field size F (default 100)', max: 65_536, placeholder: 'N' },
  'hidden-size': { kind: 'int', description: 'field network hidden size H (default 256)', max: 16_384, placeholder: 'N' },
  'spiking-hidden-size': { kind: 'int', description: 'spiking network hidden size S (default 128)', max: 16_384, placeholder: 'N' },
  'spiking-steps': { kind: 'int', description: 'spiking time steps T (default 10)', max: 1_000, placeholder: 'N' },
  'spike-gradient': SPIKE_GRADIENT_OPTION,
};

/** The model part of the engine config from MODEL_OPTIONS (unset options keep their defaults). */
export function modelConfigFrom(options: ParsedOptions): Record<string, unknown> {
  const model: Record<string, unknown> = {};
  const map = { 'field-size': 'fieldSize', 'hidden-size': 'hiddenSize', 'spiking-hidden-size': 'spikingHiddenSize', 'spiking-steps': 'spikingSteps', 'spike-gradient': 'spikeGradient' } as const;
  for (const [option, field] of Object.entries(map)) if (options[option] !== undefined) model[field] = options[option];
  return model;
}

let hardwareCache: Promise<HardwareInfo> | null = null;

export function hardware(): Promise<HardwareInfo> {
  hardwareCache ??= detectHardware();
  return hardwareCache;
}

/** Builds the engine a command asked for and reports the backend choice (one line per backend). */
export async function engineFor(options: ParsedOptions, config: EngineConfigInput, output: Output): Promise<OscillatorEngine> {
  const requested = (options.backend as BackendId | 'auto' | undefined) ?? 'auto';
  const hw = await hardware();
  const engine = await OscillatorEngine.create({ config, backend: requested, gpu: { gpus: hw.gpus, nvidiaSmi: hw.nvidiaSmi } });
  if (!output.json) for (const line of formatBackendReport(engine.backend.report)) output.note(`backend ${line}`);
  return engine;
}

export const DB_OPTION: OptionSpec = {
  kind: 'string',
  description: 'the SQLite database (default: the desktop app\'s, in the platform app-data folder; QUADRA_DB overrides)',
  placeholder: 'FILE',
};

/** Opens the store a command works on; runs left 'running' by a process that died become 'interrupted'. */
export function openCliStore(options: ParsedOptions): Store {
  const store = openStore((options.db as string | undefined) ?? defaultDatabasePath());
  if (!store.readonly) store.runs.markInterruptedRuns();
  return store;
}
