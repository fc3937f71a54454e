import type { RunRecord } from '../../../src-shared/records';
import type { ApiClient } from '../../lib/api';
import { errorMessage } from '../../lib/errors';
import { curveOf, RUN_COLORS, type ChartPoint } from './curves';
import { MAX_POINTS } from './run-detail-state.svelte';
import { differingSettings } from './run-settings';

export interface ComparedRun {
  run: RunRecord;
  /** How the run is named in legends: its name, with its id when two runs share a name. */
  label: string;
  color: string;
  trainLoss: ChartPoint[];
  validationLoss: ChartPoint[];
}

/** Refreshes at most this often while compared runs change (each epoch of a live run). */
const RELOAD_MS = 1000;

/** 2–5 runs side by side: their curves, one colour each, and the settings in which they differ. */
export class RunCompareState {
  readonly runIds: readonly number[];
  readonly #api: ApiClient;
  #runs = $state.raw<ComparedRun[]>([]);
  #loading = $state(false);
  #error = $state<string | null>(null);
  #reloadTimer: ReturnType<typeof setTimeout> | null = null;
  #disposed = false;

  readonly differences = $derived(differingSettings(this.#runs.map((r) => r.run)));

  constructor(api: ApiClient, runIds: readonly number[]) {
    this.#api = api;
    this.runIds = runIds;
  }

  get runs(): ComparedRun[] {
    return this.#runs;
  }
  get loading(): boolean {
    return this.#loading;
  }
  get error(): string | null {
    return this.#error;
  }

  start(): () => void {
    const off = this.#api.on('onDidChangeRun', (run) => {
      if (!this.runIds.includes(run.id) || this.#reloadTimer) return;
      this.#reloadTimer = setTimeout(() => {
        this.#reloadTimer = null;
        void this.load(true);
      }, RELOAD_MS);
    });
    void this.load();
    return () => {
      this.#disposed = true;
      off();
      if (this.#reloadTimer) clearTimeout(this.#reloadTimer);
    };
  }

  async load(quiet = false): Promise<void> {
    if (!quiet) {
      this.#loading = true;
      this.#error = null;
    }
    try {
      const loaded = await Promise.all(
        this.runIds.map(async (runId) => {
          const [detail, points] = await Promise.all([this.#api.call('getRun', { runId }), this.#api.call('getMetrics', { runId, maxPoints: MAX_POINTS })]);
          return { run: detail.run, points };
        }),
      );
      if (this.#disposed) return;
      const names = loaded.map(({ run }) => run.name);
      this.#runs = loaded.map(({ run, points }, index) => ({
        run,
        label: names.indexOf(run.name) !== names.lastIndexOf(run.name) ? `${run.name} (#${run.id})` : run.name,
        color: RUN_COLORS[index % RUN_COLORS.length]!,
        trainLoss: curveOf(points, (p) => p.trainLoss),
        validationLoss: curveOf(points, (p) => p.validationLoss),
      }));
      this.#error = null;
    } catch (error) {
      if (!quiet) this.#error = errorMessage(error);
    } finally {
      this.#loading = false;
    }
  }
}
