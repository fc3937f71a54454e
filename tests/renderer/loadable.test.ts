import { describe, expect, it } from 'vitest';
import { KeyedLoadable, Loadable } from '../../src-renderer/lib/state/loadable.svelte';

/** A load whose answers the test gives, in whatever order it likes. */
function deferredLoads<K, T>() {
  const pending = new Map<K, { resolve: (value: T) => void; reject: (error: Error) => void }>();
  const load = (key: K) => new Promise<T>((resolve, reject) => pending.set(key, { resolve, reject }));
  return { load, answer: (key: K, value: T) => pending.get(key)!.resolve(value), fail: (key: K, error: Error) => pending.get(key)!.reject(error) };
}

describe('Loadable', () => {
  it('keeps the value, says it is loading, and turns a failure into its message', async () => {
    let fail = false;
    const loadable = new Loadable(async () => {
      if (fail) throw new Error('the workstation is gone');
      return 3;
    });
    const refreshing = loadable.refresh();
    expect(loadable.loading).toBe(true);
    await refreshing;
    expect({ value: loadable.value, loading: loadable.loading, error: loadable.error }).toEqual({ value: 3, loading: false, error: null });
    fail = true;
    await loadable.refresh();
    expect(loadable.error).toBe('the workstation is gone');
    expect(loadable.value).toBe(3);
  });
});

describe('KeyedLoadable', () => {
  it('keeps only the latest choice\'s answer, whatever order the answers come in', async () => {
    const { load, answer } = deferredLoads<number, string>();
    const checkpoints = new KeyedLoadable(load);
    const first = checkpoints.select(1);
    const second = checkpoints.select(2);
    expect(checkpoints.key).toBe(2);
    answer(2, 'run 2');
    await second;
    answer(1, 'run 1');
    await first;
    expect(checkpoints.value).toBe('run 2');
    expect(checkpoints.loading).toBe(false);
  });

  it('a new choice clears the old value at once; a quiet reload keeps it on screen', async () => {
    const { load, answer } = deferredLoads<number, string>();
    const results = new KeyedLoadable(load);
    const loading = results.select(1);
    answer(1, 'one');
    await loading;

    const reloading = results.select(1, true);
    expect({ value: results.value, loading: results.loading }).toEqual({ value: 'one', loading: false });
    answer(1, 'one, more');
    await reloading;
    expect(results.value).toBe('one, more');

    void results.select(2);
    expect({ value: results.value, loading: results.loading }).toEqual({ value: null, loading: true });
  });

  it('says why a load failed, unless a later choice came meanwhile', async () => {
    const { load, fail, answer } = deferredLoads<number, string>();
    const results = new KeyedLoadable(load);
    const first = results.select(1);
    fail(1, new Error('suite 1 not found'));
    await first;
    expect(results.error).toBe('suite 1 not found');

    const stale = results.select(2);
    const latest = results.select(3);
    fail(2, new Error('suite 2 not found'));
    answer(3, 'three');
    await Promise.all([stale, latest]);
    expect(results.error).toBeNull();
    expect(results.value).toBe('three');
  });

  it('choosing nothing stops loading and shows nothing', async () => {
    const { load } = deferredLoads<number, string>();
    const results = new KeyedLoadable(load);
    void results.select(1);
    await results.select(null);
    expect({ key: results.key, value: results.value, loading: results.loading }).toEqual({ key: null, value: null, loading: false });
  });
});
