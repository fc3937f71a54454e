import type { Migration } from './migration';

/**
 * Who owns a live run: besides its pid, the owner's process start mark, so a pid the system has
 * since given to another process never keeps a dead run 'running' (issue 9).
 */
export const runOwnerMigration: Migration = {
  version: 20,
  name: 'run-owner',
  up(db) {
    db.exec('ALTER TABLE runs ADD COLUMN owner_start TEXT');
  },
};
