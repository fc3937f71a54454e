import { z } from 'zod';
import { BACKEND_IDS, EngineConfigSchema } from './engine-config';
import { QuadraError } from './errors';
import { RUN_MODES } from './records';

/**
 * What a training run is asked for and what is stored with it, parsed (never cast) at every
 * boundary: the API request, the CLI's request, and a run's config read back from the database.
 * The limits here are the ones the wizard, the CLI and the service all enforce.
 */

/** Workers per run: one per GPU or core; more threads than this would only contend. */
export const MAX_WORKERS = 256;
/** At most this share of the rows is held out for validation. */
export const MAX_VALIDATION_FRACTION = 0.9;
/** The most rows `synthetic:N` makes. */
export const MAX_SYNTHETIC_ROWS = 50_000_000;

const id = z.number().int().min(1);
const wholeNumber = (label: string, max: number) =>
  z
    .number({ error: `${label} must be a number` })
    .int({ error: `${label} must be a whole number` })
    .min(1, { error: `${label} must be at least 1` })
    .max(max, { error: `${label} must be at most ${max}` });

export const SYNTHETIC_SPEC = /^synthetic:(\d+)$/;

/** `synthetic:N` with N in range; the one dataset a client names by text. */
export const SyntheticSpecSchema = z
  .string()
  .regex(SYNTHETIC_SPEC, { error: 'dataset must be synthetic:N (N rows) or { datasetId } of a registered dataset' })
  .refine((spec) => {
    const rows = Number(SYNTHETIC_SPEC.exec(spec)?.[1]);
    return rows >= 1 && rows <= MAX_SYNTHETIC_ROWS;
  }, { error: `synthetic:N takes 1 to ${MAX_SYNTHETIC_ROWS.toLocaleString('en-US')} rows` });

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
  validationFraction: z.number().min(0).max(MAX_VALIDATION_FRACTION).optional(),
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
  validationFraction: z.number().min(0).max(MAX_VALIDATION_FRACTION),
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
