/**
 * Seeded randomness that is identical on every backend (tfjs-wasm, tfjs-node, a future wasm kernel):
 * initial weights, dropout masks and synthetic data all come from here, never from tf.random*.
 */

/** splitmix32: tiny, fast, good enough statistical quality for init and dropout masks. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Derives an independent stream, e.g. `Rng.derive(seed, step, layer)`. */
  static derive(...parts: number[]): Rng {
    return new Rng(Rng.deriveState(...parts));
  }

  /** The starting state of `derive(...parts)`: the fused wasm kernel runs the same stream itself. */
  static deriveState(...parts: number[]): number {
    let h = 0x9e3779b9;
    for (const part of parts) {
      h = Math.imul(h ^ (part >>> 0), 0x85ebca6b);
      h ^= h >>> 13;
      h = Math.imul(h, 0xc2b2ae35);
      h ^= h >>> 16;
      // Fold the high part of large integers (e.g. step counts beyond 2^32) in too.
      h = (h + Math.floor(part / 4294967296)) >>> 0;
    }
    return h;
  }

  nextUint32(): number {
    this.#state = (this.#state + 0x9e3779b9) >>> 0;
    let z = this.#state;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  uniform(low: number, high: number): number {
    return low + (high - low) * this.next();
  }

  /** Standard normal (Box–Muller, one value per call for simplicity). */
  normal(): number {
    let u = this.next();
    while (u <= Number.EPSILON) u = this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  fillNormal(out: Float32Array, std: number): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.normal() * std;
    return out;
  }
}

/**
 * Inverted dropout mask: each element is 0 with probability p, else 1/(1-p) (PyTorch semantics).
 */
export function dropoutMask(rng: Rng, size: number, p: number, out?: Float32Array): Float32Array {
  const mask = out && out.length >= size ? out.subarray(0, size) : new Float32Array(size);
  if (p <= 0) return mask.fill(1);
  const keep = 1 / (1 - p);
  // Compare against a 32-bit threshold to avoid a float division per element.
  const threshold = Math.floor(p * 4294967296);
  for (let i = 0; i < size; i++) mask[i] = rng.nextUint32() < threshold ? 0 : keep;
  return mask;
}
