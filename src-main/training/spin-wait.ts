/**
 * The blocking wait both thread exchanges use (shared-exchange.ts, chunk-exchange.ts): spin
 * briefly, then sleep in Atomics.wait. A thread asleep in Atomics.wait waits for the scheduler to
 * wake it (two workers on two idle cores: a few % samples/s), so while the others have been
 * arriving soon after this worker it spins first. On a busy machine the waits grow past
 * SPIN_SKIP_MS and spinning stops, so it does not take a core from a thread that would use it.
 * No Node import: a page's worker bundles the exchanges too.
 */

/** Atomics.wait slice: a waiting worker checks the abort flag this often. */
export const WAIT_SLICE_MS = 200;
/** A wait spins this long before it sleeps… */
const SPIN_MS = 0.1;
/** …unless its last wait was longer than this (a loaded machine, or workers far apart). */
const SPIN_SKIP_MS = 1;

export class SpinWait {
  /** How long this thread's last wait took (ms). */
  #lastWaitMs = 0;

  /**
   * Blocks while `pending(header[index])`; `check` runs before each sleep and throws to give up
   * (the run was stopped). Returns when the wait started (performance.now()).
   */
  wait(header: Int32Array, index: number, pending: (value: number) => boolean, check: () => void): number {
    const start = performance.now();
    if (this.#lastWaitMs < SPIN_SKIP_MS) {
      for (let i = 1; pending(Atomics.load(header, index)); i++) {
        if ((i & 63) === 0 && performance.now() - start > SPIN_MS) break;
      }
    }
    for (;;) {
      const value = Atomics.load(header, index);
      if (!pending(value)) break;
      check();
      Atomics.wait(header, index, value, WAIT_SLICE_MS);
    }
    this.#lastWaitMs = performance.now() - start;
    return start;
  }
}
