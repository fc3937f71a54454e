import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../src-main/engine/random';
import { layerNormGelu, layerNormGeluBackward, linear, linearBackward, SURROGATE_SLOPE, type TfjsKernel } from '../../src-main/engine/tfjs-kernel';
import { createEngine, gelu64, layerNorm64, SMALL_MODEL, thrownBy, useTestBackend } from '../helpers/engine';
import { richardson } from '../helpers/finite-differences';
import { kinkFreeSpikingParameters, smoothSpikes64 } from '../helpers/smooth-spike';

/**
 * Finite-difference checks of the hand-written backward passes (STYLE.md: every custom gradient has
 * one). References are plain float64 JavaScript over the very same float32 numbers the kernel sees.
 */

/** float32 unit roundoff. */
const U = 2 ** -24;
/** Worst |erf error| of any tfjs backend: cpu uses Abramowitz–Stegun 7.1.26 (≤ 1.5e-7); wasm measures ~4e-8. */
const ERF_ERR = 1.5e-7;

type Constants = Parameters<typeof layerNormGelu>[4];
type Grads = Record<string, tf.Tensor>;

function normal(seed: number, n: number, std = 1, mean = 0): Float32Array {
  const out = new Rng(seed).fillNormal(new Float32Array(n), std);
  for (let i = 0; i < n; i++) out[i] = out[i]! + mean;
  return out;
}

/** The kernel's scalar constants, built the same way (its Constants interface is not exported). */
function constants(): Constants {
  return {
    one: tf.scalar(1),
    half: tf.scalar(0.5),
    invSqrt2: tf.scalar(Math.SQRT1_2),
    negHalf: tf.scalar(-0.5),
    invSqrt2Pi: tf.scalar(1 / Math.sqrt(2 * Math.PI)),
    eps: tf.scalar(1e-5),
    slope: tf.scalar(SURROGATE_SLOPE),
  };
}

/** Central difference of f in float64 for every element of `values` (perturbed in place, then restored). */
function centralDifferences(values: Float64Array, step: number, f: () => number): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const saved = values[i]!;
    values[i] = saved + step;
    const up = f();
    values[i] = saved - step;
    const down = f();
    values[i] = saved;
    out[i] = (up - down) / (2 * step);
  }
  return out;
}

/** Runs `fn` inside tf.tidy and hands back its plain (non-tensor) result; every tensor made is freed. */
function tidyRun<T>(fn: () => T): T {
  let out: T | undefined;
  tf.tidy(() => {
    out = fn();
  });
  return out as T;
}

/** Asserts |actual − expected| ≤ bound elementwise, reporting the worst element. */
function expectWithin(label: string, actual: ArrayLike<number>, expected: ArrayLike<number>, bound: ArrayLike<number>): void {
  expect(actual.length, label).toBe(expected.length);
  let worst = -1;
  let worstRatio = 0;
  for (let i = 0; i < expected.length; i++) {
    const ratio = Math.abs(actual[i]! - expected[i]!) / bound[i]!;
    if (!(ratio <= worstRatio)) {
      worstRatio = ratio;
      worst = i;
    }
  }
  expect(worstRatio, `${label}[${worst}]: ${actual[worst]} vs ${expected[worst]} (bound ${bound[worst]})`).toBeLessThanOrEqual(1);
}

beforeAll(async () => {
  await useTestBackend();
});

describe('linear / linearBackward', () => {
  const ROWS = 4;
  const IN = 5;
  const OUT = 3;
  const x = normal(1, ROWS * IN);
  const w = normal(2, OUT * IN, 0.5); // PyTorch layout [out, in]
  const b = normal(3, OUT, 0.5);
  const g = normal(4, ROWS * OUT); // upstream gradient G

  it('gives dW, db, dX equal to float64 central differences of L = Σ G·(x·Wᵀ + b)', () => {
    const before = tf.memory().numTensors;
    const result = tidyRun(() => {
      const xt = tf.tensor2d(x, [ROWS, IN]);
      // Both take Wᵀ ([in, out]), the kernel's cached transpose of the [out, in] PyTorch weight.
      const weightT = tf.transpose(tf.tensor2d(w, [OUT, IN]));
      const y = linear(xt, weightT, tf.tensor1d(b));
      const grads: Grads = {};
      const dx = linearBackward(tf.tensor2d(g, [ROWS, OUT]), xt, weightT, grads, 'fc', true);
      const noInputGrad = linearBackward(tf.tensor2d(g, [ROWS, OUT]), xt, weightT, {}, 'fc', false);
      return {
        y: Float32Array.from(y.dataSync()),
        dW: Float32Array.from(grads['fc.weight']!.dataSync()),
        dWShape: grads['fc.weight']!.shape,
        db: Float32Array.from(grads['fc.bias']!.dataSync()),
        dX: Float32Array.from(dx!.dataSync()),
        noInputGrad,
      };
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(result.noInputGrad).toBeNull();
    expect(result.dWShape).toEqual([OUT, IN]);

    const X = Float64Array.from(x);
    const W = Float64Array.from(w);
    const B = Float64Array.from(b);
    const forward64 = (): Float64Array => {
      const y = new Float64Array(ROWS * OUT);
      for (let r = 0; r < ROWS; r++) {
        for (let o = 0; o < OUT; o++) {
          let s = B[o]!;
          for (let i = 0; i < IN; i++) s += X[r * IN + i]! * W[o * IN + i]!;
          y[r * OUT + o] = s;
        }
      }
      return y;
    };
    const loss = () => forward64().reduce((s, v, k) => s + g[k]! * v, 0);
    // L is affine in each coordinate, so a central difference is exact up to float64 rounding
    // (~2^-52·Σ|G·y|/step ≈ 1e-13 here): the float64 side is effectively exact.
    const step = 1e-3;
    const fdW = centralDifferences(W, step, loss);
    const fdB = centralDifferences(B, step, loss);
    const fdX = centralDifferences(X, step, loss);

    // float32 error of an n-term dot product, in any summation order, with or without FMA:
    // ≤ γ_n·Σ|terms|, γ_n ≈ n·u (Higham, Accuracy and Stability §3.1). Plus 1e-12 for the float64 side.
    const bound = (n: number, magnitude: number) => (n + 1) * U * magnitude + 1e-12;
    const bW = new Float64Array(OUT * IN);
    const bX = new Float64Array(ROWS * IN);
    const bB = new Float64Array(OUT);
    const bY = new Float64Array(ROWS * OUT);
    for (let o = 0; o < OUT; o++) {
      for (let i = 0; i < IN; i++) {
        let m = 0;
        for (let r = 0; r < ROWS; r++) m += Math.abs(g[r * OUT + o]! * x[r * IN + i]!);
        bW[o * IN + i] = bound(ROWS, m);
      }
      let m = 0;
      for (let r = 0; r < ROWS; r++) m += Math.abs(g[r * OUT + o]!);
      bB[o] = bound(ROWS, m);
    }
    for (let r = 0; r < ROWS; r++) {
      for (let i = 0; i < IN; i++) {
        let m = 0;
        for (let o = 0; o < OUT; o++) m += Math.abs(g[r * OUT + o]! * w[o * IN + i]!);
        bX[r * IN + i] = bound(OUT, m);
      }
      for (let o = 0; o < OUT; o++) {
        let m = Math.abs(b[o]!);
        for (let i = 0; i < IN; i++) m += Math.abs(x[r * IN + i]! * w[o * IN + i]!);
        bY[r * OUT + o] = bound(IN + 1, m);
      }
    }
    expectWithin('y', result.y, forward64(), bY);
    expectWithin('dW', result.dW, fdW, bW);
    expectWithin('db', result.db, fdB, bB);
    expectWithin('dX', result.dX, fdX, bX);
  });
});

describe('layerNormGelu / layerNormGeluBackward', () => {
  const ROWS = 3;
  const WIDTH = 7;
  // Rows with an offset and a spread ≈ 1.5, so centring and scaling both matter; gain ≠ 1, bias ≠ 0.
  const h = normal(11, ROWS * WIDTH, 1.5, 0.3);
  const gain = normal(12, WIDTH, 0.3, 1);
  const bias = normal(13, WIDTH, 0.2);
  const g = normal(14, ROWS * WIDTH);

  function lnGelu64(H: Float64Array, Gain: Float64Array, Bias: Float64Array): { out: number[]; n: number[]; xhat: number[]; rstd: number[] } {
    const out: number[] = [];
    const n: number[] = [];
    const xhat: number[] = [];
    const rstd: number[] = [];
    for (let r = 0; r < ROWS; r++) {
      const row = Array.from(H.subarray(r * WIDTH, (r + 1) * WIDTH));
      const ones = new Array<number>(WIDTH).fill(1);
      const zeros = new Array<number>(WIDTH).fill(0);
      const normalised = layerNorm64(row, ones, zeros);
      const mean = row.reduce((s, v) => s + v, 0) / WIDTH;
      rstd.push(1 / Math.sqrt(row.reduce((s, v) => s + (v - mean) ** 2, 0) / WIDTH + 1e-5));
      normalised.forEach((v, i) => {
        const pre = v * Gain[i]! + Bias[i]!;
        xhat.push(v);
        n.push(pre);
        out.push(gelu64(pre));
      });
    }
    return { out, n, xhat, rstd };
  }

  function runKernel(train: boolean) {
    return tidyRun(() => {
      const c = constants();
      const gainT = tf.tensor1d(gain);
      const res = layerNormGelu(tf.tensor2d(h, [ROWS, WIDTH]), gainT, tf.tensor1d(bias), train, c);
      const out = Float32Array.from(res.out.dataSync());
      if (!train) return { out, geluGradIsNull: res.cache.geluGrad === null, dh: null, dGain: null, dBias: null };
      const grads: Grads = {};
      const dh = layerNormGeluBackward(tf.tensor2d(g, [ROWS, WIDTH]), res.cache, gainT, grads, 'ln');
      return {
        out,
        geluGradIsNull: false,
        dh: Float32Array.from(dh.dataSync()),
        dGain: Float32Array.from(grads['ln.weight']!.dataSync()),
        dBias: Float32Array.from(grads['ln.bias']!.dataSync()),
      };
    });
  }

  it('matches float64 LayerNorm + exact GELU, and its backward matches float64 central differences', () => {
    const before = tf.memory().numTensors;
    const result = runKernel(true);
    expect(tf.memory().numTensors).toBe(before);

    const H = Float64Array.from(h);
    const Gain = Float64Array.from(gain);
    const Bias = Float64Array.from(bias);
    const loss = () => lnGelu64(H, Gain, Bias).out.reduce((s, v, k) => s + g[k]! * v, 0);
    // Smooth in every input: truncation ≈ step²/6·|L'''| ~ 1e-11, rounding ≈ 2^-52·Σ|G·out|/step ~ 1e-9.
    const step = 1e-6;
    const fdH = centralDifferences(H, step, loss);
    const fdGain = centralDifferences(Gain, step, loss);
    const fdBias = centralDifferences(Bias, step, loss);
    const ref = lnGelu64(H, Gain, Bias);

    // Error budget in float32: the longest path (mean, centre, variance, rsqrt, normalise, affine,
    // erf/exp for GELU and GELU′, then the three-term LayerNorm backward with two more means) has
    // ≈ 30 roundings of ≤ u each, applied to magnitudes S computed below; erf's own error (≤ 1.5e-7 ≈
    // 2.5u on Φ ≤ 1) adds to GELU and GELU′. So bound = (30u·S + ERF_ERR·S_erf) + 1e-8 for the float64 FD.
    const C = 30 * U;
    const fd = 1e-8;
    const sDn = ref.n.map((n, k) => Math.abs(g[k]!) * (1 + Math.abs(n))); // |G|·(|Φ| + |n·φ| + |n|·…) ≤ |G|(1 + |n|)
    const eDn = ref.n.map((_n, k) => (Math.abs(g[k]!) * ERF_ERR) / 2); // dn = G·(Φ + nφ), Φ = (1 + erf)/2
    const boundOut = ref.n.map((n) => C * (1 + Math.abs(n)) * (1 + Math.abs(n)) + (Math.abs(n) * ERF_ERR) / 2 + 1e-12);
    const boundBias = new Float64Array(WIDTH);
    const boundGain = new Float64Array(WIDTH);
    for (let j = 0; j < WIDTH; j++) {
      for (let r = 0; r < ROWS; r++) {
        const k = r * WIDTH + j;
        boundBias[j] = boundBias[j]! + C * sDn[k]! + eDn[k]!;
        boundGain[j] = boundGain[j]! + (C * sDn[k]! + eDn[k]!) * Math.abs(ref.xhat[k]!);
      }
      boundBias[j] = boundBias[j]! + fd;
      boundGain[j] = boundGain[j]! + fd;
    }
    const boundH = new Float64Array(ROWS * WIDTH);
    for (let r = 0; r < ROWS; r++) {
      let meanS = 0;
      let meanSX = 0;
      for (let j = 0; j < WIDTH; j++) {
        const k = r * WIDTH + j;
        const s = Math.abs(gain[j]!) * (C * sDn[k]! + eDn[k]!);
        meanS += s / WIDTH;
        meanSX += (s * Math.abs(ref.xhat[k]!)) / WIDTH;
      }
      for (let j = 0; j < WIDTH; j++) {
        const k = r * WIDTH + j;
        const s = Math.abs(gain[j]!) * (C * sDn[k]! + eDn[k]!);
        boundH[k] = ref.rstd[r]! * (s + meanS + Math.abs(ref.xhat[k]!) * meanSX) + fd;
      }
    }

    expectWithin('out', result.out, ref.out, boundOut);
    expectWithin('d bias', result.dBias!, fdBias, boundBias);
    expectWithin('d gain', result.dGain!, fdGain, boundGain);
    expectWithin('dh', result.dh!, fdH, boundH);
  });

  it('keeps no GELU′ in eval mode, and its backward then refuses to run', async () => {
    const before = tf.memory().numTensors;
    expect(runKernel(false).geluGradIsNull).toBe(true);
    const error = await thrownBy(() =>
      tf.tidy(() => {
        const gainT = tf.tensor1d(gain);
        const res = layerNormGelu(tf.tensor2d(h, [ROWS, WIDTH]), gainT, tf.tensor1d(bias), false, constants());
        return layerNormGeluBackward(tf.tensor2d(g, [ROWS, WIDTH]), res.cache, gainT, {}, 'ln');
      }),
    );
    expect(error).toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('training-mode forward') });
    expect(tf.memory().numTensors).toBe(before);
  });
});

/**
 * Whole model, backpropagation through time. The model's spike is a Heaviside step: it has no
 * derivative to compare with (finite differences give 0, or ∞ when a membrane sits on θ), so a
 * Heaviside model cannot be checked this way. `spikeForward = 'smooth'` swaps the step for
 * s(z) = z/(1 + 25|z|), whose exact derivative is the surrogate 1/(1 + 25|z|)²: the kernel's BPTT is
 * then the true gradient of the function the forward computes, and finite differences can check it.
 */
describe('whole-model BPTT with the smooth spike', () => {
  const ROWS = 5;
  const F = SMALL_MODEL.fieldSize!;
  const S = SMALL_MODEL.spikingHiddenSize!;
  const T = SMALL_MODEL.spikingSteps!;
  const x = normal(7, ROWS * F);

  // The spiking parameters are set so every membrane sits 0.04..0.2 above θ = 0, where no kink of s′
  // lies inside a perturbation (tests/helpers/smooth-spike.ts). The largest perturbation (2e-3 on a
  // fc1 weight, times |x| ≤ 2.5, accumulated over the steps) moves a membrane by ≤ 0.01, well inside
  // that margin; we measured 1e-2 relative FD errors, shrinking only linearly in h, at the default init.
  const FC1_BIAS = [0.04, 0.06] as const;

  /** DESIGN.md §4's loss in float64 from the float32 outputs: MSE + 0.1·(unbiased var + |mean − 0.5|). */
  function loss64(fieldOutput: Float32Array, rates: ArrayLike<number>): number {
    let mse = 0;
    for (let i = 0; i < x.length; i++) mse += (fieldOutput[i]! - x[i]!) ** 2;
    mse /= x.length;
    let mean = 0;
    for (let i = 0; i < rates.length; i++) mean += rates[i]!;
    mean /= rates.length;
    let variance = 0;
    for (let i = 0; i < rates.length; i++) variance += (rates[i]! - mean) ** 2;
    variance /= rates.length - 1;
    return mse + 0.1 * (variance + Math.abs(mean - 0.5));
  }

  // Two implementations of the recurrences: JS loops on host arrays (wasm, cpu) and tfjs ops (native).
  it.each(['host', 'tensor'] as const)('computeGradients matches central differences of the forward loss in every tensor (%s LIF path)', async (spikePath) => {
    const engine = await createEngine({ model: { ...SMALL_MODEL, dropout: 0, spikeGradient: 'surrogate' }, seed: 3 });
    const kernel = engine.kernel as TfjsKernel;
    kernel.spikeForward = 'smooth';
    kernel.spikePath = spikePath;
    try {
      const p0 = kernel.getParameters();
      kinkFreeSpikingParameters(engine.layout, p0, FC1_BIAS);
      kernel.setParameters(p0);
      // Measured where no Wᵀ cache is held (setParameters and applyGradients both drop it).
      const tensorsBefore = tf.memory().numTensors;

      // Precondition of the check, and the smooth forward itself against the float64 reference.
      const reference = smoothSpikes64(engine.layout, p0, x, ROWS, { fieldSize: F, spikingHiddenSize: S, spikingSteps: T });
      expect(reference.margin).toBeGreaterThan(0.04);
      const eval0 = engine.processBatch(x, ROWS);
      // A rate comes through ≤ 40 float32 ops on membranes and currents ≤ 0.25, each adding ≤ u·0.25,
      // passed on with gains s′·W ≤ 1: |error| ≤ 40·u·0.25 ≈ 6e-7.
      for (let i = 0; i < reference.rates.length; i++) expect(Math.abs(eval0.spikeRates[i]! - reference.rates[i]!)).toBeLessThan(40 * U * 0.25);
      // The kernel's own float32 loss agrees with DESIGN.md's formula evaluated in float64.
      expect(Math.abs(eval0.loss - loss64(eval0.fieldOutput, eval0.spikeRates))).toBeLessThan(1e-6);

      const parts = engine.computeGradients(x, ROWS);
      expect(parts.loss).toBeCloseTo(eval0.loss, 6); // dropout 0: training forward = eval forward
      const grads = kernel.readGradients();
      kernel.writeGradients(grads); // pending gradients are replaced, not leaked

      const lossAt = (p: Float32Array): number => {
        kernel.setParameters(p);
        const out = kernel.forward(x, ROWS);
        return loss64(out.fieldOutput, out.spikeRates);
      };
      /*
       * Step sizes and tolerance. Richardson extrapolation cancels the h² truncation term; the h⁴ one
       * is largest for the smooth spike at the smallest margin z = 0.04, where s⁽⁵⁾/s′ = 25⁴·5!/2⁴ ≈ 3e6
       * and a fc1 weight moves z by ≤ 5h: (10h·5h)²/120·3e6 ≈ 6e-5 relative at h = 2e-3 (the field
       * network, LayerNorm and GELU, is far smoother and takes h = 6e-3). The float32 analytic gradient
       * itself carries ~1e-5..1e-4 relative rounding. Hence 1e-3·|g|.
       * On top comes rounding noise of the loss: it is evaluated in float64 from float32 outputs whose
       * last bits move erratically from one parameter value to the next. That noise is measured here:
       * δ = the largest change of the loss over values 1..4 ulps apart, where the true change is
       * negligible. The extrapolated difference turns a difference δ between two evaluations into
       * ≤ (4·δ/h + δ/2h)/3 = 0.75δ/(h/2); 3δ/(h/2) allows for the sample maximum underestimating δ 4×.
       */
      const noiseAt = (i: number): number => {
        const base = lossAt(p0);
        let noise = 0;
        for (const ulps of [-4, -3, -2, -1, 1, 2, 3, 4]) {
          const nudged = Float32Array.from(p0);
          // About one float32 ulp per unit (at least 1e-3·2^-23, so zeros move too).
          nudged[i] = p0[i]! + ulps * Math.max(Math.abs(p0[i]!), 1e-3) * 2 ** -23;
          noise = Math.max(noise, Math.abs(lossAt(nudged) - base));
        }
        return noise;
      };
      const checked: string[] = [];
      for (const e of engine.layout.entries) {
        let i = e.offset;
        for (let k = e.offset; k < e.offset + e.size; k++) if (Math.abs(grads[k]!) > Math.abs(grads[i]!)) i = k;
        const h = e.group === 'field' ? 6e-3 : 2e-3;
        const fdGrad = richardson(p0, i, h, lossAt);
        const analytic = grads[i]!;
        expect(Math.abs(analytic), `${e.name} has a gradient`).toBeGreaterThan(e.group === 'field' ? 1e-2 : 1e-5);
        const tolerance = 1e-3 * Math.abs(analytic) + (3 * noiseAt(i)) / (h / 2);
        expect(tolerance, `${e.name}: rounding noise leaves the check meaningful`).toBeLessThan(0.2 * Math.abs(analytic));
        expect(Math.abs(fdGrad - analytic), `${e.name}[${i - e.offset}]: analytic ${analytic}, finite difference ${fdGrad}, tolerance ${tolerance}`).toBeLessThanOrEqual(tolerance);
        checked.push(e.name);
      }
      expect(checked).toContain('spike_network.threshold');
      expect(checked).toContain('spike_network.decay');
      expect(checked.length).toBe(engine.layout.entries.length);
      kernel.setParameters(p0);
      engine.applyGradients();
      expect(tf.memory().numTensors).toBe(tensorsBefore);
    } finally {
      engine.dispose();
    }
  });
});
