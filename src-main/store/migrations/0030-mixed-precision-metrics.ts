import type { Migration } from './migration';

/** A mixed-precision run's loss scale and the steps it skipped for overflow, per metric point (NULL otherwise). */
export const mixedPrecisionMetricsMigration: Migration = {
  version: 30,
  name: 'mixed-precision-metrics',
  up(db) {
    db.exec(`
      ALTER TABLE metrics ADD COLUMN loss_scale REAL;
      ALTER TABLE metrics ADD COLUMN skipped_steps INTEGER;
    `);
  },
};
