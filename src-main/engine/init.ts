import type { ParamLayout } from './layout';
import { view } from './layout';
import { Rng } from './random';

/** Initial value of the spiking threshold θ and the membrane decay (DESIGN.md §4). */
export const INITIAL_THRESHOLD = 1.0;
export const INITIAL_DECAY = 0.95;

/**
 * PyTorch's default initialisation, seeded: Linear weight and bias U(−1/√fanIn, 1/√fanIn)
 * (kaiming_uniform with a=√5 reduces to that bound), LayerNorm gain 1 and bias 0.
 */
export function initialParameters(layout: ParamLayout, seed: number): Float32Array {
  const flat = new Float32Array(layout.total);
  const rng = Rng.derive(seed, 0x1417);
  for (const e of layout.entries) {
    const values = view(flat, e);
    switch (e.kind) {
      case 'linear-weight':
      case 'linear-bias': {
        const bound = 1 / Math.sqrt(e.fanIn);
        for (let i = 0; i < values.length; i++) values[i] = rng.uniform(-bound, bound);
        break;
      }
      case 'norm-gain':
        values.fill(1);
        break;
      case 'norm-bias':
        values.fill(0);
        break;
      case 'scalar':
        values[0] = e.name.endsWith('threshold') ? INITIAL_THRESHOLD : INITIAL_DECAY;
        break;
    }
  }
  return flat;
}

/** The field state vector's first value: N(0, 0.1²), seeded. */
export function initialFieldState(fieldSize: number, seed: number): Float32Array {
  return new Rng(seed ^ 0x5eed).fillNormal(new Float32Array(fieldSize), 0.1);
}
