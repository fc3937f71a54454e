/** Field checks for the suite form, given the bounds API_REQUESTS.runBenchmarkSuite validates with (BENCHMARK_SUITE_LIMITS). */

export type Checked<T> = { ok: true; value: T } | { ok: false; error: string };

type Limits = { min: number; max: number };

const outOfRange = ({ min, max }: Limits) => `Must be a whole number from ${min.toLocaleString('en-US')} to ${max.toLocaleString('en-US')}`;

/** A number field's value: null is an empty field (or one whose text is not a number). */
export function wholeNumber(value: number | null, limits: Limits): Checked<number> {
  if (value === null) return { ok: false, error: `Required: ${outOfRange(limits).toLowerCase()}` };
  if (!Number.isInteger(value) || value < limits.min || value > limits.max) return { ok: false, error: outOfRange(limits) };
  return { ok: true, value };
}

/** "1, 2 4" → [1, 2, 4]: commas or spaces between values, duplicates dropped, ascending. */
export function wholeNumberList(text: string, limits: Limits): Checked<number[]> {
  const parts = text.split(/[\s,]+/).filter((p) => p !== '');
  if (parts.length === 0) return { ok: false, error: 'Give at least one value, e.g. 1, 2, 4' };
  const values: number[] = [];
  for (const part of parts) {
    if (!/^\d+$/.test(part) || Number(part) < limits.min || Number(part) > limits.max) return { ok: false, error: `'${part}': ${outOfRange(limits).toLowerCase()}` };
    values.push(Number(part));
  }
  return { ok: true, value: [...new Set(values)].sort((a, b) => a - b) };
}
