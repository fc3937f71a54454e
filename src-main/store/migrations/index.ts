/** The migration registry: every schema version, oldest first. Add new files at the end. */
import { QuadraError } from '../../../src-shared/errors';
import { initialMigration } from './0010-initial';
import { runOwnerMigration } from './0020-run-owner';
import { mixedPrecisionMetricsMigration } from './0030-mixed-precision-metrics';
import { runControlMigration } from './0040-run-control';
import type { Migration } from './migration';

export type { Migration } from './migration';

/** Throws unless versions are positive whole numbers that strictly increase. */
export function assertMigrationOrder(migrations: readonly Migration[]): readonly Migration[] {
  let previous = 0;
  for (const migration of migrations) {
    if (!Number.isSafeInteger(migration.version) || migration.version <= previous) {
      throw new QuadraError(
        'INTERNAL',
        `migration '${migration.name}' has version ${migration.version}, which does not come after ${previous}: migration versions must be whole numbers that strictly increase`,
        { version: migration.version, previous },
      );
    }
    previous = migration.version;
  }
  return migrations;
}

export const MIGRATIONS: readonly Migration[] = assertMigrationOrder([
  initialMigration,
  runOwnerMigration,
  mixedPrecisionMetricsMigration,
  runControlMigration,
]);

/** The schema version this app writes. */
export const LATEST_SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]!.version;
