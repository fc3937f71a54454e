import { z } from 'zod';
import { BACKEND_IDS, EngineConfigSchema } from './engine-config';
import { QuadraError } from './errors';
import { RUN_MODES } from './records';

/**
 * What a training run is asked for and what is stored with it, parsed (never cast) at every
 * boundary: the API request, the CLI's request, and a run's config read back from the database.
 * The limits here are the ones the wizard, the CLI and the service all enforce: each lives here
 * once, and every end imports it.
 */

/**
 * Workers per run, and per benchmark configuration: one per GPU or core, so this is more than a
 * workstation has; beyond it workers only contend. Worker processes exchange gradients through a
 * file with a slot each, which has no limit of its own; simd's worker threads hold fewer
 * (MAX_SHARED_MEMORY_WORKERS). Enforced by the run schemas below (API, CLI, stored runs),
 * `quadra train --workers`, `quadra bench --workers`, the benchmark suite's schema
 * (BENCHMARK_SUITE_LIMITS) and the renderer's wizard and suite form.
 */
export const MAX_WORKERS = 256;
/**
 * The most simd worker threads one run may have: they share one memory for the gradient exchange,
 * whose header grows with the count, and two gradients per worker stay a few hundred MiB for the
 * default model. Enforced by src-main/training/shared-exchange.ts (it sizes its header by it), the
 * coordinator before a run starts, and the wizard when the simd backend is chosen.
 */
export const MAX_SHARED_MEMORY_WORKERS = 128;
/**
 * At most this share of the rows is held out for validation. Enforced by the run schemas below,
 * `quadra train --validation-fraction`, the split itself (validationRowCount) and the wizard.
 */
export const MAX_VALIDATION_FRACTION = 0.9;
/** The share held out when a request names none (the service, the split, the wizard's first value). */
export const DEFAULT_VALIDATION_FRACTION = 0.1;
/**
 * The most rows `synthetic:N` makes. Enforced by SyntheticSpecSchema (the API), the CLI's and
 * service's parseSyntheticSpec (src-main/data/synthetic.ts) and the wizard (SyntheticRowsSchema).
 */
export const MAX_SYNTHETIC_ROWS = 50_000_000;

const id = z.number().int().min(1);
const wholeNumber = (label: string, max: number) =>
  z
    .number({ error: `${label} must be a number` })
    .int({ error: `${label} must be a whole number` })
    .min(1, { error: `${label} must be at least 1` })
    .max(max, { error: `${label} must be at most ${max}` });

export const SYNTHETIC_SPEC = /^synthetic:(\d+)$/;

/** N of `synthetic:N`: the wizard checks its rows field with this, the API the spec below. */
export const SyntheticRowsSchema = z.number().int().min(1).max(MAX_SYNTHETIC_ROWS);

/** `synthetic:N` with N in range; the one dataset a client names by text. */
export const SyntheticSpecSchema = z
  .string()
  .regex(SYNTHETIC_SPEC, { error: 'dataset must be synthetic:N (N rows) or { datasetId } of a registered dataset' })
  .refine((spec) => SyntheticRowsSchema.safeParse(Number(SYNTHETIC_SPEC.exec(spec)?.[1])).success, {
    error: `synthetic:N takes 1 to ${MAX_SYNTHETIC_ROWS.toLocaleString('en-US')} rows`,
  });

const validationFraction = z.number().min(0).max(MAX_VALIDATION_FRACTION);

/**
 * How many of `rows` rows the seeded split holds out for validation: round(rows·fraction), at least
 * one when fraction > 0 and there are ≥ 2 rows, and never every row. The training service splits
 * by it (src-main/data/split.ts) and the wizard previews the rows left for training with it.
 */
export function validationRowCount(rows: number, fraction: number): number {
  if (!Number.isSafeInteger(rows) || rows < 1) {
    throw new QuadraError('INVALID_ARGUMENT', `validation split: row count must be a whole number ≥ 1, got ${rows}`, { rows });
  }
  if (!validationFraction.safeParse(fraction).success) {
    throw new QuadraError('INVALID_ARGUMENT', `validation fraction must be between 0 and ${MAX_VALIDATION_FRACTION}, got ${fraction}`, {
      field: 'validationFraction',
      value: fraction,
    });
  }
  let held = Math.round(rows * fraction);
  if (fraction > 0 && rows >= 2) held = Math.max(1, held);
  return Math.min(held, rows - 1);
}

/** A registered dataset, by id. */
export const DatasetIdSchema = z.object({ datasetId: id });

/** Where a warm start takes its weights from: a stored checkpoint (or, from the CLI only, a file). */
export const InitFromSchema = z.union([z.object({ checkpointId: id }), z.object({ file: z.string().min(1) })]);

const trainingFields = {
  name: z.string().max(200).optional(),
  mode: z.enum(RUN_MODES),
  workers: wholeNumber('workers', MAX_WORKERS).optional(),
  backend: z.enum(['auto', ...BACKEND_IDS]),
  engine: EngineConfigSchema.partial(),
  epochs: wholeNumber('epochs', 1_000_000),
  validationFraction: validationFraction.optional(),
  lastBatch: z.enum(['drop', 'wrap']).optional(),
  checkpointEveryEpochs: wholeNumber('checkpointEveryEpochs', 1_000_000).optional(),
  keepLastCheckpoints: wholeNumber('keepLastCheckpoints', 10_000).optional(),
  /** Reset Adam's moments and step counts of a warm start (weights only). */
  resetOptimizer: z.boolean().optional(),
};

/**
 * A request over the API (the app, serve mode): the browser never names a server path, so the
 * data is `synthetic:N` or a registered dataset's id, and a warm start names a stored checkpoint.
 */
export const StartRunSchema = z.object({
  ...trainingFields,
  dataset: z.union([SyntheticSpecSchema, DatasetIdSchema]),
  initFrom: z.object({ checkpointId: id }).optional(),
});

/** What the training service takes: the API's request, or the CLI's, which may name files (it runs as the user). */
export const TrainingRequestSchema = z.object({
  ...trainingFields,
  /** 'synthetic:N', { datasetId }, and from the CLI also a file path or a registered dataset's name. */
  dataset: z.union([z.string().min(1), DatasetIdSchema]),
  initFrom: InitFromSchema.optional(),
});
export type TrainingRequest = z.output<typeof TrainingRequestSchema>;
export type TrainingRequestInput = z.input<typeof TrainingRequestSchema>;

/** A trained run's settings as stored with it: enough to resume it. */
export const StoredRunConfigSchema = z.object({
  engine: EngineConfigSchema,
  epochs: wholeNumber('epochs', 1_000_000),
  /** How the data was named when the run started (the run's datasetId is what resume reads). */
  dataset: z.string().min(1),
  validationFraction,
  lastBatch: z.enum(['drop', 'wrap']),
  checkpointEveryEpochs: wholeNumber('checkpointEveryEpochs', 1_000_000),
  keepLastCheckpoints: wholeNumber('keepLastCheckpoints', 10_000),
  /** A warm start: where its first weights came from. */
  initFrom: z.object({ checkpointId: id.optional(), file: z.string().optional(), resetOptimizer: z.boolean() }).optional(),
});
export type StoredRunConfig = z.output<typeof StoredRunConfigSchema>;

/** An imported checkpoint's run: a model with no data or schedule of its own. */
export const ImportedRunConfigSchema = z.object({
  engine: EngineConfigSchema,
  importedFrom: z.string(),
  origin: z.string(),
});
export type ImportedRunConfig = z.output<typeof ImportedRunConfigSchema>;

export type ParsedRunConfig = ({ kind: 'trained' } & StoredRunConfig) | ({ kind: 'imported' } & ImportedRunConfig);

/** A run's stored config, parsed: a malformed row is a named INVALID_CONFIG error, never a TypeError later. */
export function parseRunConfig(runId: number, config: unknown): ParsedRunConfig {
  if (config && typeof config === 'object' && 'importedFrom' in config) {
    return { kind: 'imported', ...parseOrThrow(ImportedRunConfigSchema, config, `run ${runId}'s stored config`) };
  }
  return { kind: 'trained', ...parseOrThrow(StoredRunConfigSchema, config, `run ${runId}'s stored config`) };
}

/** Parses with `schema`, turning zod's issues into one error that names every field at fault. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, what: string, code: 'INVALID_CONFIG' | 'INVALID_ARGUMENT' = 'INVALID_CONFIG'): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${issue.path.join('.') || '(value)'}: ${issue.message}`);
  throw new QuadraError(code, `${what} is invalid — ${problems.join('; ')}`, { fields: result.error.issues.map((i) => i.path.join('.')) });
}
