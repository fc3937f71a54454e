import type { RunControlAction, RunProgress } from '../../../src-shared/api';
import type { CheckpointRecord, MetricPoint, RunRecord, RunStatus } from '../../../src-shared/records';
import type { ApiClient } from '../../lib/api';
import { errorMessage } from '../../lib/errors';
import { isLiveStatus } from '../../lib/run-status';
import type { ChartPoint } from './curves';

export type { RunProgress };
export type ControlAction = RunControlAction;

/** Points asked of the server; it averages longer runs down to this many. */
export const MAX_POINTS = 2000;
/** Charts are fed at most 4 times a second, however fast progress arrives. */
const PUBLISH_MS = 250;
/** A live run whose events stop (it trains in another process, say `quadra train`) is polled this often. */
const POLL_MS = 2000;
/**
 * The server announces a run's change at each epoch's end and when it finishes, not when it goes
 * from queued to running or is paused: while live, its record is re-read this often anyway.
 */
const RECORD_REFRESH_MS = 5000;

/** Adds y at step x, or replaces the last point when it is at the same step (a later, fuller reading). */
function upsert(series: ChartPoint[], x: number, y: number | null): void {
  if (y === null || !Number.isFinite(y)) return;
  const last = series.at(-1);
  if (last && last.x === x) series[series.length - 1] = { x, y };
  else if (!last || x > last.x) series.push({ x, y });
}

/**
 * One run's detail: its record and checkpoints, its curves (from getMetrics, then extended from
 * onDidProgress) and its workers, with pause/resume/cancel. Incoming points go to working arrays
 * and are published at most every 250 ms, so a fast run never redraws faster than that.
 */
export class RunDetailState {
  readonly runId: number;
  readonly #api: ApiClient;

  #run = $state.raw<RunRecord | null>(null);
  #checkpoints = $state.raw<CheckpointRecord[]>([]);
  #trainLoss = $state.raw<ChartPoint[]>([]);
  #validationLoss = $state.raw<ChartPoint[]>([]);
  #throughput = $state.raw<ChartPoint[]>([]);
  #progress = $state.raw<RunProgress | null>(null);
  #step = $state(0);
  /** Mixed precision: the latest loss scale and skipped-step count, from progress or the stored metrics. */
  #scaler = $state.raw<{ scale: number; skippedSteps: number } | null>(null);
  #loading = $state(false);
  #error = $state<string | null>(null);
  #controlError = $state<string | null>(null);
  #controlPending = $state<ControlAction | null>(null);

  // Working copies, mutated as points arrive; what the charts see is published from them.
  #train: ChartPoint[] = [];
  #validation: ChartPoint[] = [];
  #rate: ChartPoint[] = [];
  #lastStep = 0;
  #latest: RunProgress | null = null;
  /** Events that arrive while metrics are (re)loading: applied once the load lands. */
  #held: RunProgress[] | null = null;
  #publishTimer: ReturnType<typeof setTimeout> | null = null;
  #lastPublish = 0;
  #lastEventAt = 0;
  #lastCatchUp = 0;
  #polling = false;
  #disposed = false;

  readonly live = $derived(this.#run !== null && isLiveStatus(this.#run.status));
  /** The latest progress says so while it trains; otherwise the stored status. */
  readonly paused = $derived(this.live && (this.#progress ? this.#progress.paused : this.#run?.status === 'paused'));
  /** The status to show: a live run's latest progress knows it is paused before its record does. */
  readonly status = $derived<RunStatus | null>(this.paused ? 'paused' : (this.#run?.status ?? null));

  // What the run's facts show: the live progress while it trains, else the newest curve point,
  // else the stored summary (a run trained elsewhere, or one that has stopped).
  /** The latest progress while the run is live; none once it stopped (its workers are gone). */
  readonly liveProgress = $derived(this.live ? this.#progress : null);
  readonly plannedEpochs = $derived.by(() => {
    const config = this.#run?.config as { epochs?: unknown } | null | undefined;
    return typeof config?.epochs === 'number' ? config.epochs : null;
  });
  /** "epoch 3/10 · step 12/40" while it trains (epochs count from 1 in progress), else "10/10 epochs". */
  readonly epochText = $derived.by(() => {
    const progress = this.liveProgress;
    const planned = this.plannedEpochs ? `/${this.plannedEpochs}` : '';
    if (progress) return `epoch ${progress.epoch}${planned} · step ${progress.stepInEpoch}/${progress.stepsPerEpoch}`;
    const epochs = this.#run?.summary.epochs ?? 0;
    return epochs > 0 ? `${epochs}${planned} epochs` : '';
  });
  readonly bestValidationLoss = $derived(
    this.#run?.summary.bestValidationLoss ?? this.#validationLoss.reduce<number | null>((best, p) => (best === null || p.y < best ? p.y : best), null),
  );
  readonly lastTrainLoss = $derived(this.liveProgress?.trainLoss ?? this.#trainLoss.at(-1)?.y ?? this.#run?.summary.lastTrainLoss ?? null);
  readonly samplesPerSec = $derived(this.liveProgress?.samplesPerSec ?? this.#throughput.at(-1)?.y ?? this.#run?.summary.samplesPerSec ?? null);
  /** While it trains the summary has no duration yet: counted from the start, anew with each progress event. */
  readonly durationS = $derived.by(() => {
    const run = this.#run;
    if (!run) return null;
    if (run.summary.durationS !== null || !this.live || !run.startedAt) return run.summary.durationS;
    void this.#progress;
    return Math.max(0, (Date.now() - Date.parse(run.startedAt)) / 1000);
  });
  /** An imported checkpoint's run has no mode or workers of its own: where it came from instead. */
  readonly importedFrom = $derived.by(() => {
    const config = this.#run?.config as { importedFrom?: unknown; origin?: unknown } | null | undefined;
    if (!config || typeof config.importedFrom !== 'string') return null;
    return `${config.importedFrom}${typeof config.origin === 'string' ? ` (${config.origin})` : ''}`;
  });

  constructor(api: ApiClient, runId: number) {
    this.#api = api;
    this.runId = runId;
  }

  get run(): RunRecord | null {
    return this.#run;
  }
  get checkpoints(): CheckpointRecord[] {
    return this.#checkpoints;
  }
  get trainLoss(): ChartPoint[] {
    return this.#trainLoss;
  }
  get validationLoss(): ChartPoint[] {
    return this.#validationLoss;
  }
  get throughput(): ChartPoint[] {
    return this.#throughput;
  }
  /** A mixed-precision run's dynamic loss scale and the steps skipped for overflow; null otherwise. */
  get scaler(): { scale: number; skippedSteps: number } | null {
    return this.#scaler;
  }

  /** The latest progress event of this run (workers, epoch), or null when none arrived. */
  get progress(): RunProgress | null {
    return this.#progress;
  }
  /** The latest step known: from progress while live, else from the metrics and the summary. */
  get step(): number {
    return this.#step;
  }
  get loading(): boolean {
    return this.#loading;
  }
  get error(): string | null {
    return this.#error;
  }
  get controlError(): string | null {
    return this.#controlError;
  }
  get controlPending(): ControlAction | null {
    return this.#controlPending;
  }

  /** Subscribes to the run's events, loads it and polls while needed; returns the disposer. */
  start(): () => void {
    const offProgress = this.#api.on('onDidProgress', (progress) => {
      if (progress.runId === this.runId) this.#onProgress(progress);
    });
    const offChange = this.#api.on('onDidChangeRun', (run) => {
      if (run.id === this.runId) this.#onChange(run);
    });
    const poll = setInterval(() => void this.#poll(), POLL_MS);
    void this.load();
    return () => {
      this.#disposed = true;
      offProgress();
      offChange();
      clearInterval(poll);
      if (this.#publishTimer) clearTimeout(this.#publishTimer);
    };
  }

  /** (Re)loads the run, its checkpoints and its curves; `quiet` keeps what is shown meanwhile. */
  async load(quiet = false): Promise<void> {
    if (!quiet) {
      this.#loading = true;
      this.#error = null;
    }
    this.#held ??= [];
    try {
      const [detail, points] = await Promise.all([
        this.#api.call('getRun', { runId: this.runId }),
        this.#api.call('getMetrics', { runId: this.runId, maxPoints: MAX_POINTS }),
      ]);
      if (this.#disposed) return;
      this.#run = detail.run;
      this.#checkpoints = detail.checkpoints;
      this.#train = [];
      this.#validation = [];
      this.#rate = [];
      this.#lastStep = 0;
      points.forEach((point) => this.#add(point));
      this.#step = Math.max(this.#lastStep, detail.run.summary.steps);
      this.#error = null;
    } catch (error) {
      if (!quiet) this.#error = errorMessage(error);
    } finally {
      const held = this.#held ?? [];
      this.#held = null;
      held.forEach((progress) => this.#add(progress));
      this.#loading = false;
      this.#publish();
    }
  }

  async control(action: ControlAction): Promise<void> {
    this.#controlPending = action;
    this.#controlError = null;
    try {
      const run = await this.#api.call('controlRun', { runId: this.runId, action });
      if (!this.#disposed) this.#run = run;
    } catch (error) {
      this.#controlError = `Could not ${action} the run: ${errorMessage(error)}`;
    } finally {
      this.#controlPending = null;
    }
  }

  dismissControlError(): void {
    this.#controlError = null;
  }

  #onProgress(progress: RunProgress): void {
    this.#lastEventAt = performance.now();
    this.#latest = progress;
    if (this.#held) this.#held.push(progress);
    else this.#add(progress);
    this.#schedulePublish();
  }

  #onChange(run: RunRecord): void {
    const previous = this.#run;
    this.#run = run;
    // Resumed from a checkpoint: the curve continues from there, so read it again.
    if (previous && !isLiveStatus(previous.status) && isLiveStatus(run.status)) {
      void this.load(true);
      return;
    }
    // An epoch ended or the run finished: new checkpoints, and the final validation point.
    void this.#catchUp();
  }

  /** Reads what is new since the last point: checkpoints, status and metrics. */
  async #catchUp(): Promise<void> {
    this.#lastCatchUp = performance.now();
    try {
      const [detail, points] = await Promise.all([
        this.#api.call('getRun', { runId: this.runId }),
        this.#api.call('getMetrics', { runId: this.runId, fromStep: this.#lastStep, maxPoints: MAX_POINTS }),
      ]);
      if (this.#disposed) return;
      this.#run = detail.run;
      this.#checkpoints = detail.checkpoints;
      points.forEach((point) => this.#add(point));
      this.#schedulePublish();
    } catch {
      // The next event or poll tries again; the last good state stays on screen.
    }
  }

  async #poll(): Promise<void> {
    if (this.#disposed || this.#polling || this.#held || !this.live) return;
    const now = performance.now();
    const eventsFlowing = now - this.#lastEventAt < POLL_MS;
    // Queued but training already (its first progress came): the record says so once re-read.
    const stale = this.#run?.status === 'queued' || now - this.#lastCatchUp >= RECORD_REFRESH_MS;
    if (eventsFlowing && !stale) return;
    this.#polling = true;
    try {
      await this.#catchUp();
    } finally {
      this.#polling = false;
    }
  }

  /** A stored point or a progress event (which is one): both extend the curves the same way. */
  #add(point: MetricPoint): void {
    const { step } = point;
    // Step 0 is before any training, and an older step is a late duplicate.
    if (step <= 0 || step < this.#lastStep) return;
    upsert(this.#train, step, point.trainLoss);
    upsert(this.#validation, step, point.validationLoss);
    upsert(this.#rate, step, point.samplesPerSec);
    if (point.lossScale !== undefined && point.skippedSteps !== undefined) this.#scaler = { scale: point.lossScale, skippedSteps: point.skippedSteps };
    this.#lastStep = step;
    // A long live run would grow without bound: let the server average it down again.
    if (this.#train.length > 2 * MAX_POINTS && !this.#held) void this.load(true);
  }

  #schedulePublish(): void {
    if (this.#publishTimer || this.#disposed) return;
    const wait = Math.max(0, PUBLISH_MS - (performance.now() - this.#lastPublish));
    this.#publishTimer = setTimeout(() => this.#publish(), wait);
  }

  #publish(): void {
    if (this.#publishTimer) clearTimeout(this.#publishTimer);
    this.#publishTimer = null;
    this.#lastPublish = performance.now();
    this.#trainLoss = this.#train.slice();
    this.#validationLoss = this.#validation.slice();
    this.#throughput = this.#rate.slice();
    this.#progress = this.#latest;
    this.#step = Math.max(this.#step, this.#lastStep, this.#latest?.step ?? 0);
  }
}
