import { describe, expect, it } from 'vitest';
import { parseRoute, runRoute } from '../../src-renderer/lib/route';

describe('routes', () => {
  it('names a view, and in Runs one run', () => {
    expect(parseRoute('#hardware')).toEqual({ view: 'hardware', runId: null });
    expect(parseRoute('#runs')).toEqual({ view: 'runs', runId: null });
    expect(parseRoute(runRoute(12))).toEqual({ view: 'runs', runId: 12 });
    expect(parseRoute('')).toEqual({ view: '', runId: null });
  });

  it('takes no run from anything but a whole number in Runs', () => {
    expect(parseRoute('#runs/12x').runId).toBeNull();
    expect(parseRoute('#runs/-1').runId).toBeNull();
    expect(parseRoute('#train/12').runId).toBeNull();
  });
});
