import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { initialMigration } from '../../src-main/store/migrations/0010-initial';
import { runOwnerMigration } from '../../src-main/store/migrations/0020-run-owner';
import { mixedPrecisionMetricsMigration } from '../../src-main/store/migrations/0030-mixed-precision-metrics';
import { runControlMigration } from '../../src-main/store/migrations/0040-run-control';
import { assertMigrationOrder, LATEST_SCHEMA_VERSION, MIGRATIONS, type Migration } from '../../src-main/store/migrations/index';
import { expectQuadraError, testStore } from './helpers';

const columns = (db: Database.Database, table: string) =>
  (db.pragma(`table_info(${table})`) as { name: string; type: string; notnull: number; pk: number }[]).map((c) => c.name);

const indexColumns = (db: Database.Database, index: string) =>
  (db.pragma(`index_info(${index})`) as { name: string }[]).map((c) => c.name);

const foreignKeys = (db: Database.Database, table: string) =>
  (db.pragma(`foreign_key_list(${table})`) as { table: string; from: string; to: string; on_delete: string }[]).map(
    ({ table: parent, from, to, on_delete }) => ({ parent, from, to, onDelete: on_delete }),
  );

describe('migration registry', () => {
  const fake = (version: number, name = `v${version}`): Migration => ({ version, name, up: () => {} });

  it('lists the initial migration first and ends at the latest version', () => {
    expect(MIGRATIONS[0]).toBe(initialMigration);
    expect(LATEST_SCHEMA_VERSION).toBe(MIGRATIONS.at(-1)!.version);
    expect(() => assertMigrationOrder(MIGRATIONS)).not.toThrow();
  });

  it('accepts strictly increasing versions', () => {
    expect(assertMigrationOrder([fake(10), fake(20), fake(21)])).toHaveLength(3);
  });

  it('rejects a repeated, decreasing, zero or fractional version, naming the migration', () => {
    expectQuadraError(() => assertMigrationOrder([fake(10), fake(10, 'again')]), 'INTERNAL', "migration 'again' has version 10");
    expectQuadraError(() => assertMigrationOrder([fake(20), fake(10, 'older')]), 'INTERNAL', "migration 'older' has version 10, which does not come after 20");
    expectQuadraError(() => assertMigrationOrder([fake(0)]), 'INTERNAL');
    expectQuadraError(() => assertMigrationOrder([fake(10.5)]), 'INTERNAL');
  });
});

describe('0010-initial on :memory:', () => {
  const db = new Database(':memory:');
  initialMigration.up(db);

  it('creates every table, STRICT', () => {
    const tables = db.prepare("SELECT name, strict FROM pragma_table_list WHERE schema = 'main' AND name NOT LIKE 'sqlite_%' ORDER BY name").all();
    expect(tables).toEqual(
      ['benchmark_results', 'benchmark_suites', 'checkpoints', 'datasets', 'metrics', 'runs', 'settings'].map((name) => ({ name, strict: 1 })),
    );
  });

  it('has the columns the repositories read', () => {
    expect(columns(db, 'datasets')).toEqual(['id', 'name', 'kind', 'source_path', 'rows', 'width', 'sha256', 'created_at']);
    expect(columns(db, 'runs')).toEqual([
      'id', 'name', 'config', 'mode', 'backend', 'devices', 'workers', 'dataset_id', 'status', 'created_at', 'started_at',
      'ended_at', 'owner_pid', 'best_validation_loss', 'best_train_loss', 'last_train_loss', 'last_validation_loss',
      'samples_per_sec', 'duration_s', 'steps', 'epochs', 'failure_reason',
    ]);
    expect(columns(db, 'metrics')).toEqual([
      'run_id', 'step', 'epoch', 'time', 'train_loss', 'validation_loss', 'samples_per_sec', 'gpu_memory_mib', 'cpu_percent', 'rss_bytes',
    ]);
    // The blob last, so reading the other columns never touches its overflow pages.
    expect(columns(db, 'checkpoints')).toEqual([
      'id', 'run_id', 'epoch', 'step', 'validation_loss', 'train_loss', 'sha256', 'size_bytes', 'created_at', 'data',
    ]);
    expect(columns(db, 'benchmark_suites')).toEqual(['id', 'name', 'created_at', 'config']);
    expect(columns(db, 'benchmark_results')).toEqual([
      'id', 'suite_id', 'backend', 'workers', 'batch_size', 'spike_gradient', 'train_sps_median', 'train_sps_min', 'train_sps_max',
      'forward_sps_median', 'forward_sps_min', 'forward_sps_max', 'fingerprint', 'created_at',
    ]);
    expect(columns(db, 'settings')).toEqual(['key', 'value']);
    const dataType = (db.pragma('table_info(checkpoints)') as { name: string; type: string }[]).find((c) => c.name === 'data')!.type;
    expect(dataType).toBe('BLOB');
  });

  it('indexes runs by created_at and checkpoints by run; metrics are clustered by (run_id, step)', () => {
    expect(indexColumns(db, 'runs_by_created_at')).toEqual(['created_at']);
    expect(indexColumns(db, 'checkpoints_by_run')).toEqual(['run_id']);
    expect(indexColumns(db, 'benchmark_results_by_suite')).toEqual(['suite_id']);
    const metricsIndexes = db.pragma('index_list(metrics)') as { name: string; origin: string }[];
    expect(metricsIndexes).toEqual([expect.objectContaining({ origin: 'pk' })]);
    expect(indexColumns(db, metricsIndexes[0]!.name)).toEqual(['run_id', 'step']);
    const plan = db
      .prepare('EXPLAIN QUERY PLAN SELECT * FROM metrics WHERE run_id = ? AND step BETWEEN ? AND ? ORDER BY step')
      .all(1, 0, 10)
      .map((row) => (row as { detail: string }).detail);
    expect(plan).toEqual(['SEARCH metrics USING PRIMARY KEY (run_id=? AND step>? AND step<?)']);
    const listPlan = db
      .prepare('EXPLAIN QUERY PLAN SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT 10')
      .all()
      .map((row) => (row as { detail: string }).detail);
    expect(listPlan.join('\n')).toContain('runs_by_created_at');
    expect(listPlan.join('\n')).not.toContain('TEMP B-TREE');
  });

  it('cascades from runs and suites, and sets a deleted dataset to null', () => {
    expect(foreignKeys(db, 'metrics')).toEqual([{ parent: 'runs', from: 'run_id', to: 'id', onDelete: 'CASCADE' }]);
    expect(foreignKeys(db, 'checkpoints')).toEqual([{ parent: 'runs', from: 'run_id', to: 'id', onDelete: 'CASCADE' }]);
    expect(foreignKeys(db, 'benchmark_results')).toEqual([{ parent: 'benchmark_suites', from: 'suite_id', to: 'id', onDelete: 'CASCADE' }]);
    expect(foreignKeys(db, 'runs')).toEqual([{ parent: 'datasets', from: 'dataset_id', to: 'id', onDelete: 'SET NULL' }]);
  });

  it('is applied by openStore in one transaction that sets user_version', () => {
    const store = testStore();
    expect(store.db.pragma('user_version', { simple: true })).toBe(LATEST_SCHEMA_VERSION);
    expect(columns(store.db, 'runs')).toEqual([...columns(db, 'runs'), 'owner_start', 'control_request', 'control_requested_at']);
    expect(store.db.inTransaction).toBe(false);
  });
});

describe('0020-run-owner on :memory:', () => {
  it("adds the owner's process start mark to runs, keeping every row", () => {
    const db = new Database(':memory:');
    initialMigration.up(db);
    db.prepare(
      `INSERT INTO runs (name, config, mode, backend, devices, workers, status, created_at, owner_pid)
       VALUES ('old', '{}', 'single', 'cpu', '[]', 1, 'running', '2025-01-01', 77)`,
    ).run();
    runOwnerMigration.up(db);
    expect(runOwnerMigration.version).toBe(20);
    expect(columns(db, 'runs').at(-1)).toBe('owner_start');
    expect(db.prepare('SELECT name, owner_pid, owner_start FROM runs').all()).toEqual([{ name: 'old', owner_pid: 77, owner_start: null }]);
  });
});

describe('0030-mixed-precision-metrics on :memory:', () => {
  it('adds the loss scale and skipped steps to metrics, NULL for the points already there', () => {
    const db = new Database(':memory:');
    initialMigration.up(db);
    runOwnerMigration.up(db);
    db.prepare(`INSERT INTO runs (name, config, mode, backend, devices, workers, status, created_at) VALUES ('r', '{}', 'single', 'cpu', '[]', 1, 'completed', '2025-01-01')`).run();
    db.prepare('INSERT INTO metrics (run_id, step, epoch, time, train_loss) VALUES (1, 1, 1, 0, 0.5)').run();
    mixedPrecisionMetricsMigration.up(db);
    expect(mixedPrecisionMetricsMigration.version).toBe(30);
    expect(columns(db, 'metrics').slice(-2)).toEqual(['loss_scale', 'skipped_steps']);
    expect(db.prepare('SELECT train_loss, loss_scale, skipped_steps FROM metrics').all()).toEqual([{ train_loss: 0.5, loss_scale: null, skipped_steps: null }]);
  });
});

describe('0040-run-control on :memory:', () => {
  it("adds a run's pending control request and when it was asked, NULL for the runs already there; only pause, resume or cancel", () => {
    const db = new Database(':memory:');
    for (const migration of [initialMigration, runOwnerMigration, mixedPrecisionMetricsMigration]) migration.up(db);
    db.prepare(`INSERT INTO runs (name, config, mode, backend, devices, workers, status, created_at, owner_pid) VALUES ('old', '{}', 'single', 'cpu', '[]', 1, 'running', '2025-01-01', 77)`).run();
    runControlMigration.up(db);
    expect(runControlMigration.version).toBe(40);
    expect(MIGRATIONS.at(-1)).toBe(runControlMigration);
    expect(columns(db, 'runs').slice(-2)).toEqual(['control_request', 'control_requested_at']);
    expect(db.prepare('SELECT name, control_request, control_requested_at FROM runs').all()).toEqual([{ name: 'old', control_request: null, control_requested_at: null }]);
    db.prepare("UPDATE runs SET control_request = 'pause', control_requested_at = '2025-01-02'").run();
    expect(() => db.prepare("UPDATE runs SET control_request = 'explode'").run()).toThrow(/CHECK constraint failed/);
    expect(db.prepare('SELECT control_request FROM runs').get()).toEqual({ control_request: 'pause' });
  });
});
