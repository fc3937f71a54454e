// The all-reduce's arithmetic, shared by the file and shared-memory exchanges (no Node import).

/**
 * out = Σ_r weights[r]·slots[r], summed in rank order in double precision and rounded once: the
 * same operations on every worker, so every replica gets the same bits.
 */
export function weightedSum(slots: readonly Float32Array[], weights: readonly number[], out: Float32Array): void {
  const n = out.length;
  if (slots.length === 2) {
    const a = slots[0]!;
    const b = slots[1]!;
    const w0 = weights[0]!;
    const w1 = weights[1]!;
    for (let i = 0; i < n; i++) out[i] = w0 * a[i]! + w1 * b[i]!;
    return;
  }
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let r = 0; r < slots.length; r++) sum += weights[r]! * slots[r]![i]!;
    out[i] = sum;
  }
}
