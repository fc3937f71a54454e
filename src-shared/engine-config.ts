import { z } from 'zod';
import { QuadraError } from './errors';

/** Compute backends, in the order the automatic choice tries them. */
export const BACKEND_IDS = ['tensorflow-gpu', 'webgpu', 'simd', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendId = (typeof BACKEND_IDS)[number];

export const SPIKE_GRADIENTS = ['surrogate', 'none'] as const;
export type SpikeGradient = (typeof SPIKE_GRADIENTS)[number];

export const PRECISIONS = ['fp32', 'fp16', 'mixed'] as const;
export type Precision = (typeof PRECISIONS)[number];

const positiveInt = (label: string, max: number) =>
  z
    .number({ error: `${label} must be a number` })
    .int({ error: `${label} must be a whole number` })
    .min(1, { error: `${label} must be at least 1` })
    .max(max, { error: `${label} must be at most ${max}` });

const rate = (label: string, min: number, max: number) =>
  z
    .number({ error: `${label} must be a number` })
    .refine(Number.isFinite, { error: `${label} must be finite` })
    .refine((v) => v >= min && v <= max, { error: `${label} must be between ${min} and ${max}` });

/** Model architecture: DESIGN.md §4, defaults in brackets there. */
/** The most dropout the model takes (the schema's bound, and the wizard's hint). */
export const MAX_DROPOUT = 0.95;

export const ModelConfigSchema = z.object({
  fieldSize: positiveInt('fieldSize', 65_536).default(100),
  hiddenSize: positiveInt('hiddenSize', 16_384).default(256),
  spikingHiddenSize: positiveInt('spikingHiddenSize', 16_384).default(128),
  spikingSteps: positiveInt('spikingSteps', 1_000).default(10),
  dropout: rate('dropout', 0, MAX_DROPOUT).default(0.1),
  spikeGradient: z.enum(SPIKE_GRADIENTS, { error: `spikeGradient must be one of ${SPIKE_GRADIENTS.join(', ')}` }).default('surrogate'),
  /** Weight of the spike regulariser in the loss (0.1 in the reference). */
  spikeLossWeight: rate('spikeLossWeight', 0, 1_000).default(0.1),
});
export type ModelConfig = z.infer<typeof ModelConfigSchema>;

/** AdamW settings shared by the field and spiking optimisers (PyTorch defaults used by the reference). */
export const OptimizerConfigSchema = z.object({
  learningRate: rate('learningRate', 0, 10).default(1e-3),
  beta1: rate('beta1', 0, 0.999999).default(0.9),
  beta2: rate('beta2', 0, 0.999999999).default(0.999),
  epsilon: rate('epsilon', 1e-12, 1).default(1e-8),
  weightDecay: rate('weightDecay', 0, 10).default(0.01),
});
export type OptimizerConfig = z.infer<typeof OptimizerConfigSchema>;

export const EngineConfigSchema = z.object({
  model: ModelConfigSchema.default(ModelConfigSchema.parse({})),
  optimizer: OptimizerConfigSchema.default(OptimizerConfigSchema.parse({})),
  batchSize: positiveInt('batchSize', 65_536).default(64),
  /** tfjs computes in float32 only; 'fp16'/'mixed' are accepted by the schema so they can be refused with the reason. */
  precision: z.enum(PRECISIONS, { error: `precision must be one of ${PRECISIONS.join(', ')}` }).default('fp32'),
  seed: z.number().int({ error: 'seed must be a whole number' }).min(0).max(2 ** 32 - 1).default(42),
  /** Rate of updateField's moving average of the field state. */
  fieldUpdateRate: rate('fieldUpdateRate', 0, 1).default(0.01),
});
export type EngineConfig = z.infer<typeof EngineConfigSchema>;
export type EngineConfigInput = z.input<typeof EngineConfigSchema>;

/** Parses a config, turning zod's issues into one INVALID_CONFIG error that names every bad field. */
export function parseEngineConfig(input: unknown): EngineConfig {
  const result = EngineConfigSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const field = issue.path.join('.') || '(config)';
    return `${field}: ${issue.message}`;
  });
  throw new QuadraError('INVALID_CONFIG', `invalid engine config — ${problems.join('; ')}`, {
    fields: result.error.issues.map((issue) => issue.path.join('.')),
  });
}
