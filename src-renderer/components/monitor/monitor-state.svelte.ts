import type { MonitorSample } from '../../../src-shared/monitor';
import type { ApiClient, ConnectionState } from '../../lib/api';
import { errorMessage } from '../../lib/errors';
import { HISTORY_MS, appendSample, historyOf, isMonitorSample } from './monitor-history';

/** Five minutes at the fastest interval setMonitoring allows (250 ms). */
const MAX_SAMPLES = HISTORY_MS / 250;

/**
 * The live monitor while its view is shown: turns monitoring on (again after every reconnect, since
 * a restarted server starts with it off), keeps the last five minutes of samples, and turns it off
 * when the view goes away.
 */
export class MonitorState {
  #api: ApiClient | null = null;
  /** A bounded window: each sample replaces the array with one that has dropped what fell out of it. */
  #samples = $state.raw<readonly MonitorSample[]>([]);
  #callError = $state<string | null>(null);
  #sampleError = $state<string | null>(null);
  #connection = $state<ConnectionState>('connecting');

  readonly latest = $derived<MonitorSample | null>(this.#samples[this.#samples.length - 1] ?? null);
  readonly history = $derived(historyOf(this.#samples));

  /** The last failure to turn monitoring on or off, else a payload that was not a sample. */
  get error(): string | null {
    return this.#callError ?? this.#sampleError;
  }

  get connection(): ConnectionState {
    return this.#connection;
  }

  /** Starts monitoring through `api`; the returned function stops it (use it as an $effect cleanup). */
  connect(api: ApiClient): () => void {
    this.#api = api;
    const stopSamples = api.on('onDidSampleMonitor', (payload) => this.#receive(payload));
    const stopConnection = api.onConnection((state) => {
      this.#connection = state;
      // Deferred: the WebSocket client resends its pending calls right after telling listeners it is open.
      if (state === 'open') queueMicrotask(() => void this.enable());
    });
    return () => {
      stopSamples();
      stopConnection();
      this.#api = null;
      // The view is gone, so there is nowhere left to show a failure to turn it off.
      api.call('setMonitoring', { enabled: false }).catch(() => undefined);
    };
  }

  /** Asks the workstation to send samples; a failure is kept in `error` for the view to show. */
  async enable(): Promise<void> {
    const api = this.#api;
    if (!api) return;
    this.#callError = null;
    try {
      await api.call('setMonitoring', { enabled: true });
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
