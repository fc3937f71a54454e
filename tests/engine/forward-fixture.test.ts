import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OscillatorEngine } from '../../src-main/engine/engine';
import type { ParamLayout } from '../../src-main/engine/layout';
import type { TfjsKernel } from '../../src-main/engine/tfjs-kernel';
import { createEngine, erf64, gelu64 } from '../helpers/engine';

/**
 * A hand-made fixture at F = 2, H = 2, S = 2, T = 3: explicit weights in layout order, expected
 * values worked out in float64 (the spiking ones step by step, in the comments).
 */

const MODEL = { fieldSize: 2, hiddenSize: 2, spikingHiddenSize: 2, spikingSteps: 3, dropout: 0 };
const F = 2;
/** float32 unit roundoff. */
const U = 2 ** -24;
/** Worst |erf error| of any tfjs backend (cpu: Abramowitz–Stegun 7.1.26, ≤ 1.5e-7). */
const ERF_ERR = 1.5e-7;
/** max |GELU′| (at x ≈ 2.42). */
const GELU_SLOPE_MAX = 1.13;

const X = new Float32Array([
  1, 0, //
  0, 1, //
  1, 1, //
]);
const ROWS = 3;

/** Weights by name, row-major in PyTorch's [out, in] layout; every value is exact in float32 or rounded once. */
const FIELD_WEIGHTS: Record<string, number[]> = {
  'field_network.encoder.0.weight': [0.004, 0, 0, -0.002],
  'field_network.encoder.0.bias': [0, 0],
  'field_network.encoder.1.weight': [1, 2],
  'field_network.encoder.1.bias': [0, 0.5],
  'field_network.encoder.4.weight': [1, 0, 0, 1, 1, 1, 1, -1],
  'field_network.encoder.4.bias': [0, 0, 0, 0.1],
  'field_network.encoder.5.weight': [1, 0.5, 1, 2],
  'field_network.encoder.5.bias': [0, 0, -0.25, 0],
  'field_network.decoder.0.weight': [0.004, 0, 0.002, 0, 0, 0.004, 0, -0.002],
  'field_network.decoder.0.bias': [0, 0],
  'field_network.decoder.1.weight': [1, 1],
  'field_network.decoder.1.bias': [0, 0],
  'field_network.decoder.4.weight': [1, 0, 0.5, 1],
  'field_network.decoder.4.bias': [0.1, -0.1],
};

/** fc1 is shared by both spiking fixtures: row [1,0] → c1 = [0.6, 1.5]; [0,1] → [1.0, 0.25]; [1,1] → [1.6, 1.75]. */
const FC1: Record<string, number[]> = {
  'spike_network.fc1.weight': [0.6, 1, 1.5, 0.25],
  'spike_network.fc1.bias': [0, 0],
  'spike_network.threshold': [1],
  'spike_network.decay': [0.95],
};

/**
 * fc2 = fc3 = 2·I, no bias: a spike gives a membrane of 2 > θ (fire, reset to 0); no spike leaves
 * 0·0.95 = 0. So s3 = s2 = s1, and the rates show layer 1 directly.
 */
const PASS_THROUGH: Record<string, number[]> = {
  'spike_network.fc2.weight': [2, 0, 0, 2],
  'spike_network.fc2.bias': [0, 0],
  'spike_network.fc3.weight': [2, 0, 0, 2],
  'spike_network.fc3.bias': [0, 0],
};

function flatParameters(layout: ParamLayout, values: Record<string, number[]>): Float32Array {
  const flat = new Float32Array(layout.total);
  const named = new Set(Object.keys(values));
  for (const e of layout.entries) {
    const v = values[e.name];
    if (!v) throw new Error(`fixture has no values for ${e.name}`);
    if (v.length !== e.size) throw new Error(`${e.name}: ${v.length} values for shape [${e.shape.join(', ')}]`);
    flat.set(v, e.offset);
    named.delete(e.name);
  }
  if (named.size > 0) throw new Error(`not in the layout: ${[...named].join(', ')}`);
  return flat;
}

/** A float64 value with a first-order bound on the float32 kernel's error for it. */
interface Approx {
  v: number[];
  e: number[];
}

const f32 = (values: number[]) => Array.from(Float32Array.from(values));

/** y = W·x + b: an (n+1)-term float32 dot product errs by ≤ (n+1)·u·Σ|terms| (Higham §3.1), plus W·(input error). */
function linear64(x: Approx, weight: number[], bias: number[]): Approx {
  const W = f32(weight);
  const b = f32(bias);
  const inSize = x.v.length;
  const v: number[] = [];
  const e: number[] = [];
  for (let o = 0; o < b.length; o++) {
    let sum = b[o]!;
    let magnitude = Math.abs(b[o]!);
    let propagated = 0;
    for (let i = 0; i < inSize; i++) {
      sum += W[o * inSize + i]! * x.v[i]!;
      magnitude += Math.abs(W[o * inSize + i]! * x.v[i]!);
      propagated += Math.abs(W[o * inSize + i]!) * x.e[i]!;
    }
    v.push(sum);
    e.push(propagated + (inSize + 2) * U * magnitude);
  }
  return { v, e };
}

/**
 * LayerNorm (biased variance, eps 1e-5) then exact GELU, with the error bound carried through.
 * Input errors go through LayerNorm's exact Jacobian ∂x̂ᵢ/∂hⱼ = rstd·(δᵢⱼ − 1/W − x̂ᵢx̂ⱼ/W) — over two
 * values it is ≈ 0 (x̂ = ±1 whatever h is), so bounding each term on its own would be far too loose.
 * LayerNorm's own roundings: the mean (γ_W), centring, variance (γ_{W+2}), rsqrt (2u), the products.
 */
function layerNormGelu64(h: Approx, gain: number[], bias: number[]): Approx {
  const g = f32(gain);
  const b = f32(bias);
  const W = h.v.length;
  const mean = h.v.reduce((s, v) => s + v, 0) / W;
  const c = h.v.map((v) => v - mean);
  const variance = c.reduce((s, v) => s + v * v, 0) / W;
  const rstd = 1 / Math.sqrt(variance + 1e-5);
  const xhat = c.map((v) => v * rstd);
  const eMean = (W + 1) * U * (h.v.reduce((s, v) => s + Math.abs(v), 0) / W);
  const eC = c.map((v) => eMean + U * Math.abs(v));
  const eRstdRelative = (c.reduce((s, v, i) => s + 2 * Math.abs(v) * eC[i]!, 0) / W + (W + 2) * U * variance) / (2 * (variance + 1e-5)) + 2 * U;
  const v: number[] = [];
  const e: number[] = [];
  for (let i = 0; i < W; i++) {
    let propagated = 0;
    for (let j = 0; j < W; j++) propagated += Math.abs(rstd * ((i === j ? 1 : 0) - 1 / W - (xhat[i]! * xhat[j]!) / W)) * h.e[j]!;
    const eXhat = propagated + rstd * eC[i]! + Math.abs(xhat[i]!) * (eRstdRelative + U);
    const n = xhat[i]! * g[i]! + b[i]!;
    const eN = Math.abs(g[i]!) * eXhat + 2 * U * (Math.abs(xhat[i]! * g[i]!) + Math.abs(n));
    const out = gelu64(n);
    v.push(out);
    // GELU(n) = n·(1 + erf(n/√2))/2: four roundings, erf's own error, and the input's error times |GELU′|.
    e.push(GELU_SLOPE_MAX * eN + (Math.abs(n) * ERF_ERR) / 2 + 5 * U * (Math.abs(n) + Math.abs(out)));
  }
  return { v, e };
}

function fieldNetwork64(row: number[]): Approx {
  const w = FIELD_WEIGHTS;
  let a: Approx = { v: row, e: row.map(() => 0) };
  a = linear64(a, w['field_network.encoder.0.weight']!, w['field_network.encoder.0.bias']!);
  a = layerNormGelu64(a, w['field_network.encoder.1.weight']!, w['field_network.encoder.1.bias']!);
  a = linear64(a, w['field_network.encoder.4.weight']!, w['field_network.encoder.4.bias']!);
  a = layerNormGelu64(a, w['field_network.encoder.5.weight']!, w['field_network.encoder.5.bias']!);
  a = linear64(a, w['field_network.decoder.0.weight']!, w['field_network.decoder.0.bias']!);
  a = layerNormGelu64(a, w['field_network.decoder.1.weight']!, w['field_network.decoder.1.bias']!);
  return linear64(a, w['field_network.decoder.4.weight']!, w['field_network.decoder.4.bias']!);
}

/** DESIGN.md §4: 0.1·(unbiased variance over all elements + |mean − 0.5|). */
function spikeLoss64(rates: number[]): number {
  const mean = rates.reduce((s, v) => s + v, 0) / rates.length;
  const variance = rates.reduce((s, v) => s + (v - mean) ** 2, 0) / (rates.length - 1);
  return variance + Math.abs(mean - 0.5);
}

let engine: OscillatorEngine;

beforeAll(async () => {
  engine = await createEngine({ model: MODEL });
});

afterAll(() => {
  engine.dispose();
});

type SpikePath = TfjsKernel['spikePath'];

function run(spiking: Record<string, number[]>, spikePath: SpikePath = 'host') {
  (engine.kernel as TfjsKernel).spikePath = spikePath;
  engine.setState({ parameters: flatParameters(engine.layout, { ...FIELD_WEIGHTS, ...FC1, ...spiking }) });
  const out = engine.processBatch(X, ROWS);
  // The first call may fill the kernel's Wᵀ cache; later ones add nothing and give the same result.
  const cached = tf.memory().numTensors;
  const second = engine.processBatch(X, ROWS);
  expect(tf.memory().numTensors).toBe(cached);
  expect(second.fieldOutput).toEqual(out.fieldOutput);
  expect(second.spikeRates).toEqual(out.spikeRates);
  return out;
}

describe('the float64 reference itself', () => {
  it('has the textbook GELU and erf values', () => {
    expect(gelu64(1)).toBe(0.8413447460685429);
    expect(gelu64(-1)).toBe(-0.15865525393145707);
    expect(gelu64(0)).toBe(0);
    expect(Math.abs(erf64(0.5) - 0.5204998778130465)).toBeLessThan(1e-15);
    expect(Math.abs(erf64(2) - 0.9953222650189527)).toBeLessThan(1e-15);
    expect(Math.abs(erf64(-3) + 0.9999779095030014)).toBeLessThan(1e-15);
  });
});

describe('field network on the fixture', () => {
  it('gives the float64 LayerNorm + exact-GELU output within its float32 error bound', () => {
    // Row [1, 0] by hand. encoder.0 gives h = [0.004, 0]: LayerNorm over two values has mean 0.002,
    // centred ±0.002, variance 4e-6 — comparable to eps, so eps shapes the result (every LayerNorm of
    // this fixture works in that regime; with |d| ≫ √eps, x̂ would be ±1 whatever came before):
    // x̂ = ±0.002/√(4e-6 + 1e-5) = ±0.5345225; gain [1, 2], bias [0, 0.5] give n = [0.5345225, −0.569045];
    // GELU(n) = n·Φ(n) = [0.376042, −0.161986].
    const w = Math.fround(0.004);
    const first = layerNormGelu64({ v: [w, 0], e: [0, 0] }, [1, 2], [0, 0.5]);
    const xhat = w / 2 / Math.sqrt((w / 2) ** 2 + 1e-5);
    expect(xhat).toBeCloseTo(0.5345225, 6);
    expect(first.v[0]).toBe(gelu64(xhat));
    expect(first.v[1]).toBe(gelu64(-2 * xhat + 0.5));
    expect(first.v[0]).toBeCloseTo(0.376042, 6);
    expect(first.v[1]).toBeCloseTo(-0.161986, 6);

    const out = run(PASS_THROUGH);
    let squaredError = 0;
    for (let r = 0; r < ROWS; r++) {
      const expected = fieldNetwork64(Array.from(X.subarray(r * F, (r + 1) * F)));
      for (let j = 0; j < F; j++) {
        const actual = out.fieldOutput[r * F + j]!;
        const bound = expected.e[j]!;
        // A worst-case first-order bound (≈ 1e-5 here; measured errors are ≤ 1.5e-7), not a blanket tolerance.
        expect(bound).toBeLessThan(2e-5);
        expect(Math.abs(actual - expected.v[j]!), `row ${r}, output ${j}: ${actual} vs ${expected.v[j]} (bound ${bound})`).toBeLessThanOrEqual(bound);
        squaredError += (expected.v[j]! - X[r * F + j]!) ** 2;
      }
    }
    expect(out.reconstructionLoss).toBeCloseTo(squaredError / (ROWS * F), 5);
  });
});

// Both implementations of the recurrences: JS loops on host arrays (wasm, cpu) and tfjs ops (native).
describe.each(['host', 'tensor'] as const)('LIF spiking network on the fixture (θ = 1, decay 0.95, T = 3; %s path)', (spikePath) => {
  it('layer 1: accumulation fires on step 2, the reset stops step 3, and m = θ does not fire', () => {
    // PASS_THROUGH layers 2 and 3: the rates show layer 1 directly.
    const out = run(PASS_THROUGH, spikePath);
    // Row [1,0], c1 = [0.6, 1.5]
    //   unit 0: t1 m = 0.6 ≤ 1 → 0, m ← 0.6·0.95 = 0.57
    //           t2 m = 0.57 + 0.6 = 1.17 > 1 → 1 (only because of accumulation), m ← 1.17·(1 − 1)·0.95 = 0
    //           t3 m = 0 + 0.6 = 0.6 → 0 (the reset zeroed it; without it, 1.17·0.95 + 0.6 = 1.71 would fire)
    //           rate 1/3
    //   unit 1: 1.5 > 1 fires at every step (reset each time): rate 1
    // Row [0,1], c1 = [1.0, 0.25]
    //   unit 0: t1 m = 1.0, not > θ (strict) → 0, m ← 0.95; t2 1.95 → 1, m ← 0; t3 1.0 → 0: rate 1/3
    //   unit 1: 0.25, 0.4875, 0.713125: never: rate 0
    // Row [1,1], c1 = [1.6, 1.75]: both fire every step: rates [1, 1]
    const third = Math.fround(1 / 3);
    expect(Array.from(out.spikeRates)).toEqual([third, 1, third, 0, 1, 1]);
    const rates = [1 / 3, 1, 1 / 3, 0, 1, 1];
    expect(out.spikeLoss).toBeCloseTo(spikeLoss64(rates), 6);
    expect(out.loss).toBeCloseTo(out.reconstructionLoss + 0.1 * out.spikeLoss, 12);
  });

  it('layers 2 and 3: accumulation, reset and bias traced step by step', () => {
    const out = run({
      'spike_network.fc2.weight': [1.2, 0, 0, 0.55],
      'spike_network.fc2.bias': [0, 0],
      'spike_network.fc3.weight': [1.1, 0, 0, 0.5],
      'spike_network.fc3.bias': [0, 0.5],
    }, spikePath);
    // Layer 1 spikes (from the test above): row 0 s1 = [0,1],[1,1],[0,1] for t = 1, 2, 3;
    // row 1: [0,0],[1,0],[0,0]; row 2: [1,1] at every step.
    //
    // Row 0, layer 2 (u2 = [1.2·s1₀, 0.55·s1₁]):
    //   t1 u2 = [0, 0.55]    m2 = [0, 0.55]       s2 = [0, 0]  m2 ← [0, 0.5225]
    //   t2 u2 = [1.2, 0.55]  m2 = [1.2, 1.0725]   s2 = [1, 1]  m2 ← [0, 0]   (unit 1 by accumulation)
    //   t3 u2 = [0, 0.55]    m2 = [0, 0.55]       s2 = [0, 0]
    // Row 0, layer 3 (u3 = [1.1·s2₀, 0.5·s2₁ + 0.5]):
    //   t1 u3 = [0, 0.5]     m3 = [0, 0.5]        s3 = [0, 0]  m3 ← [0, 0.475]
    //   t2 u3 = [1.1, 1.0]   m3 = [1.1, 1.475]    s3 = [1, 1]  m3 ← [0, 0]
    //   t3 u3 = [0, 0.5]     m3 = [0, 0.5]        s3 = [0, 0]
    //   rates [1/3, 1/3]
    // Row 1, layer 2: t1 [0, 0] → s2 [0, 0]; t2 u2 = [1.2, 0] → s2 = [1, 0]; t3 [0, 0] → [0, 0]
    // Row 1, layer 3:
    //   t1 u3 = [0, 0.5]     m3 = [0, 0.5]        s3 = [0, 0]  m3 ← [0, 0.475]
    //   t2 u3 = [1.1, 0.5]   m3 = [1.1, 0.975]    s3 = [1, 0]  m3 ← [0, 0.92625]
    //   t3 u3 = [0, 0.5]     m3 = [0, 1.42625]    s3 = [0, 1]  (the bias alone, 0.5, never fires)
    //   rates [1/3, 1/3]
    // Row 2, layer 2: u2 = [1.2, 0.55] every step → unit 0 fires every step; unit 1: 0.55, 1.0725
    //   (fires, reset), 0.55 → s2 = [1,0], [1,1], [1,0]
    // Row 2, layer 3: unit 0 gets 1.1 every step → fires every step; unit 1: 0.5 (m ← 0.475),
    //   0.475 + 1.0 = 1.475 (fires, reset), 0.5 → rates [1, 1/3]
    const third = Math.fround(1 / 3);
    expect(Array.from(out.spikeRates)).toEqual([third, third, third, third, 1, third]);
    expect(out.spikeLoss).toBeCloseTo(spikeLoss64([1 / 3, 1 / 3, 1 / 3, 1 / 3, 1, 1 / 3]), 6);
  });

  it('a lower threshold or no leak changes the hand-traced rates as predicted', () => {
    // θ = 0.5 with the pass-through layers: c1 = 0.6 now fires at once and after every reset
    // (rate 1), 1.0 too (rate 1); 0.25 accumulates: 0.25, 0.4875, 0.713125 → fires on step 3 only.
    const lowThreshold = run({ ...PASS_THROUGH, 'spike_network.threshold': [0.5] }, spikePath);
    const third = Math.fround(1 / 3);
    expect(Array.from(lowThreshold.spikeRates)).toEqual([1, 1, 1, third, 1, 1]);
    // decay 0: nothing carries over, so only c1 > 1 ever fires: [0.6, 1.5] → [0, 1]; [1.0, 0.25] → [0, 0].
    const noCarry = run({ ...PASS_THROUGH, 'spike_network.decay': [0] }, spikePath);
    expect(Array.from(noCarry.spikeRates)).toEqual([0, 1, 0, 0, 1, 1]);
  });
});
