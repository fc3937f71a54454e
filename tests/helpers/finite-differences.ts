/**
 * Central differences at half-spans h and h/2, combined by Richardson extrapolation so the h²
 * truncation term cancels (error O(h⁴)). Perturbed values are float32, so the spans actually
 * taken are used.
 */
export function richardson(p0: Float32Array, i: number, h: number, lossAt: (p: Float32Array) => number): number {
  const central = (step: number): [number, number] => {
    const plus = Float32Array.from(p0);
    plus[i] = p0[i]! + step;
    const minus = Float32Array.from(p0);
    minus[i] = p0[i]! - step;
    const span = (plus[i] - minus[i]) / 2;
    return [(lossAt(plus) - lossAt(minus)) / (2 * span), span];
  };
  const [wide, h1] = central(h);
  const [narrow, h2] = central(h / 2);
  return (h1 * h1 * narrow - h2 * h2 * wide) / (h1 * h1 - h2 * h2);
}

/** richardson() for a loss computed asynchronously: the four perturbed losses first, then the same combination. */
export async function richardsonAsync(p0: Float32Array, i: number, h: number, lossAt: (p: Float32Array) => number | Promise<number>): Promise<number> {
  const perturbed: Float32Array[] = [];
  richardson(p0, i, h, (p) => (perturbed.push(Float32Array.from(p)), 0));
  const losses: number[] = [];
  for (const p of perturbed) losses.push(await lossAt(p));
  let k = 0;
  return richardson(p0, i, h, () => losses[k++]!);
}
