import type { RunRecord } from '../../../src-shared/records';

/** A setting of a run under its dotted key (`engine.model.hiddenSize`), in the order the run stores them. */
export interface Setting {
  key: string;
  value: unknown;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Nested objects become dotted keys; arrays and other values are leaves. */
export function flattenConfig(value: unknown, prefix = ''): Setting[] {
  if (!isPlainObject(value)) return prefix ? [{ key: prefix, value }] : [];
  const entries = Object.entries(value);
  // An empty object is still a setting (say `{}` of defaults): keep it visible.
  if (entries.length === 0) return prefix ? [{ key: prefix, value }] : [];
  return entries.flatMap(([key, inner]) => flattenConfig(inner, prefix ? `${prefix}.${key}` : key));
}

/**
 * What one run was asked to do: the run's own fields a user chooses (name, mode, backend,
 * workers) and then its stored config, flattened. A config that is not an object sits under `config`.
 */
export function runSettings(run: RunRecord): Setting[] {
  const own: Setting[] = [
    { key: 'name', value: run.name },
    { key: 'mode', value: run.mode },
    { key: 'backend', value: run.backend },
    { key: 'workers', value: run.workers },
  ];
  const config = isPlainObject(run.config) ? flattenConfig(run.config) : [{ key: 'config', value: run.config }];
  return [...own, ...config];
}

/** Keys whose values are not all the same across the runs (missing in one run counts as different). */
export function differingSettings(runs: readonly RunRecord[]): Array<{ key: string; values: unknown[] }> {
  const perRun = runs.map((run) => new Map(runSettings(run).map((s) => [s.key, s.value])));
  const keys: string[] = [];
  const seen = new Set<string>();
  for (const settings of perRun) {
    for (const key of settings.keys()) {
      if (!seen.has(key)) {
        seen.add(key);
        keys.push(key);
      }
    }
  }
  return keys
    .map((key) => ({ key, values: perRun.map((settings) => (settings.has(key) ? settings.get(key) : MISSING)) }))
    .filter(({ values }) => new Set(values.map(identity)).size > 1)
    .map(({ key, values }) => ({ key, values: values.map((v) => (v === MISSING ? undefined : v)) }));
}

const MISSING = Symbol('missing');
const identity = (value: unknown): string => (value === MISSING ? '\u0000missing' : JSON.stringify(value) ?? String(value));

/** A value as a person reads it: strings bare, numbers as written, objects as compact JSON. */
export function formatSetting(value: unknown): string {
  if (value === undefined) return '—';
  if (value === null) return 'none';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

/** Settings grouped under their parent key (`engine.model` → hiddenSize, …), top-level ones under "run". */
export function groupSettings(settings: readonly Setting[]): Array<{ group: string; settings: Array<{ name: string; key: string; value: unknown }> }> {
  const groups = new Map<string, Array<{ name: string; key: string; value: unknown }>>();
  for (const setting of settings) {
    const cut = setting.key.lastIndexOf('.');
    const group = cut < 0 ? 'run' : setting.key.slice(0, cut);
    const list = groups.get(group) ?? [];
    list.push({ name: setting.key.slice(cut + 1), key: setting.key, value: setting.value });
    groups.set(group, list);
  }
  return [...groups].map(([group, list]) => ({ group, settings: list }));
}
