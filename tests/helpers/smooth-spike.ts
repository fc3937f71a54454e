import { expect } from 'vitest';
import { view, type ParamLayout } from '../../src-main/engine/layout';
import { Rng } from '../../src-main/engine/random';
import { SURROGATE_SLOPE } from '../../src-main/engine/tfjs-kernel';
import { richardsonAsync } from './finite-differences';

/*
 * The regime in which a kernel's BPTT is checked against finite differences (gradients.test.ts for
 * the tfjs kernel, simd-kernel.test.ts and webgpu-kernel.test.ts for the fused ones). The model's
 * spike is a Heaviside step, with no derivative to compare with; `spikeForward = 'smooth'` swaps it
 * for s(z) = z/(1 + 25|z|), whose exact derivative is the surrogate 1/(1 + 25|z|)², so the BPTT is
 * the true gradient of what the forward computes.
 */

/**
 * s′(z) is continuous but has a kink at z = 0 (s″ jumps from +50 to −50), so a central difference
 * is O(h²)-accurate only if no membrane crosses θ within the perturbation. The default init puts
 * membranes right at θ, so the spiking parameters are set to a regime whose membranes all sit
 * 0.04..0.2 above θ = 0 (smoothSpikes64 measures the margin): small positive fc1 inputs (biases in
 * `fc1Bias`, higher for wider inputs, which spread fc1(x) more), positive fc2/fc3 weights on
 * positive spikes, decay 0.5. Close to θ the surrogate is large (≥ 1/(1+25·0.2)² ≈ 0.03), so
 * gradients reach fc1 through three layers.
 */
export function kinkFreeSpikingParameters(layout: ParamLayout, parameters: Float32Array, fc1Bias: readonly [number, number]): void {
  const rng = new Rng(99);
  const fill = (name: string, value: () => number) => {
    const values = view(parameters, layout.byName.get(name)!);
    for (let i = 0; i < values.length; i++) values[i] = value();
  };
  fill('spike_network.threshold', () => 0);
  fill('spike_network.decay', () => 0.5);
  fill('spike_network.fc1.weight', () => rng.uniform(-0.002, 0.002));
  fill('spike_network.fc1.bias', () => rng.uniform(fc1Bias[0], fc1Bias[1]));
  fill('spike_network.fc2.weight', () => rng.uniform(0.2, 0.6));
  fill('spike_network.fc2.bias', () => 0.01);
  fill('spike_network.fc3.weight', () => rng.uniform(0.2, 0.6));
  fill('spike_network.fc3.bias', () => 0.01);
}

interface SpikingSizes {
  fieldSize: number;
  spikingHiddenSize: number;
  spikingSteps: number;
}

/** Float64 smooth spiking forward of `rows` rows of x: the rates, and the smallest |m − θ| met at any comparison. */
export function smoothSpikes64(layout: ParamLayout, p: Float32Array, x: Float32Array, rows: number, sizes: SpikingSizes): { rates: Float64Array; margin: number } {
  const { fieldSize: F, spikingHiddenSize: S, spikingSteps: T } = sizes;
  const P = (name: string) => view(p, layout.byName.get(name)!);
  const theta = P('spike_network.threshold')[0]!;
  const decay = P('spike_network.decay')[0]!;
  const fc = (layer: number, input: ArrayLike<number>, inSize: number, outSize: number) => {
    const w = P(`spike_network.fc${layer}.weight`);
    const b = P(`spike_network.fc${layer}.bias`);
    return Array.from({ length: outSize }, (_, o) => Array.from(input).reduce((s, v, i) => s + w[o * inSize + i]! * v, b[o]!));
  };
  let margin = Infinity;
  const lif = (u: number[], carry: number[]) => {
    const m = u.map((v, i) => v + carry[i]!);
    const s = m.map((v) => {
      margin = Math.min(margin, Math.abs(v - theta));
      return (v - theta) / (1 + SURROGATE_SLOPE * Math.abs(v - theta));
    });
    return { s, carry: m.map((v, i) => v * (1 - s[i]!) * decay) };
  };
  const rates = new Float64Array(rows * F);
  for (let r = 0; r < rows; r++) {
    const c1 = fc(1, x.subarray(r * F, (r + 1) * F), F, S);
    let r1 = new Array<number>(S).fill(0);
    let r2 = new Array<number>(S).fill(0);
    let r3 = new Array<number>(F).fill(0);
    for (let t = 0; t < T; t++) {
      const l1 = lif(c1, r1);
      const l2 = lif(fc(2, l1.s, S, S), r2);
      const l3 = lif(fc(3, l2.s, S, F), r3);
      [r1, r2, r3] = [l1.carry, l2.carry, l3.carry];
      l3.s.forEach((s, j) => (rates[r * F + j] = rates[r * F + j]! + s / T));
    }
  }
  return { rates, margin };
}

export interface GradientCheck {
  layout: ParamLayout;
  /** The parameters the gradients were computed at, and the loss there. */
  p0: Float32Array;
  loss0: number;
  grads: Float32Array;
  lossAt: (p: Float32Array) => number | Promise<number>;
  /** How many elements of every tensor are checked: those with the largest gradients. */
  largest: number;
  /** The tolerance's relative part: the O(h⁴) truncation and the float32 rounding of the analytic gradient. */
  relativeTolerance: number;
  /** Where the loss's rounding noise is sampled: offsets from p0, in float32 ulps. */
  noiseUlps: readonly number[];
}

/**
 * A fused kernel's gradients against Richardson-extrapolated central differences of its loss, in
 * the `largest` elements of every tensor (smooth spike, kink-free spiking parameters). Returns the
 * names of the tensors checked.
 *
 * Tolerance as in gradients.test.ts: relativeTolerance·|g|, plus 3δ/(h/2) for the loss's own
 * rounding noise δ, measured as the largest change of the loss, less the gradient's share, over
 * values a few ulps apart (where the true change is negligible).
 */
export async function expectGradientsMatchFiniteDifferences(check: GradientCheck): Promise<Set<string>> {
  const { layout, p0, loss0, grads, lossAt } = check;
  const noiseAt = async (i: number, slope: number): Promise<number> => {
    let noise = 0;
    for (const ulps of check.noiseUlps) {
      const nudged = Float32Array.from(p0);
      nudged[i] = p0[i]! + ulps * Math.max(Math.abs(p0[i]!), 1e-3) * 2 ** -23;
      noise = Math.max(noise, Math.abs((await lossAt(nudged)) - loss0 - slope * (nudged[i] - p0[i]!)));
    }
    return noise;
  };
  /*
   * Half-spans as large as the O(h⁴) truncation allows, so the loss's rounding noise weighs least.
   * A spiking parameter may move no membrane by more than ~0.01, a quarter of the 0.04 margin:
   * fc1 weights move it by ≤ |x|·h ≤ 2.5h per step, ≤ 5h with the decayed carry → 2e-3; fc2/fc3
   * weights multiply smooth spikes |s| < 1/25, so they take 2e-2 (≤ 0.08h = 1.6e-3); the rest 2e-3.
   * The field network is smooth: 6e-3.
   */
  const stepFor = (name: string): number => (name.startsWith('field_network.') ? 6e-3 : /fc[23]\.weight$/.test(name) ? 2e-2 : 2e-3);
  const checked = new Set<string>();
  for (const e of layout.entries) {
    const largest = Array.from({ length: e.size }, (_, k) => e.offset + k)
      .sort((a, b) => Math.abs(grads[b]!) - Math.abs(grads[a]!))
      .slice(0, check.largest);
    for (const i of largest) {
      const h = stepFor(e.name);
      const analytic = grads[i]!;
      const tolerance = check.relativeTolerance * Math.abs(analytic) + (3 * (await noiseAt(i, analytic))) / (h / 2);
      const label = `${e.name}[${i - e.offset}]`;
      expect(tolerance, `${label}: rounding noise leaves the check meaningful (g = ${analytic})`).toBeLessThan(0.2 * Math.abs(analytic));
      const fd = await richardsonAsync(p0, i, h, lossAt);
      expect(Math.abs(fd - analytic), `${label}: analytic ${analytic}, finite difference ${fd}, tolerance ${tolerance}`).toBeLessThanOrEqual(tolerance);
      checked.add(e.name);
    }
  }
  expect(checked.size).toBe(layout.entries.length);
  return checked;
}
