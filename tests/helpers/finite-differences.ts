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
    const span = (plus[i]! - minus[i]!) / 2;
    return [(lossAt(plus) - lossAt(minus)) / (2 * span), span];
  };
  const [wide, h1] = central(h);
  const [narrow, h2] = central(h / 2);
  return (h1 * h1 * narrow - h2 * h2 * wide) / (h1 * h1 - h2 * h2);
}
