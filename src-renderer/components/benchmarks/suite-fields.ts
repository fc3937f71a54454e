/** Field checks for the suite form, with the same bounds as API_REQUESTS.runBenchmarkSuite. */

export type Checked<T> = { ok: true; value: T } | { ok: false; error: string };

export const LIMITS = {
  workers: { min: 1, max: 64 },
  batchSize: { min: 1, max: 65_536 },
  warmup: { min: 0, max: 10_000 },
  iterations: { min: 1, max: 100_000 },
  repeats: { min: 1, max: 100 },
} as const;

export function wholeNumber(text: string, { min, max }: { min: number; max: number }): Checked<number> {
  const trimmed = text.trim();
  if (trimmed === '') return { ok: false, error: 'Required' };
  const value = Number(trimmed);
  if (!/^\d+$/.test(trimmed) || value < min || value > max) {
    return { ok: false, error: `Must be a whole number from ${min.toLocaleString('en-US')} to ${max.toLocaleString('en-US')}` };
  }
  return { ok: true, value };
}

/** "1, 2 4" → [1, 2, 4]: commas or spaces between values, duplicates dropped, ascending. */
export function wholeNumberList(text: string, limits: { min: number; max: number }): Checked<number[]> {
  const parts = text.split(/[\s,]+/).filter((p) => p !== '');
  if (parts.length === 0) return { ok: false, error: 'Give at least one value, e.g. 1, 2, 4' };
  const values: number[] = [];
  for (const part of parts) {
    const checked = wholeNumber(part, limits);
    if (!checked.ok) return { ok: false, error: `'${part}': ${checked.error.toLowerCase()}` };
    values.push(checked.value);
  }
  return { ok: true, value: [...new Set(values)].sort((a, b) => a - b) };
}
