import Database, { type Statement } from 'better-sqlite3';
import { QuadraError } from '../../src-shared/errors';
import { DATASET_KINDS, type DatasetKind, type DatasetRecord } from '../../src-shared/records';
import { assertOneOf, assertWholeNumber, notFound, type StoreContext } from './context';

export type NewDataset = Omit<DatasetRecord, 'id' | 'createdAt'>;

interface DatasetRow {
  id: number;
  name: string;
  kind: DatasetKind;
  source_path: string | null;
  rows: number;
  width: number;
  sha256: string;
  created_at: string;
}

const COLUMNS = 'id, name, kind, source_path, rows, width, sha256, created_at';

function toRecord(row: DatasetRow): DatasetRecord {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    sourcePath: row.source_path,
    rows: row.rows,
    width: row.width,
    sha256: row.sha256,
    createdAt: row.created_at,
  };
}

export class DatasetRepository {
  readonly #ctx: StoreContext;
  readonly #insert: Statement<{ name: string; kind: string; sourcePath: string | null; rows: number; width: number; sha256: string; createdAt: string }, DatasetRow>;
  readonly #byId: Statement<[number], DatasetRow>;
  readonly #byName: Statement<[string], DatasetRow>;
  readonly #all: Statement<[], DatasetRow>;
  readonly #delete: Statement<[number]>;

  constructor(ctx: StoreContext) {
    this.#ctx = ctx;
    const db = ctx.db;
    this.#insert = db.prepare(
      `INSERT INTO datasets (name, kind, source_path, rows, width, sha256, created_at)
       VALUES (:name, :kind, :sourcePath, :rows, :width, :sha256, :createdAt) RETURNING ${COLUMNS}`,
    );
    this.#byId = db.prepare(`SELECT ${COLUMNS} FROM datasets WHERE id = ?`);
    this.#byName = db.prepare(`SELECT ${COLUMNS} FROM datasets WHERE name = ?`);
    this.#all = db.prepare(`SELECT ${COLUMNS} FROM datasets ORDER BY name`);
    this.#delete = db.prepare('DELETE FROM datasets WHERE id = ?');
  }

  /** Registers a dataset; names are unique (INVALID_ARGUMENT when taken). */
  add(dataset: NewDataset): DatasetRecord {
    assertOneOf(dataset.kind, DATASET_KINDS, 'dataset kind');
    assertWholeNumber(dataset.rows, 'dataset rows');
    assertWholeNumber(dataset.width, 'dataset width');
    return this.#ctx.write(`add dataset '${dataset.name}'`, () => {
      try {
        const row = this.#insert.get({
          name: dataset.name,
          kind: dataset.kind,
          sourcePath: dataset.sourcePath,
          rows: dataset.rows,
          width: dataset.width,
          sha256: dataset.sha256,
          createdAt: this.#ctx.now(),
        });
        return toRecord(row!);
      } catch (error) {
        if (error instanceof Database.SqliteError && error.code === 'SQLITE_CONSTRAINT_UNIQUE') {
          throw new QuadraError('INVALID_ARGUMENT', `a dataset named '${dataset.name}' already exists`, { name: dataset.name });
        }
        throw error;
      }
    });
  }

  /** The dataset; NOT_FOUND when there is none with that id. */
  get(id: number): DatasetRecord {
    const row = this.#ctx.read(`read dataset ${id}`, () => this.#byId.get(id));
    if (row === undefined) throw notFound('dataset', id);
    return toRecord(row);
  }

  /** The dataset with that name, or null. */
  getByName(name: string): DatasetRecord | null {
    const row = this.#ctx.read(`read dataset '${name}'`, () => this.#byName.get(name));
    return row === undefined ? null : toRecord(row);
  }

  /** All datasets by name. */
  list(): DatasetRecord[] {
    return this.#ctx.read('list datasets', () => this.#all.all()).map(toRecord);
  }

  /** Deletes the dataset; runs that used it keep their history with datasetId null. */
  remove(id: number): void {
    const { changes } = this.#ctx.write(`remove dataset ${id}`, () => this.#delete.run(id));
    if (changes === 0) throw notFound('dataset', id);
  }
}
