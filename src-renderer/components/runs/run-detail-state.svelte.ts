import type { RunControlAction } from '../../../src-shared/api';
import type { RunProgress } from '../../../src-shared/progress';
import { isLiveStatus, type CheckpointRecord, type MetricPoint, type RunRecord, type RunStatus } from '../../../src-shared/records';
import { ApiError, type ApiClient } from '../../lib/api';
import { errorMessage } from '../../lib/errors';
import type { ChartPoint } from './curves';

/** Steps to read: from `fromStep` to `toStep` (to the newest when absent), both included. */
interface StepRange {
  fromStep: number;
  toStep?: number;
}

/** Points asked of the server; it averages longer runs down to this many. */
export const MAX_POINTS = 2000;
/** Charts are fed at most 4 times a second, however fast progress arrives. */
const PUBLISH_MS = 250;
/**
 * A run trained by another process (`quadra train`, another workstation) sends this page no events:
 * while it is live, its record and new points are read this often. The workstation announces every
 * status change of a run it trains itself (queued → running, paused, resumed, finished) with
 * onDidChangeRun, and its progress 4 times a second, paused or not: such a run is never polled.
 */
export const POLL_MS = 2000;
/** No progress for this long: the run is not trained here (or the connection dropped), so polling takes over. */
const SILENCE_MS = 2000;

/**
 * Puts y at step x in step order, replacing a point at the same step (a later, fuller reading). Points
 * mostly arrive in order (then this appends); a catch-up brings older steps that live events skipped.
 */
function insert(series: ChartPoint[], x: number, y: number | null): void {
  if (y === null || !Number.isFinite(y)) return;
  let i = series.length;
  while (i > 0 && series[i - 1]!.x > x) i--;
  if (i > 0 && series[i - 1]!.x === x) series[i - 1] = { x, y };
  else series.splice(i, 0, { x, y });
}

/**
 * One run's detail: its record and checkpoints, its curves (from getMetrics, then extended from
 * onDidProgress) and its workers, with pause/resume/cancel. Incoming points go to working arrays
 * and are published at most every 250 ms, so a fast run never redraws faster than that. The store
 * keeps every step's loss while live events sample it 4 times a second, so when the run stops the
 * curve is read again: the final chart shows every stored step (averaged down to MAX_POINTS).
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
  #controlPending = $state<RunControlAction | null>(null);
  /** Whether this run's progress events arrive (it trains in the process this page talks to); null until known. */
  #reporting = $state<boolean | null>(null);

  // Working copies, mutated as points arrive; what the charts see is published from them.
  #train: ChartPoint[] = [];
  #validation: ChartPoint[] = [];
  #rate: ChartPoint[] = [];
  #lastStep = 0;
  #latest: RunProgress | null = null;
  /** Events that arrive while metrics are (re)loading: applied once the load lands. */
  #held: RunProgress[] | null = null;
  /** The last step a load read, until the first event after it has been checked for a gap. */
  #loadedThrough: number | null = null;
  /** Counts full loads: what a catch-up read before a newer load began is dropped. */
  #generation = 0;
  #publishTimer: ReturnType<typeof setTimeout> | null = null;
  #lastPublish = 0;
  #lastEventAt = Number.NEGATIVE_INFINITY;
  #polling = false;
  /** The catch-up under way, and the range asked for meanwhile (read once it is done). */
  #catchingUp: Promise<void> | null = null;
  #pendingRange: StepRange | null = null;
  #disposed = false;

  readonly live = $derived(this.#run !== null && isLiveStatus(this.#run.status));
  /** The latest progress says so while it trains; otherwise the stored status. */
  readonly paused = $derived(this.live && (this.#progress ? this.#progress.paused : this.#run?.status === 'paused'));
  /** The status to show: a live run's latest progress knows it is paused before its record does. */
  readonly status = $derived<RunStatus | null>(this.paused ? 'paused' : (this.#run?.status ?? null));
  /** A pause, resume or cancel stored for the run's owner that it has not taken yet (it looks twice a second). */
  readonly controlRequested = $derived(this.live ? (this.#run?.controlRequest ?? null) : null);

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
  /**
   * True while progress events arrive; false once a live run stayed silent (another process trains
   * it, and it is polled instead); null until either is known.
   */
  get reporting(): boolean | null {
    return this.#reporting;
  }
  get controlError(): string | null {
    return this.#controlError;
  }
  /** The action whose request is on its way (for a run trained elsewhere, up to about 3 s). */
  get controlPending(): RunControlAction | null {
    return this.#controlPending;
  }

  /** Subscribes to the run's events, loads it and polls while needed; returns the disposer. */
  start(): () => void {
    const offProgress = this.#api.on('onDidProgress', (progress) => {
      if (progress.runId === this.runId) this.#onProgress(progress);
    });
    const offChange = this.#api.on('onDidChangeRun', (run) => {
      if (run.id === this.runId) this.#setRun(run);
    });
    // Events sent while the connection was down are lost: read the run again once it is back.
    let dropped = false;
    const offConnection = this.#api.onConnection((state) => {
      if (state === 'open' && dropped) void this.load(true);
      dropped = state === 'closed' || (dropped && state !== 'open');
    });
    const poll = setInterval(() => void this.#poll(), POLL_MS);
    void this.load();
    return () => {
      this.#disposed = true;
      offProgress();
      offChange();
      offConnection();
      clearInterval(poll);
      if (this.#publishTimer) clearTimeout(this.#publishTimer);
    };
  }

  /** (Re)loads the run, its checkpoints and its curves; `quiet` keeps what is shown meanwhile. */
  async load(quiet = false): Promise<void> {
    const generation = ++this.#generation;
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
      if (this.#disposed || generation !== this.#generation) return;
      this.#run = detail.run;
      this.#checkpoints = detail.checkpoints;
      this.#train = [];
      this.#validation = [];
      this.#rate = [];
      this.#lastStep = 0;
      points.forEach((point) => this.#add(point));
      this.#loadedThrough = this.#lastStep;
      this.#step = Math.max(this.#lastStep, detail.run.summary.steps);
      this.#error = null;
    } catch (error) {
      if (!quiet && generation === this.#generation) this.#error = errorMessage(error);
    } finally {
      if (generation === this.#generation) {
        const held = this.#held ?? [];
        this.#held = null;
        held.forEach((progress, i) => this.#addProgress(progress, held[i - 1] ?? null));
        this.#loading = false;
        this.#publish();
      }
    }
  }

  /**
   * Asks for a pause, resume or cancel, one at a time. A run trained by another process takes it
   * through the database (up to about 3 s); a refusal (CONFLICT: it stopped, its process is gone)
   * is said in `controlError`, and the run is read again to show why.
   */
  async control(action: RunControlAction): Promise<void> {
    if (this.#controlPending) return;
    this.#controlPending = action;
    this.#controlError = null;
    try {
      const run = await this.#api.call('controlRun', { runId: this.runId, action });
      if (!this.#disposed) this.#setRun(run);
    } catch (error) {
      if (this.#disposed) return;
      this.#controlError = `Could not ${action} the run: ${errorMessage(error)}`;
      if (error instanceof ApiError && error.code === 'CONFLICT') void this.#requestCatchUp({ fromStep: this.#lastStep });
    } finally {
      this.#controlPending = null;
    }
  }

  dismissControlError(): void {
    this.#controlError = null;
  }

  #onProgress(progress: RunProgress): void {
    this.#lastEventAt = performance.now();
    this.#reporting = true;
    const previous = this.#latest;
    this.#latest = progress;
    if (this.#held) this.#held.push(progress);
    else this.#addProgress(progress, previous);
    this.#schedulePublish();
  }

  /** A live point, after `previous` (the event before it, if any): on the curve, and what it tells is missing is read. */
  #addProgress(progress: RunProgress, previous: RunProgress | null): void {
    this.#add(progress);
    // The first step after a load may be far past what it read (a run that had just started, a
    // long load): the steps between are read, so the curve has no hole (at its start, say).
    const loadedThrough = this.#loadedThrough;
    if (loadedThrough !== null && progress.step > 0) {
      this.#loadedThrough = null;
      if (progress.step > loadedThrough + 1) void this.#requestCatchUp({ fromStep: loadedThrough, toStep: progress.step });
    }
    // A new epoch's first step comes after the last epoch's validation point and checkpoint were
    // stored: read them, and that epoch's last step, whose validation loss live events may have missed.
    if (previous && progress.epoch > previous.epoch) {
      const epochEnd = progress.step - progress.stepInEpoch;
      void this.#requestCatchUp({ fromStep: epochEnd, toStep: epochEnd });
    }
  }

  /**
   * Takes a newer record of the run. A run that stopped is read again whole: its stored curve has
   * every step, where live events sampled it. One that started again (resumed from a checkpoint)
   * continues from there, so it is read again too.
   */
  #setRun(run: RunRecord): void {
    const before = this.#run;
    this.#run = run;
    if (!before || isLiveStatus(before.status) === isLiveStatus(run.status)) return;
    if (isLiveStatus(run.status)) this.#latest = null;
    void this.load(true);
  }

  /**
   * Reads `range` (with the record and the checkpoints) once the catch-up under way is done: one
   * request at a time, however fast epochs end, the ranges asked for meanwhile read together.
   */
  #requestCatchUp(range: StepRange): Promise<void> {
    const pending = this.#pendingRange;
    this.#pendingRange = pending
      ? { fromStep: Math.min(pending.fromStep, range.fromStep), ...(pending.toStep === undefined || range.toStep === undefined ? {} : { toStep: Math.max(pending.toStep, range.toStep) }) }
      : range;
    this.#catchingUp ??= (async () => {
      while (this.#pendingRange && !this.#disposed) {
        const next = this.#pendingRange;
        this.#pendingRange = null;
        await this.#catchUp(next);
      }
      this.#catchingUp = null;
    })();
    return this.#catchingUp;
  }

  /** Reads the record, the checkpoints and the points of `range` (up to the newest when it names no end). */
  async #catchUp(range: StepRange): Promise<void> {
    const generation = this.#generation;
    try {
      const [detail, points] = await Promise.all([
        this.#api.call('getRun', { runId: this.runId }),
        this.#api.call('getMetrics', { runId: this.runId, ...range, maxPoints: MAX_POINTS }),
      ]);
      if (this.#disposed || generation !== this.#generation || this.#held) return;
      this.#checkpoints = detail.checkpoints;
      this.#setRun(detail.run);
      // It stopped or started again: a full load is under way.
      if (generation !== this.#generation) return;
      points.forEach((point) => this.#add(point));
      this.#schedulePublish();
    } catch {
      // The next event or poll tries again; the last good state stays on screen.
    }
  }

  /** Only while live and no event of the run arrives: then another process trains it. */
  async #poll(): Promise<void> {
    if (this.#disposed || this.#polling || this.#held || !this.live) return;
    if (performance.now() - this.#lastEventAt < SILENCE_MS) return;
    this.#reporting = false;
    this.#polling = true;
    try {
      await this.#requestCatchUp({ fromStep: this.#lastStep });
    } finally {
      this.#polling = false;
    }
  }

  /** A stored point or a progress event (which is one): both go into the curves the same way, at their step. */
  #add(point: MetricPoint): void {
    const { step } = point;
    // Step 0 is before any training.
    if (step <= 0) return;
    insert(this.#train, step, point.trainLoss);
    insert(this.#validation, step, point.validationLoss);
    insert(this.#rate, step, point.samplesPerSec);
    // An older step (from a catch-up) fills the curve in; the facts follow the newest.
    if (step < this.#lastStep) return;
    if (point.lossScale !== undefined) this.#scaler = { scale: point.lossScale, skippedSteps: point.skippedSteps ?? 0 };
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
