import type { BackendId, EngineConfig } from '../../src-shared/engine-config';
import type { ErrorData } from '../../src-shared/errors';
import type { GpuSituation, BackendStatus } from '../engine/backends';
import type { LossParts, LossScalerState, OptimizerState, StepPhases } from '../engine/kernel';
import type { ExchangeLayout } from './file-exchange';
import type { ChunkExchangeLayout } from './chunk-exchange';
import type { SharedExchangeLayout } from './shared-exchange';

/**
 * The coordinator ↔ worker protocol: discriminated unions with a `type` and a `seq`; replies carry
 * the request's seq in `replyTo`. Float32Arrays travel as typed arrays (structured clone), never
 * as JSON number lists.
 */

export interface EngineSnapshot {
  parameters: Float32Array;
  optimizer: OptimizerState;
  fieldState: Float32Array;
  step: number;
  /** Mixed precision: the loss scaler, so a checkpoint and a resume continue it. */
  lossScaler?: LossScalerState | null;
}

export type ToWorker =
  | {
      type: 'init';
      seq: number;
      rank: number;
      worldSize: number;
      config: EngineConfig;
      backend: BackendId | 'auto';
      gpu: GpuSituation;
      exchange: ExchangeLayout | SharedExchangeLayout | ChunkExchangeLayout | null;
      /** Time each step's phases and report them with the gradients (benchmarks; off otherwise). */
      profile?: boolean;
    }
  | { type: 'set-state'; seq: number; state: EngineSnapshot }
  | { type: 'get-state'; seq: number }
  /** Data for a future step, sent ahead so the worker never waits for it. */
  | { type: 'batch'; seq: number; step: number; rows: number; data: Float32Array }
  /**
   * Compute gradients on the step's batch. With one worker it applies them at once; with a file
   * exchange it writes them to its slot and waits for 'apply'; with a shared-memory exchange the
   * workers reduce among themselves and apply, and the reply says `applied`. `batch`: the step's
   * data with the request (a pipelined step), else it came ahead in a 'batch' message.
   */
  | { type: 'compute'; seq: number; step: number; batch?: { rows: number; data: Float32Array } }
  /** Reduce every worker's slot with these weights (shard sizes / global batch) and update. */
  | { type: 'apply'; seq: number; weights: number[] }
  | { type: 'evaluate'; seq: number; rows: number; data: Float32Array }
  /** Time `iterations` eval forwards of `rows` N(0,1) rows, `repeats` times (benchmarks). */
  | { type: 'time-forward'; seq: number; rows: number; iterations: number; repeats: number }
  | { type: 'shutdown'; seq: number };

export interface WorkerMemory {
  rssBytes: number;
  tensors: number;
  tensorBytes: number;
  /** Bytes the worker holds in GPU buffers (webgpu); null on the CPU backends. */
  gpuBytes: number | null;
}

/** A mixed-precision worker's loss scale and the steps it skipped for overflow. */
export interface ScalerReport {
  scale: number;
  skippedSteps: number;
}

export type FromWorker =
  | { type: 'ready'; replyTo: number; pid: number; backend: BackendId; report: BackendStatus[]; cudaVisibleDevices: string | null }
  | { type: 'state'; replyTo: number; state: EngineSnapshot }
  | {
      type: 'gradients';
      replyTo: number;
      step: number;
      rows: number;
      loss: LossParts;
      computeMs: number;
      /** Time the worker waited for this step's batch after it was ready to compute. */
      dataWaitMs: number;
      memory: WorkerMemory;
      /** Shared-memory exchange: the mean was applied (false: another worker's step failed). */
      applied: boolean;
      /** Time in the all-reduce (copy, barrier, mean) — shared-memory exchange only. */
      exchangeMs: number;
      /** Mixed precision, every SCALER_REPORT_EVERY steps (a readback): the loss scaler. */
      scaler?: ScalerReport;
      /** With init's `profile`: where this step's time went in the worker (ms). */
      phases?: StepPhases;
    }
  | { type: 'applied'; replyTo: number }
  | { type: 'evaluated'; replyTo: number; rows: number; loss: LossParts }
  | { type: 'timed'; replyTo: number; msPerBatch: number[] }
  | { type: 'ok'; replyTo: number }
  | { type: 'error'; replyTo: number; error: ErrorData };

/** Requests without their seq, as callers write them. */
export type Request = ToWorker extends infer M ? (M extends { seq: number } ? Omit<M, 'seq'> : never) : never;

/**
 * A worker's end of its transport, whatever carries it (IPC of child_process, an Electron utility
 * process's parentPort, a worker thread's parentPort, a hidden renderer's MessagePort): the worker
 * code above it never asks which. Implementations for Node's transports are in worker-channels.ts,
 * the MessagePort one (no Node import) in message-port-channel.ts.
 */
export interface ParentChannel<In = ToWorker, Out = FromWorker> {
  /** `transfer`: buffers to move rather than copy, where the channel can (threads, MessagePorts). */
  send(message: Out, transfer?: ArrayBuffer[]): void;
  onMessage(listener: (message: In) => void): void;
  /** The parent went away; after the listeners the worker ends (a process exits). */
  onClose(listener: () => void): void;
  /** Ends this worker's side once its last message is on its way (after 'shutdown'). */
  close(): void;
}
