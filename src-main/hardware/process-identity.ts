import { readFileSync } from 'node:fs';

/**
 * A process's identity for run ownership: its pid and a mark of when it started. Where the system
 * says when a process started (Linux: field 22 of /proc/PID/stat, in clock ticks since boot), a
 * reused pid is told apart from the process that owned a run; elsewhere the pid alone is checked.
 */
export interface RunOwner {
  pid: number;
  start: string | null;
}

/** This process, as a run's owner. */
export function currentOwner(): RunOwner {
  return { pid: process.pid, start: processStartMark(process.pid) };
}

/** When `pid` started, as an opaque mark; null where the system does not say (or no such process). */
export function processStartMark(pid: number): string | null {
  if (process.platform !== 'linux') return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may itself hold spaces or parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = fields[19];
    return ticks && /^\d+$/.test(ticks) ? `linux:${ticks}` : null;
  } catch {
    return null;
  }
}

/** True when a process with that pid exists (EPERM: it exists but belongs to another user). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True while the owner recorded for a run still runs: the same pid, started at the same time. */
export function isOwnerAlive(owner: RunOwner): boolean {
  if (!isProcessAlive(owner.pid)) return false;
  if (owner.start === null) return true;
  const now = processStartMark(owner.pid);
  return now === null || now === owner.start;
}
