/**
 * The page's address after '#': a view, and in Runs the run shown (`#runs/12`), so that a link,
 * a reload or the wizard's Start can land on one run.
 */
export interface Route {
  view: string;
  runId: number | null;
}

export function parseRoute(hash: string): Route {
  const [view = '', detail] = hash.replace(/^#/, '').split('/');
  const runId = view === 'runs' && detail !== undefined && /^\d+$/.test(detail) ? Number(detail) : null;
  return { view, runId };
}

/** The address of one run's detail. */
export function runRoute(runId: number): string {
  return `#runs/${runId}`;
}

