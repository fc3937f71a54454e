import type { Migration } from './migration';

/**
 * The first schema. STRICT tables so a wrong type is an error, not a silent conversion; JSON
 * columns checked with json_valid. Checkpoint bytes sit in the last column so reading a
 * checkpoint's description never loads its blob's overflow pages.
 */
export const initialMigration: Migration = {
  version: 10,
  name: 'initial',
  up(db) {
    db.exec(`
      CREATE TABLE datasets (
        id          INTEGER PRIMARY KEY,
        name        TEXT    NOT NULL UNIQUE,
        kind        TEXT    NOT NULL CHECK (kind IN ('synthetic', 'npy', 'csv', 'text')),
        source_path TEXT,
        rows        INTEGER NOT NULL CHECK (rows >= 0),
        width       INTEGER NOT NULL CHECK (width >= 0),
        sha256      TEXT    NOT NULL,
        created_at  TEXT    NOT NULL
      ) STRICT;

      CREATE TABLE runs (
        id                   INTEGER PRIMARY KEY,
        name                 TEXT    NOT NULL,
        config               TEXT    NOT NULL CHECK (json_valid(config)),
        mode                 TEXT    NOT NULL CHECK (mode IN ('single', 'multi-cpu', 'multi-gpu')),
        backend              TEXT    NOT NULL,
        devices              TEXT    NOT NULL CHECK (json_valid(devices)),
        workers              INTEGER NOT NULL CHECK (workers >= 1),
        -- A deleted dataset leaves its runs (and their history) in place.
        dataset_id           INTEGER REFERENCES datasets (id) ON DELETE SET NULL,
        status               TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'paused', 'completed', 'cancelled', 'failed', 'diverged', 'interrupted')),
        created_at           TEXT    NOT NULL,
        started_at           TEXT,
        ended_at             TEXT,
        owner_pid            INTEGER,
        best_validation_loss REAL,
        best_train_loss      REAL,
        last_train_loss      REAL,
        last_validation_loss REAL,
        samples_per_sec      REAL,
        duration_s           REAL,
        steps                INTEGER NOT NULL DEFAULT 0,
        epochs               INTEGER NOT NULL DEFAULT 0,
        failure_reason       TEXT
      ) STRICT;
      CREATE INDEX runs_by_created_at ON runs (created_at);
      CREATE INDEX runs_by_dataset ON runs (dataset_id);

      -- One row per (run, step), clustered by that key: the chart's range query reads one
      -- contiguous stretch of the table, with no separate index to look up.
      CREATE TABLE metrics (
        run_id          INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step            INTEGER NOT NULL CHECK (step >= 0),
        epoch           INTEGER NOT NULL,
        time            INTEGER NOT NULL,
        train_loss      REAL,
        validation_loss REAL,
        samples_per_sec REAL,
        gpu_memory_mib  REAL,
        cpu_percent     REAL,
        rss_bytes       INTEGER,
        PRIMARY KEY (run_id, step)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE checkpoints (
        id              INTEGER PRIMARY KEY,
        run_id          INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        epoch           INTEGER NOT NULL,
        step            INTEGER NOT NULL,
        validation_loss REAL,
        train_loss      REAL,
        sha256          TEXT    NOT NULL,
        size_bytes      INTEGER NOT NULL,
        created_at      TEXT    NOT NULL,
        data            BLOB    NOT NULL
      ) STRICT;
      CREATE INDEX checkpoints_by_run ON checkpoints (run_id);

      CREATE TABLE benchmark_suites (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL,
        created_at TEXT NOT NULL,
        config     TEXT NOT NULL CHECK (json_valid(config))
      ) STRICT;

      CREATE TABLE benchmark_results (
        id                  INTEGER PRIMARY KEY,
        suite_id            INTEGER NOT NULL REFERENCES benchmark_suites (id) ON DELETE CASCADE,
        backend             TEXT    NOT NULL,
        workers             INTEGER NOT NULL,
        batch_size          INTEGER NOT NULL,
        spike_gradient      TEXT    NOT NULL,
        train_sps_median    REAL    NOT NULL,
        train_sps_min       REAL    NOT NULL,
        train_sps_max       REAL    NOT NULL,
        forward_sps_median  REAL    NOT NULL,
        forward_sps_min     REAL    NOT NULL,
        forward_sps_max     REAL    NOT NULL,
        fingerprint         TEXT    NOT NULL CHECK (json_valid(fingerprint)),
        created_at          TEXT    NOT NULL
      ) STRICT;
      CREATE INDEX benchmark_results_by_suite ON benchmark_results (suite_id);

      CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL CHECK (json_valid(value))
      ) STRICT;
    `);
  },
};
