import type { ModelConfig } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';

/** What a tensor is, so init, optimiser and import code need no name matching. */
export type ParamKind = 'linear-weight' | 'linear-bias' | 'norm-gain' | 'norm-bias' | 'scalar';

export interface ParamEntry {
  /** The reference PyTorch state_dict key. */
  name: string;
  /** PyTorch layout: Linear weights are [out, in]. */
  shape: number[];
  size: number;
  offset: number;
  kind: ParamKind;
  /** For Linear weight and bias: fan-in, which sets PyTorch's default init bound 1/sqrt(fanIn). */
  fanIn: number;
  group: 'field' | 'spike';
}

/**
 * The flat order of every parameter: checkpoint tensor order. Parameters, Adam moments and
 * gradients all use it, so a checkpoint, the gradient all-reduce and each backend share one layout.
 */
export interface ParamLayout {
  entries: ParamEntry[];
  byName: Map<string, ParamEntry>;
  total: number;
  /** Field parameters occupy [0, fieldCount); spiking parameters [fieldCount, total). */
  fieldCount: number;
}

/** Beyond this the model would not fit a workstation's memory with optimiser state; say so early. */
export const MAX_PARAMETERS = 250_000_000;

export function buildLayout(model: ModelConfig): ParamLayout {
  const F = model.fieldSize;
  const H = model.hiddenSize;
  const S = model.spikingHiddenSize;
  const specs: Array<Omit<ParamEntry, 'offset' | 'size'>> = [];
  const linear = (prefix: string, inSize: number, outSize: number, group: ParamEntry['group']) => {
    specs.push({ name: `${prefix}.weight`, shape: [outSize, inSize], kind: 'linear-weight', fanIn: inSize, group });
    specs.push({ name: `${prefix}.bias`, shape: [outSize], kind: 'linear-bias', fanIn: inSize, group });
  };
  const norm = (prefix: string, size: number) => {
    specs.push({ name: `${prefix}.weight`, shape: [size], kind: 'norm-gain', fanIn: 0, group: 'field' });
    specs.push({ name: `${prefix}.bias`, shape: [size], kind: 'norm-bias', fanIn: 0, group: 'field' });
  };
  linear('field_network.encoder.0', F, H, 'field');
  norm('field_network.encoder.1', H);
  linear('field_network.encoder.4', H, 2 * H, 'field');
  norm('field_network.encoder.5', 2 * H);
  linear('field_network.decoder.0', 2 * H, H, 'field');
  norm('field_network.decoder.1', H);
  linear('field_network.decoder.4', H, F, 'field');
  linear('spike_network.fc1', F, S, 'spike');
  linear('spike_network.fc2', S, S, 'spike');
  linear('spike_network.fc3', S, F, 'spike');
  specs.push({ name: 'spike_network.threshold', shape: [], kind: 'scalar', fanIn: 0, group: 'spike' });
  specs.push({ name: 'spike_network.decay', shape: [], kind: 'scalar', fanIn: 0, group: 'spike' });

  const entries: ParamEntry[] = [];
  let offset = 0;
  for (const spec of specs) {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    entries.push({ ...spec, offset, size });
    offset += size;
  }
  if (offset > MAX_PARAMETERS) {
    throw new QuadraError(
      'INVALID_CONFIG',
      `model too large: fieldSize ${F}, hiddenSize ${H}, spikingHiddenSize ${S} give ${offset.toLocaleString('en-US')} parameters (at most ${MAX_PARAMETERS.toLocaleString('en-US')})`,
      { parameters: offset },
    );
  }
  const firstSpike = entries.find((e) => e.group === 'spike');
  return {
    entries,
    byName: new Map(entries.map((e) => [e.name, e])),
    total: offset,
    fieldCount: firstSpike ? firstSpike.offset : offset,
  };
}

export function entry(layout: ParamLayout, name: string): ParamEntry {
  const found = layout.byName.get(name);
  if (!found) throw new QuadraError('INTERNAL', `no parameter named "${name}" in the layout`);
  return found;
}

/** A view (no copy) of one tensor inside a flat buffer. */
export function view(flat: Float32Array, e: ParamEntry): Float32Array {
  return flat.subarray(e.offset, e.offset + e.size);
}
