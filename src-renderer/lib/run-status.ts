import type { RunStatus } from '../../src-shared/records';

/** Statuses in which a run is owned by a live process: it may still train, and cannot be resumed now. */
const LIVE_STATUSES: ReadonlySet<RunStatus> = new Set(['queued', 'running', 'paused']);

export function isLiveStatus(status: RunStatus): boolean {
  return LIVE_STATUSES.has(status);
}
