import type { Migration } from './migration';

/**
 * A run's pending pause, resume or cancel, asked by a process that does not train it (the app, a
 * browser tab, `quadra runs pause`): the process that does reads it from here and applies it
 * (issue 13). NULL when nothing is asked.
 */
export const runControlMigration: Migration = {
  version: 40,
  name: 'run-control',
  up(db) {
    db.exec(`
      ALTER TABLE runs ADD COLUMN control_request TEXT CHECK (control_request IN ('pause', 'resume', 'cancel'));
      ALTER TABLE runs ADD COLUMN control_requested_at TEXT;
    `);
  },
};
