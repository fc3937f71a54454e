import type { ApiRequest, WorkstationEvents } from '../../../src-shared/api';
import { suiteConfigurations } from '../../../src-shared/benchmarks';
import type { BenchmarkResultRecord, BenchmarkSuiteRecord } from '../../../src-shared/records';
import type { ApiClient } from '../../lib/api';
import { errorMessage } from '../../lib/errors';
import { KeyedLoadable, Loadable } from '../../lib/state/loadable.svelte';
import type { BenchmarkFile } from './benchmark-files';
import { compareConfigurations, machineOf, spreadOf, type Metric, type ResultRow, type ResultSource } from './results';

export type SuiteProgress = WorkstationEvents['onDidProgressBenchmark'];

/**
 * The Benchmarks view's state: the suites in the store, the selected suite's results, results
 * imported from other machines (kept here only, never stored), the running suite's progress, the
 * metric shown and the baseline every speedup is measured against.
 */
export class BenchmarksState {
  readonly suites: Loadable<BenchmarkSuiteRecord[]>;
  /** The selected suite (its id is the key) and its results. */
  readonly results: KeyedLoadable<number, BenchmarkResultRecord[]>;
  imported = $state.raw<ResultSource[]>([]);
  metric = $state<Metric>('train');
  #baselineKey = $state<string | null>(null);

  /** The suite being run (ours or another client's), from onDidProgressBenchmark. */
  progress = $state.raw<SuiteProgress | null>(null);
  starting = $state(false);
  runError = $state<string | null>(null);
  /** Said once a suite finishes, e.g. that some configurations produced no result. */
  finishedNote = $state<string | null>(null);

  #api: ApiClient;
  #importCount = 0;
  /** Progress that arrived before runBenchmarkSuite answered with the suite's id. */
  #latest = new Map<number, SuiteProgress>();

  constructor(api: ApiClient) {
    this.#api = api;
    this.suites = new Loadable(() => api.call('listBenchmarkSuites', {}));
    this.results = new KeyedLoadable((suiteId) => api.call('getBenchmarkResults', { suiteId }));
  }

  get selectedSuiteId(): number | null {
    return this.results.key;
  }

  get selectedSuite(): BenchmarkSuiteRecord | null {
    return this.suites.value?.find((s) => s.id === this.selectedSuiteId) ?? null;
  }

  readonly localSource = $derived.by((): ResultSource | null => {
    const suite = this.selectedSuite;
    const results = this.results.value;
    if (!suite || !results || results.length === 0) return null;
    const fingerprint = results[0]!.fingerprint;
    return { id: `local:${suite.id}`, kind: 'local', label: `${suite.name} (this machine)`, shortLabel: 'This machine', suiteName: suite.name, machine: machineOf(fingerprint), fingerprint, results };
  });

  readonly sources = $derived<ResultSource[]>(this.localSource ? [this.localSource, ...this.imported] : this.imported);

  readonly rows = $derived<ResultRow[]>(
    this.sources.flatMap((source) =>
      [...source.results].sort(compareConfigurations).map((result) => ({ key: `${source.id}/${result.id}`, source, result })),
    ),
  );

  /** The chosen baseline while it is still shown, else the first row. */
  readonly baseline = $derived<ResultRow | null>(this.rows.find((r) => r.key === this.#baselineKey) ?? this.rows[0] ?? null);

  set baselineKey(key: string) {
    this.#baselineKey = key;
  }

  speedup(row: ResultRow): number | null {
    if (!this.baseline) return null;
    const base = spreadOf(this.baseline.result, this.metric).median;
    return base > 0 ? spreadOf(row.result, this.metric).median / base : null;
  }

  /** Loads the suites and shows the newest one, or keeps the current selection. */
  async refresh(select?: number): Promise<void> {
    await this.suites.refresh();
    const suites = this.suites.value ?? [];
    const wanted = select ?? this.selectedSuiteId;
    const next = suites.find((s) => s.id === wanted)?.id ?? suites[0]?.id ?? null;
    await this.selectSuite(next);
  }

  /** Shows a suite's results; `quiet` reloads them without the loading state (a running suite). */
  selectSuite(suiteId: number | null, quiet = false): Promise<void> {
    return this.results.select(suiteId, quiet);
  }

  async run(request: ApiRequest<'runBenchmarkSuite'>): Promise<void> {
    this.runError = null;
    this.finishedNote = null;
    this.starting = true;
    try {
      const { suiteId } = await this.#api.call('runBenchmarkSuite', request);
      const total = suiteConfigurations(request).length;
      const early = this.#latest.get(suiteId);
      if (early?.label !== 'done') this.progress = early ?? { suiteId, done: 0, total, label: 'starting' };
      // The new suite is shown at once; its results fill in as each configuration finishes.
      await this.refresh(suiteId);
    } catch (error) {
      this.runError = errorMessage(error);
    } finally {
      this.starting = false;
    }
  }

  /** Subscribes to suite progress; returns the unsubscribe function (for an $effect). */
  listen(): () => void {
    return this.#api.on('onDidProgressBenchmark', (progress) => {
      this.#latest.set(progress.suiteId, progress);
      if (progress.label !== 'done') {
        this.progress = progress;
        if (progress.suiteId === this.selectedSuiteId && progress.done > 0) void this.selectSuite(progress.suiteId, true);
        return;
      }
      this.progress = null;
      void this.refresh(progress.suiteId).then(() => {
        const produced = this.selectedSuiteId === progress.suiteId ? (this.results.value?.length ?? 0) : progress.total;
        const failed = progress.total - produced;
        this.finishedNote = failed > 0 ? `${failed} of ${progress.total} configurations failed to run and have no result (see the server's log).` : null;
      });
    });
  }

  addImported(fileName: string, file: BenchmarkFile): void {
    const fingerprint = file.results[0]?.fingerprint ?? {};
    const source: ResultSource = {
      id: `imported:${++this.#importCount}`,
      kind: 'imported',
      label: fileName,
      shortLabel: fileName,
      suiteName: file.suiteName,
      machine: machineOf(fingerprint),
      fingerprint,
      results: file.results,
    };
    this.imported = [...this.imported, source];
  }

  removeImported(id: string): void {
    this.imported = this.imported.filter((s) => s.id !== id);
  }
}
