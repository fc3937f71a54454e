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
      this.error = error instanceof Error ? error.message : String(error);
    } finally {
      this.loading = false;
    }
  }
}
