import type { Statement, Transaction } from 'better-sqlite3';
import type { RunControlAction } from '../../src-shared/api';
import type { BackendId } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import {
  isFinishedStatus,
  isLiveStatus,
  LIVE_RUN_STATUSES,
  RUN_MODES,
  RUN_STATUSES,
  type RunMode,
  type RunRecord,
  type RunStatus,
  type RunSummary,
} from '../../src-shared/records';
import { assertOneOf, assertWholeNumber, notFound, toJsonText, type StoreContext } from './context';
import { isOwnerAlive, type RunOwner } from '../hardware/process-identity';

export type NewRun = Pick<RunRecord, 'name' | 'config' | 'mode' | 'backend' | 'devices' | 'workers' | 'datasetId' | 'ownerPid'> & {
  status?: 'queued';
  /** The owner's process start mark (src-main/store/owner.ts), so a reused pid is not taken for it. */
  ownerStart?: string | null;
};

/** Tells whether a run's recorded owner still runs. */
export type OwnerCheck = (pid: number, start: string | null) => boolean;
const ownerAlive: OwnerCheck = (pid, start) => isOwnerAlive({ pid, start });

export interface ListRunsOptions {
  /** At most this many runs (newest first); all when omitted. */
  limit?: number;
  status?: RunStatus;
}

/** A pause, resume or cancel asked of a live run by a process that does not train it. */
export interface RunControlRequest {
  action: RunControlAction;
  requestedAt: string;
}

export interface SetStatusOptions {
  /** Why the run failed (or was interrupted); cleared when omitted. */
  failureReason?: string | null;
  /** A new owner, e.g. the process that resumes an interrupted run. */
  ownerPid?: number | null;
}

interface RunRow {
  id: number;
  name: string;
  config: string;
  mode: RunMode;
  backend: BackendId;
  devices: string;
  workers: number;
  dataset_id: number | null;
  status: RunStatus;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  owner_pid: number | null;
  owner_start: string | null;
  best_validation_loss: number | null;
  best_train_loss: number | null;
  last_train_loss: number | null;
  last_validation_loss: number | null;
  samples_per_sec: number | null;
  duration_s: number | null;
  steps: number;
  epochs: number;
  failure_reason: string | null;
  control_request: RunControlAction | null;
}

type SummaryParams = { [K in keyof RunSummary]: RunSummary[K] } & { id: number };

const COLUMNS = `id, name, config, mode, backend, devices, workers, dataset_id, status, created_at, started_at, ended_at,
  owner_pid, owner_start, best_validation_loss, best_train_loss, last_train_loss, last_validation_loss, samples_per_sec, duration_s,
  steps, epochs, failure_reason, control_request`;

function toRecord(row: RunRow): RunRecord {
  return {
    id: row.id,
    name: row.name,
    config: JSON.parse(row.config) as unknown,
    mode: row.mode,
    backend: row.backend,
    devices: JSON.parse(row.devices) as string[],
    workers: row.workers,
    datasetId: row.dataset_id,
    status: row.status,
    createdAt: row.created_at,
    startedAt: row.started_at,
    endedAt: row.ended_at,
    ownerPid: row.owner_pid,
    controlRequest: row.control_request,
    summary: {
      bestValidationLoss: row.best_validation_loss,
      bestTrainLoss: row.best_train_loss,
      lastTrainLoss: row.last_train_loss,
      lastValidationLoss: row.last_validation_loss,
      samplesPerSec: row.samples_per_sec,
      durationS: row.duration_s,
      steps: row.steps,
      epochs: row.epochs,
      failureReason: row.failure_reason,
    },
  };
}


/** The live statuses for SQL's `status IN (SELECT value FROM json_each(:live))`: bound as a parameter, never spliced in. */
const LIVE = JSON.stringify(LIVE_RUN_STATUSES);
const DONE: Record<RunControlAction, string> = { pause: 'paused', resume: 'resumed', cancel: 'cancelled' };

export class RunRepository {
  readonly #ctx: StoreContext;
  readonly #insert: Statement<Record<string, unknown>, RunRow>;
  readonly #byId: Statement<[number], RunRow>;
  readonly #list: Statement<{ status: RunStatus | null; limit: number }, RunRow>;
  readonly #setStatus: Statement<{ id: number; status: RunStatus; now: string; finished: number; failureReason: string | null }>;
  readonly #setOwner: Statement<{ id: number; ownerPid: number | null }>;
  readonly #setSummary: Statement<SummaryParams>;
  readonly #ownedActive: Statement<{ live: string }, { id: number; owner_pid: number; owner_start: string | null }>;
  readonly #claim: Statement<{ id: number; ownerPid: number; ownerStart: string | null }>;
  readonly #refreshSummary: Statement<{ id: number }>;
  readonly #interrupt: Statement<{ id: number; now: string; failureReason: string; live: string }>;
  readonly #delete: Statement<[number]>;
  readonly #requestControl: Statement<{ id: number; action: RunControlAction; now: string }>;
  readonly #clearControl: Statement<[number]>;
  readonly #pendingControl: Statement<[number], { action: RunControlAction | null; requestedAt: string | null }>;
  readonly #setStatusTx: (id: number, status: RunStatus, options: SetStatusOptions) => RunRecord;
  readonly #updateSummaryTx: (id: number, summary: Partial<RunSummary>) => RunRecord;
  readonly #markInterruptedTx: Transaction<(isAlive: OwnerCheck) => number[]>;
  readonly #claimTx: Transaction<(id: number, owner: RunOwner, isAlive: OwnerCheck) => RunRecord>;
  readonly #takeControlTx: Transaction<(id: number) => RunControlAction | null>;
  readonly #requestControlTx: Transaction<(id: number, action: RunControlAction, isAlive: OwnerCheck) => RunRecord | { goneOwner: number }>;

  constructor(ctx: StoreContext) {
    this.#ctx = ctx;
    const db = ctx.db;
    this.#insert = db.prepare(
      `INSERT INTO runs (name, config, mode, backend, devices, workers, dataset_id, status, created_at, owner_pid, owner_start)
       VALUES (:name, :config, :mode, :backend, :devices, :workers, :datasetId, 'queued', :createdAt, :ownerPid, :ownerStart)
       RETURNING ${COLUMNS}`,
    );
    this.#byId = db.prepare(`SELECT ${COLUMNS} FROM runs WHERE id = ?`);
    this.#list = db.prepare(
      `SELECT ${COLUMNS} FROM runs WHERE :status IS NULL OR status = :status
       ORDER BY created_at DESC, id DESC LIMIT :limit`,
    );
    this.#setStatus = db.prepare(
      `UPDATE runs SET
         status = :status,
         started_at = CASE WHEN :status = 'running' THEN coalesce(started_at, :now) ELSE started_at END,
         ended_at = CASE WHEN :finished THEN :now ELSE NULL END,
         failure_reason = :failureReason,
         control_request = CASE WHEN :finished THEN NULL ELSE control_request END,
         control_requested_at = CASE WHEN :finished THEN NULL ELSE control_requested_at END
       WHERE id = :id`,
    );
    this.#setOwner = db.prepare('UPDATE runs SET owner_pid = :ownerPid WHERE id = :id');
    this.#claim = db.prepare(
      `UPDATE runs SET status = 'queued', owner_pid = :ownerPid, owner_start = :ownerStart, ended_at = NULL, failure_reason = NULL,
         control_request = NULL, control_requested_at = NULL
       WHERE id = :id`,
    );
    // What the stored metrics and checkpoints say, for a run whose process never wrote its summary
    // (killed) or wrote only the last segment's (resumed): the largest step and epoch reached, the
    // best losses, the last losses and the mean throughput. Values with nothing behind them are kept.
    this.#refreshSummary = db.prepare(
      `UPDATE runs SET
         steps = coalesce((SELECT max(s) FROM (SELECT max(step) AS s FROM metrics WHERE run_id = :id
                           UNION ALL SELECT max(step) FROM checkpoints WHERE run_id = :id)), steps),
         epochs = coalesce((SELECT max(e) FROM (SELECT max(epoch) AS e FROM metrics WHERE run_id = :id
                            UNION ALL SELECT max(epoch) FROM checkpoints WHERE run_id = :id)), epochs),
         best_validation_loss = coalesce((SELECT min(v) FROM (SELECT min(validation_loss) AS v FROM metrics WHERE run_id = :id
                                          UNION ALL SELECT min(validation_loss) FROM checkpoints WHERE run_id = :id)), best_validation_loss),
         best_train_loss = coalesce((SELECT min(v) FROM (SELECT min(train_loss) AS v FROM metrics WHERE run_id = :id
                                     UNION ALL SELECT min(train_loss) FROM checkpoints WHERE run_id = :id)), best_train_loss),
         last_train_loss = coalesce((SELECT train_loss FROM metrics WHERE run_id = :id AND train_loss IS NOT NULL ORDER BY step DESC LIMIT 1), last_train_loss),
         last_validation_loss = coalesce((SELECT validation_loss FROM metrics WHERE run_id = :id AND validation_loss IS NOT NULL ORDER BY step DESC LIMIT 1), last_validation_loss),
         samples_per_sec = coalesce((SELECT avg(samples_per_sec) FROM metrics WHERE run_id = :id), samples_per_sec)
       WHERE id = :id`,
    );
    this.#setSummary = db.prepare(
      `UPDATE runs SET best_validation_loss = :bestValidationLoss, best_train_loss = :bestTrainLoss,
         last_train_loss = :lastTrainLoss, last_validation_loss = :lastValidationLoss, samples_per_sec = :samplesPerSec,
         duration_s = :durationS, steps = :steps, epochs = :epochs, failure_reason = :failureReason
       WHERE id = :id`,
    );
    this.#ownedActive = db.prepare(
      'SELECT id, owner_pid, owner_start FROM runs WHERE status IN (SELECT value FROM json_each(:live)) AND owner_pid IS NOT NULL ORDER BY id',
    );
    this.#interrupt = db.prepare(
      `UPDATE runs SET status = 'interrupted', ended_at = :now, failure_reason = :failureReason, control_request = NULL, control_requested_at = NULL
       WHERE id = :id AND status IN (SELECT value FROM json_each(:live))`,
    );
    this.#delete = db.prepare('DELETE FROM runs WHERE id = ?');
    // A pending cancel stays: a later pause or resume must not undo it before the owner reads it.
    this.#requestControl = db.prepare(
      `UPDATE runs SET control_request = CASE WHEN control_request = 'cancel' THEN 'cancel' ELSE :action END, control_requested_at = :now
       WHERE id = :id`,
    );
    this.#clearControl = db.prepare('UPDATE runs SET control_request = NULL, control_requested_at = NULL WHERE id = ?');
    this.#pendingControl = db.prepare('SELECT control_request AS action, control_requested_at AS requestedAt FROM runs WHERE id = ?');

    this.#setStatusTx = db.transaction((id: number, status: RunStatus, options: SetStatusOptions) => {
      const { changes } = this.#setStatus.run({
        id,
        status,
        now: ctx.now(),
        finished: isFinishedStatus(status) ? 1 : 0,
        failureReason: options.failureReason ?? null,
      });
      if (changes === 0) throw notFound('run', id);
      if (options.ownerPid !== undefined) this.#setOwner.run({ id, ownerPid: options.ownerPid });
      return this.get(id);
    });
    this.#updateSummaryTx = db.transaction((id: number, summary: Partial<RunSummary>) => {
      const current = this.get(id);
      const next: RunSummary = { ...current.summary };
      for (const key of Object.keys(next) as (keyof RunSummary)[]) {
        if (summary[key] !== undefined) (next as Record<keyof RunSummary, unknown>)[key] = summary[key];
      }
      this.#setSummary.run({ ...next, id });
      return { ...current, summary: next };
    });
    this.#markInterruptedTx = db.transaction((isAlive: OwnerCheck) => {
      const now = ctx.now();
      const changed: number[] = [];
      for (const { id, owner_pid: pid, owner_start: start } of this.#ownedActive.all({ live: LIVE })) {
        if (isAlive(pid, start)) continue;
        const failureReason = `the process running it stopped unexpectedly (pid ${pid})`;
        if (this.#interrupt.run({ id, now, failureReason, live: LIVE }).changes > 0) {
          this.#refreshSummary.run({ id });
          changed.push(id);
        }
      }
      return changed;
    });
    this.#claimTx = db.transaction((id: number, owner: RunOwner, isAlive: OwnerCheck) => {
      const row = this.#byId.get(id);
      if (row === undefined) throw notFound('run', id);
      const live = isLiveStatus(row.status);
      const same = row.owner_pid === owner.pid && row.owner_start === owner.start;
      if (live && row.owner_pid !== null && !same && isAlive(row.owner_pid, row.owner_start)) {
        throw new QuadraError(
          'CONFLICT',
          `run ${id} is ${row.status} in another process (pid ${row.owner_pid}); stop it there first (Ctrl-C, or Cancel in the app that trains it), then resume`,
          { runId: id, ownerPid: row.owner_pid },
        );
      }
      this.#claim.run({ id, ownerPid: owner.pid, ownerStart: owner.start });
      return this.get(id);
    });
    this.#takeControlTx = db.transaction((id: number) => {
      const action = this.#pendingControl.get(id)?.action ?? null;
      if (action !== null) this.#clearControl.run(id);
      return action;
    });
    this.#requestControlTx = db.transaction((id: number, action: RunControlAction, isAlive: OwnerCheck) => {
      const row = this.#byId.get(id);
      if (row === undefined) throw notFound('run', id);
      if (!isLiveStatus(row.status)) {
        throw new QuadraError('CONFLICT', `run ${id} is ${row.status}: only a queued, running or paused run can be ${DONE[action]}`, { runId: id, status: row.status });
      }
      if (row.owner_pid === null) {
        throw new QuadraError('CONFLICT', `run ${id} is ${row.status} but records no process that trains it, so nothing can take a request to ${action} it`, { runId: id });
      }
      if (!isAlive(row.owner_pid, row.owner_start)) {
        // The truth, stored before refusing: its process is gone, so the run is interrupted.
        this.#interrupt.run({ id, now: ctx.now(), failureReason: `the process running it stopped unexpectedly (pid ${row.owner_pid})`, live: LIVE });
        this.#refreshSummary.run({ id });
        return { goneOwner: row.owner_pid };
      }
      this.#requestControl.run({ id, action, now: ctx.now() });
      return this.get(id);
    });
  }

  /** Records a new run in status 'queued'. */
  create(run: NewRun): RunRecord {
    assertOneOf(run.mode, RUN_MODES, 'run mode');
    assertWholeNumber(run.workers, 'run workers', 1);
    if (run.status !== undefined && run.status !== 'queued') {
      throw new QuadraError('INVALID_ARGUMENT', `a new run starts 'queued' (got '${String(run.status)}')`);
    }
    const config = toJsonText(run.config, 'run config', true);
    const devices = toJsonText(run.devices, 'run devices');
    return this.#ctx.write(`create run '${run.name}'`, () => {
      const row = this.#insert.get({
        name: run.name,
        config,
        mode: run.mode,
        backend: run.backend,
        devices,
        workers: run.workers,
        datasetId: run.datasetId,
        createdAt: this.#ctx.now(),
        ownerPid: run.ownerPid,
        ownerStart: run.ownerStart ?? null,
      });
      return toRecord(row!);
    });
  }

  /** The run; NOT_FOUND naming the id when there is none. */
  get(id: number): RunRecord {
    const row = this.#ctx.read(`read run ${id}`, () => this.#byId.get(id));
    if (row === undefined) throw notFound('run', id);
    return toRecord(row);
  }

  /** Runs, newest first. */
  list(options: ListRunsOptions = {}): RunRecord[] {
    if (options.limit !== undefined) assertWholeNumber(options.limit, 'limit');
    if (options.status !== undefined) assertOneOf(options.status, RUN_STATUSES, 'run status');
    const params = { status: options.status ?? null, limit: options.limit ?? -1 };
    return this.#ctx.read('list runs', () => this.#list.all(params)).map(toRecord);
  }

  /**
   * Moves the run to `status`. The first 'running' stamps startedAt; a finished status stamps
   * endedAt (and a later unfinished one, e.g. resuming, clears it).
   */
  setStatus(id: number, status: RunStatus, options: SetStatusOptions = {}): RunRecord {
    assertOneOf(status, RUN_STATUSES, 'run status');
    return this.#ctx.write(`set the status of run ${id}`, () => this.#setStatusTx(id, status, options));
  }

  /** Overwrites the summary fields given; the others keep their values. */
  updateSummary(id: number, summary: Partial<RunSummary>): RunRecord {
    if (summary.steps !== undefined) assertWholeNumber(summary.steps, 'steps');
    if (summary.epochs !== undefined) assertWholeNumber(summary.epochs, 'epochs');
    return this.#ctx.write(`update the summary of run ${id}`, () => this.#updateSummaryTx(id, summary));
  }

  /**
   * Runs left 'queued', 'running' or 'paused' by a process that no longer exists become 'interrupted'
   * (a process can die while its workers are still starting, before the run ever reads 'running').
   * Runs without an ownerPid are left alone: nothing tells whether they are still going.
   * Returns the ids it changed.
   */
  markInterruptedRuns(isAlive: OwnerCheck = ownerAlive): number[] {
    // IMMEDIATE: take the write lock before reading, so no other writer changes a status in between.
    return this.#ctx.write('mark interrupted runs', () => this.#markInterruptedTx.immediate(isAlive));
  }

  /**
   * Takes the run for `owner` (queued, no end time, no failure), atomically: refused with CONFLICT
   * naming the holder while another live process owns it, so two resumes never train one run.
   */
  claim(id: number, owner: RunOwner, isAlive: OwnerCheck = ownerAlive): RunRecord {
    // IMMEDIATE: the owner read and the claim are one step no other writer can come between.
    return this.#ctx.write(`claim run ${id}`, () => this.#claimTx.immediate(id, owner, isAlive));
  }

  /**
   * Asks the process that trains a live run to pause, resume or cancel it: the request is stored
   * on the run's row, where its owner reads it (training-service checks twice a second). Refused
   * for a run that is not queued, running or paused, or whose owner is gone (it is then marked
   * 'interrupted'). A pending cancel is never replaced by a later pause or resume.
   */
  requestControl(id: number, action: RunControlAction, isAlive: OwnerCheck = ownerAlive): RunRecord {
    // IMMEDIATE: the liveness check and the request are one step no other writer can come between.
    const result = this.#ctx.write(`ask run ${id} to ${action}`, () => this.#requestControlTx.immediate(id, action, isAlive));
    if ('goneOwner' in result) {
      throw new QuadraError(
        'CONFLICT',
        `run ${id} cannot be ${DONE[action]}: the process that trained it (pid ${result.goneOwner}) has stopped, so it is now 'interrupted'; resume it to continue (quadra resume ${id}, or Resume in the app)`,
        { runId: id, ownerPid: result.goneOwner },
      );
    }
    return result;
  }

  /** The run's pending request, clearing it (its owner calls this, then applies it); null when none. */
  takeControlRequest(id: number): RunControlAction | null {
    // IMMEDIATE: a request written by another process between the read and the clear is never lost.
    return this.#ctx.write(`take the control request of run ${id}`, () => this.#takeControlTx.immediate(id));
  }

  /** The run's pending request, left in place; null when none (or no such run). */
  pendingControl(id: number): RunControlRequest | null {
    const row = this.#ctx.read(`read the control request of run ${id}`, () => this.#pendingControl.get(id));
    return row?.action && row.requestedAt ? { action: row.action, requestedAt: row.requestedAt } : null;
  }

  /** Rewrites the summary from the run's stored metrics and checkpoints (see #refreshSummary). */
  refreshSummary(id: number): RunRecord {
    const { changes } = this.#ctx.write(`refresh the summary of run ${id}`, () => this.#refreshSummary.run({ id }));
    if (changes === 0) throw notFound('run', id);
    return this.get(id);
  }

  /** Deletes the run with its metrics and checkpoints. */
  remove(id: number): void {
    const { changes } = this.#ctx.write(`remove run ${id}`, () => this.#delete.run(id));
    if (changes === 0) throw notFound('run', id);
  }
}
