/**
 * The leaky integrate-and-fire recurrence of one spiking layer over T steps, on host arrays.
 *
 * Used by backends whose tensors live in host memory (tfjs wasm and cpu), where reading and
 * writing a tensor is a memcpy: one JS loop here replaces ~6 tfjs ops per layer and step (each
 * ~6 µs of fixed cost), and the layer's matMuls can then run once over all T steps.
 *
 * Layouts are step-major: element i of step t is at [t·n + i]. Membranes are stored as float32,
 * so the arithmetic rounds like the tensor path's (and PyTorch's) float32 ops.
 */

/** ds/dm = 1/(1 + SLOPE·|m − θ|)², and the smooth twin z/(1 + SLOPE·|z|) whose derivative it is. */
export const SURROGATE_SLOPE = 25;

export interface LifParams {
  steps: number;
  /** Elements per step (batch × units). */
  size: number;
  threshold: number;
  decay: number;
  /** Replace the step function by its smooth twin (finite-difference tests only). */
  smooth: boolean;
}

/**
 * m_t = r_{t−1} + u_t; s_t = [m_t > θ]; r_t = m_t·(1 − s_t)·decay, r_{−1} = 0.
 * `input` holds u for every step (length steps·size), or one step used at every step (length size).
 */
export function lifForward(p: LifParams, input: Float32Array, spikes: Float32Array, membranes: Float32Array | null): void {
  const { steps, size, threshold, decay, smooth } = p;
  const constant = input.length === size;
  const carry = new Float32Array(size);
  for (let t = 0; t < steps; t++) {
    const base = t * size;
    const u = constant ? input : input.subarray(base, base + size);
    const sOut = spikes.subarray(base, base + size);
    if (membranes) membranes.set(carry, base);
    if (smooth) {
      for (let i = 0; i < size; i++) {
        const m = Math.fround(carry[i]! + u[i]!);
        const z = m - threshold;
        const s = z / (1 + SURROGATE_SLOPE * Math.abs(z));
        sOut[i] = s;
        carry[i] = Math.fround(m * (1 - s)) * decay;
      }
    } else {
      // Branchless: spikes are unpredictable, and a mispredicted branch costs more than the math.
      for (let i = 0; i < size; i++) {
        const m = Math.fround(carry[i]! + u[i]!);
        const s = +(m > threshold);
        sOut[i] = s;
        carry[i] = m * (1 - s) * decay;
      }
    }
    // The membranes of this step (before reset) are needed by the backward pass.
    if (membranes) {
      const mOut = membranes.subarray(base, base + size);
      for (let i = 0; i < size; i++) mOut[i] = Math.fround(mOut[i]! + u[i]!);
    }
  }
}

export interface LifGradients {
  /** dL/du for every step (the gradient of the layer's input current), step-major. */
  du: Float32Array;
  threshold: number;
  decay: number;
}

/**
 * Backpropagation through the T steps with the surrogate spike gradient; the gradient flows through
 * the reset term too (as autograd would). `dsExternal` is dL/ds_t from downstream for every step
 * (length steps·size), or one array used at every step (length size).
 */
export function lifBackward(p: LifParams, spikes: Float32Array, membranes: Float32Array, dsExternal: Float32Array, du: Float32Array): LifGradients {
  const { steps, size, threshold, decay } = p;
  const constant = dsExternal.length === size;
  const carry = new Float32Array(size);
  let dThreshold = 0;
  let dDecay = 0;
  for (let t = steps - 1; t >= 0; t--) {
    const base = t * size;
    const dsBase = constant ? 0 : base;
    const last = t === steps - 1;
    for (let i = 0; i < size; i++) {
      const m = membranes[base + i]!;
      const s = spikes[base + i]!;
      let ds = dsExternal[dsBase + i]!;
      let dm = 0;
      if (!last) {
        // r = m·(1 − s)·decay  ⇒  dm += dr·(1 − s)·decay, ds −= dr·m·decay, ddecay += dr·m·(1 − s)
        const dr = carry[i]!;
        ds -= dr * m * decay;
        dm = dr * (1 - s) * decay;
        dDecay += dr * m * (1 - s);
      }
      const a = 1 + SURROGATE_SLOPE * Math.abs(m - threshold);
      const dsSg = ds / (a * a);
      dThreshold -= dsSg;
      const g = dm + dsSg;
      du[base + i] = g;
      carry[i] = g;
    }
  }
  return { du, threshold: dThreshold, decay: dDecay };
}

/** Row-major [rows, cols] → [cols, rows]. */
export function transposeHost(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = values[base + c]!;
  }
  return out;
}

/** Σ over rows of a row-major [rows, cols] array (also: Σ over steps of a step-major [steps, size] one). */
export function sumRows(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c] = out[c]! + values[base + c]!;
  }
  return out;
}

/** spikeLoss = var(rates) (unbiased) + |mean − 0.5| and, with `weight`, d(weight·spikeLoss)/d rates. */
export function spikeLossHost(rates: Float32Array, weight: number | null): { loss: number; dRates: Float32Array | null } {
  const n = rates.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += rates[i]!;
  const mean = sum / n;
  let squares = 0;
  for (let i = 0; i < n; i++) squares += (rates[i]! - mean) ** 2;
  const variance = n > 1 ? squares / (n - 1) : Number.NaN;
  const offset = mean - 0.5;
  const loss = variance + Math.abs(offset);
  if (weight === null) return { loss, dRates: null };
  const dRates = new Float32Array(n);
  const sign = Math.sign(offset);
  for (let i = 0; i < n; i++) dRates[i] = weight * ((2 * (rates[i]! - mean)) / (n - 1) + sign / n);
  return { loss, dRates };
}
