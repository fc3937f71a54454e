import { errorMessage } from '../errors';

/** A value fetched from the workstation, with its loading and error states for the view to show. */
export class Loadable<T> {
  value = $state.raw<T | null>(null);
  error = $state<string | null>(null);
  loading = $state(false);
  #load: () => Promise<T>;

  constructor(load: () => Promise<T>) {
    this.#load = load;
  }

  async refresh(): Promise<void> {
    this.loading = true;
    this.error = null;
    try {
      this.value = await this.#load();
    } catch (error) {
      this.error = errorMessage(error);
    } finally {
      this.loading = false;
    }
  }
}

/**
 * A value loaded for the thing the user chose (a suite's results, a run's checkpoints). Choices
 * can follow each other faster than the answers come: only the latest choice's answer is kept.
 */
export class KeyedLoadable<K, T> {
  /** What is chosen; null when nothing is. */
  key = $state.raw<K | null>(null);
  value = $state.raw<T | null>(null);
  error = $state<string | null>(null);
  loading = $state(false);
  #load: (key: K) => Promise<T>;
  #request = 0;

  constructor(load: (key: K) => Promise<T>) {
    this.#load = load;
  }

  /** Chooses `key` and loads its value; `quiet` reloads the same choice without the loading state. */
  async select(key: K | null, quiet = false): Promise<void> {
    if (key !== this.key) {
      this.key = key;
      this.value = null;
    }
    const request = ++this.#request;
    this.error = null;
    if (key === null) {
      this.loading = false;
      return;
    }
    if (!quiet) this.loading = true;
    try {
      const value = await this.#load(key);
      if (request === this.#request) this.value = value;
    } catch (error) {
      if (request === this.#request) this.error = errorMessage(error);
    } finally {
      if (request === this.#request) this.loading = false;
    }
  }
}
