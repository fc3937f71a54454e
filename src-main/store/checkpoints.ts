import { createHash } from 'node:crypto';
import type { Statement, Transaction } from 'better-sqlite3';
import { QuadraError } from '../../src-shared/errors';
import type { CheckpointRecord } from '../../src-shared/records';
import { assertWholeNumber, notFound, type StoreContext } from './context';

export interface NewCheckpoint {
  runId: number;
  epoch: number;
  step: number;
  validationLoss: number | null;
  trainLoss: number | null;
  /** The safetensors file's bytes. */
  data: Uint8Array;
}

interface CheckpointRow {
  id: number;
  run_id: number;
  epoch: number;
  step: number;
  validation_loss: number | null;
  train_loss: number | null;
  sha256: string;
  size_bytes: number;
  created_at: string;
}

type LossRow = Pick<CheckpointRow, 'id' | 'validation_loss' | 'train_loss'>;

// Never `data`: listing checkpoints must not read their blobs.
const COLUMNS = 'id, run_id, epoch, step, validation_loss, train_loss, sha256, size_bytes, created_at';

const sha256Hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * The best checkpoint of a run: lowest validation loss; when none has one, lowest train loss;
 * the earliest on a tie. Null when no checkpoint has a loss.
 */
function bestId(rows: readonly LossRow[]): number | null {
  const byValidation = rows.some((row) => row.validation_loss !== null);
  let best: { id: number; loss: number } | null = null;
  for (const row of rows) {
    const loss = byValidation ? row.validation_loss : row.train_loss;
    if (loss !== null && (best === null || loss < best.loss)) best = { id: row.id, loss };
  }
  return best?.id ?? null;
}

function toRecord(row: CheckpointRow, best: number | null): CheckpointRecord {
  return {
    id: row.id,
    runId: row.run_id,
    epoch: row.epoch,
    step: row.step,
    validationLoss: row.validation_loss,
    trainLoss: row.train_loss,
    sha256: row.sha256,
    sizeBytes: row.size_bytes,
    createdAt: row.created_at,
    isBest: row.id === best,
  };
}

export class CheckpointRepository {
  readonly #ctx: StoreContext;
  readonly #insert: Statement<Record<string, unknown>, CheckpointRow>;
  readonly #byId: Statement<[number], CheckpointRow>;
  readonly #byRun: Statement<[number], CheckpointRow>;
  readonly #lossesByRun: Statement<[number], LossRow>;
  readonly #data: Statement<[number], { data: Buffer; sha256: string }>;
  readonly #delete: Statement<[number]>;
  readonly #pruneTx: Transaction<(runId: number, keepLast: number) => number[]>;

  constructor(ctx: StoreContext) {
    this.#ctx = ctx;
    const db = ctx.db;
    this.#insert = db.prepare(
      `INSERT INTO checkpoints (run_id, epoch, step, validation_loss, train_loss, sha256, size_bytes, created_at, data)
       VALUES (:runId, :epoch, :step, :validationLoss, :trainLoss, :sha256, :sizeBytes, :createdAt, :data)
       RETURNING ${COLUMNS}`,
    );
    this.#byId = db.prepare(`SELECT ${COLUMNS} FROM checkpoints WHERE id = ?`);
    this.#byRun = db.prepare(`SELECT ${COLUMNS} FROM checkpoints WHERE run_id = ? ORDER BY id`);
    this.#lossesByRun = db.prepare('SELECT id, validation_loss, train_loss FROM checkpoints WHERE run_id = ? ORDER BY id');
    this.#data = db.prepare('SELECT data, sha256 FROM checkpoints WHERE id = ?');
    this.#delete = db.prepare('DELETE FROM checkpoints WHERE id = ?');

    this.#pruneTx = db.transaction((runId: number, keepLast: number) => {
      const rows = this.#lossesByRun.all(runId);
      const keep = new Set(rows.slice(-Math.max(keepLast, 1)).map((row) => row.id));
      const best = bestId(rows);
      if (best !== null) keep.add(best);
      const deleted = rows.filter((row) => !keep.has(row.id)).map((row) => row.id);
      for (const id of deleted) this.#delete.run(id);
      return deleted;
    });
  }

  /** Stores a checkpoint's bytes with their sha256 and size (one INSERT, so all or nothing). */
  add(checkpoint: NewCheckpoint): CheckpointRecord {
    assertWholeNumber(checkpoint.epoch, 'checkpoint epoch');
    assertWholeNumber(checkpoint.step, 'checkpoint step');
    const data = checkpoint.data;
    const params = {
      runId: checkpoint.runId,
      epoch: checkpoint.epoch,
      step: checkpoint.step,
      validationLoss: checkpoint.validationLoss,
      trainLoss: checkpoint.trainLoss,
      sha256: sha256Hex(data),
      sizeBytes: data.byteLength,
      createdAt: this.#ctx.now(),
      data: Buffer.from(data.buffer, data.byteOffset, data.byteLength),
    };
    const row = this.#ctx.write(`add a checkpoint to run ${checkpoint.runId}`, () => this.#insert.get(params)!);
    return this.#withBest(row);
  }

  /** The checkpoint's description; NOT_FOUND when there is none. */
  get(id: number): CheckpointRecord {
    const row = this.#ctx.read(`read checkpoint ${id}`, () => this.#byId.get(id));
    if (row === undefined) throw notFound('checkpoint', id);
    return this.#withBest(row);
  }

  /** The checkpoint's safetensors bytes, checked against the sha256 stored with them. */
  getData(id: number): Uint8Array {
    const row = this.#ctx.read(`read checkpoint ${id}`, () => this.#data.get(id));
    if (row === undefined) throw notFound('checkpoint', id);
    const actual = sha256Hex(row.data);
    if (actual !== row.sha256) {
      throw new QuadraError(
        'INVALID_FILE',
        `checkpoint ${id}: stored data does not match its sha256 (expected ${row.sha256}, got ${actual}) — the database file is damaged; use another checkpoint`,
        { id, expected: row.sha256, actual, file: this.#ctx.file },
      );
    }
    return row.data;
  }

  /** The run's checkpoints, oldest first, with the best one marked. */
  listByRun(runId: number): CheckpointRecord[] {
    const rows = this.#ctx.read(`list the checkpoints of run ${runId}`, () => this.#byRun.all(runId));
    const best = bestId(rows);
    return rows.map((row) => toRecord(row, best));
  }

  /** The checkpoint with the lowest validation loss (train loss when none has one), or null. */
  best(runId: number): CheckpointRecord | null {
    return this.listByRun(runId).find((checkpoint) => checkpoint.isBest) ?? null;
  }

  /** The checkpoint written last, or null. */
  latest(runId: number): CheckpointRecord | null {
    return this.listByRun(runId).at(-1) ?? null;
  }

  /**
   * Deletes the run's checkpoints except the best and the newest `keepLast` (the newest is
   * always kept, even with keepLast 0), in one transaction. Returns the deleted ids.
   */
  prune(runId: number, keepLast: number): number[] {
    assertWholeNumber(keepLast, 'keepLast');
    return this.#ctx.write(`prune the checkpoints of run ${runId}`, () => this.#pruneTx.immediate(runId, keepLast));
  }

  remove(id: number): void {
    const { changes } = this.#ctx.write(`remove checkpoint ${id}`, () => this.#delete.run(id));
    if (changes === 0) throw notFound('checkpoint', id);
  }

  #withBest(row: CheckpointRow): CheckpointRecord {
    const losses = this.#ctx.read(`list the checkpoints of run ${row.run_id}`, () => this.#lossesByRun.all(row.run_id));
    return toRecord(row, bestId(losses));
  }
}
