import { DEFAULT_MONITOR_INTERVAL_MS, MAX_MONITOR_INTERVAL_MS, MIN_MONITOR_INTERVAL_MS } from '../../../src-shared/api';
import type { MonitorSample } from '../../../src-shared/monitor';
import type { ApiClient, ConnectionState } from '../../lib/api';
import { errorMessage } from '../../lib/errors';
import { HISTORY_MS, appendSample, historyOf, isMonitorSample } from './monitor-history';

/** Five minutes at the fastest interval setMonitoring allows. */
const MAX_SAMPLES = HISTORY_MS / MIN_MONITOR_INTERVAL_MS;

/** The intervals the Monitor offers (each within what setMonitoring takes), with their labels. */
export const MONITOR_INTERVALS = [
  { ms: 250, label: '250 ms' },
  { ms: 500, label: '500 ms' },
  { ms: 1000, label: '1 s' },
  { ms: 2000, label: '2 s' },
  { ms: 5000, label: '5 s' },
] as const satisfies ReadonlyArray<{ ms: number; label: string }>;

/**
 * The live monitor while its view is shown, for this client alone (a browser tab, an app window):
 * turns monitoring on at the chosen interval (again after every reconnect, since a new connection
 * is a new client that starts with it off), keeps the last five minutes of samples, and turns it
 * off when the view goes away.
 */
export class MonitorState {
  #api: ApiClient | null = null;
  /** A bounded window: each sample replaces the array with one that has dropped what fell out of it. */
  #samples = $state.raw<readonly MonitorSample[]>([]);
  #callError = $state<string | null>(null);
  #sampleError = $state<string | null>(null);
  #connection = $state<ConnectionState>('connecting');
  #intervalMs = $state<number>(DEFAULT_MONITOR_INTERVAL_MS);
  /** The interval the workstation confirmed for this client; null until it did (or while off). */
  #activeIntervalMs = $state<number | null>(null);

  readonly latest = $derived<MonitorSample | null>(this.#samples[this.#samples.length - 1] ?? null);
  readonly history = $derived(historyOf(this.#samples));

  /** The last failure to turn monitoring on or off, else a payload that was not a sample. */
  get error(): string | null {
    return this.#callError ?? this.#sampleError;
  }

  get connection(): ConnectionState {
    return this.#connection;
  }

  /** The interval asked for (what the control shows). */
  get intervalMs(): number {
    return this.#intervalMs;
  }

  /** The interval the workstation sends samples at for this client, as it answered. */
  get activeIntervalMs(): number | null {
    return this.#activeIntervalMs;
  }

  /** Starts monitoring through `api`; the returned function stops it (use it as an $effect cleanup). */
  connect(api: ApiClient): () => void {
    this.#api = api;
    const stopSamples = api.on('onDidSampleMonitor', (payload) => this.#receive(payload));
    const stopConnection = api.onConnection((state) => {
      this.#connection = state;
      if (state !== 'open') this.#activeIntervalMs = null;
      // Deferred: the WebSocket client resends its pending calls right after telling listeners it is open.
      else queueMicrotask(() => void this.enable());
    });
    return () => {
      stopSamples();
      stopConnection();
      this.#api = null;
      // The view is gone, so there is nowhere left to show a failure to turn it off.
      api.call('setMonitoring', { enabled: false }).catch(() => undefined);
    };
  }

  /** Asks for samples every `ms` from now on (kept for the next reconnect too). */
  async chooseInterval(ms: number): Promise<void> {
    if (!Number.isInteger(ms) || ms < MIN_MONITOR_INTERVAL_MS || ms > MAX_MONITOR_INTERVAL_MS) return;
    this.#intervalMs = ms;
    await this.enable();
  }

  /** Asks the workstation to send samples at the chosen interval; a failure is kept in `error` for the view to show. */
  async enable(): Promise<void> {
    const api = this.#api;
    if (!api) return;
    this.#callError = null;
    const intervalMs = this.#intervalMs;
    try {
      const answer = await api.call('setMonitoring', { enabled: true, intervalMs });
      // A later choice may have been sent meanwhile: its answer speaks for it.
      if (this.#api === api && intervalMs === this.#intervalMs) this.#activeIntervalMs = answer.enabled ? answer.intervalMs : null;
    } catch (error) {
      if (this.#api === api) this.#callError = errorMessage(error);
    }
  }

  /** Stops and starts monitoring, which gives nvidia-smi a fresh restart budget after it `failed`. */
  async restart(): Promise<void> {
    const api = this.#api;
    if (!api) return;
    try {
      await api.call('setMonitoring', { enabled: false });
    } catch (error) {
      if (this.#api === api) this.#callError = errorMessage(error);
      return;
    }
    await this.enable();
  }

  #receive(payload: unknown): void {
    if (!isMonitorSample(payload)) {
      this.#sampleError = 'the workstation sent a monitor sample this view cannot read';
      return;
    }
    this.#sampleError = null;
    this.#samples = appendSample(this.#samples, payload, MAX_SAMPLES);
  }
}
