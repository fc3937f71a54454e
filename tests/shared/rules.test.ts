import { describe, expect, it } from 'vitest';
import { validateRequest } from '../../src-shared/api';
import { BENCHMARK_SUITE_LIMITS } from '../../src-shared/benchmarks';
import { FINISHED_RUN_STATUSES, isLiveStatus, LIVE_RUN_STATUSES, RUN_STATUSES, RUN_STATUSES_SPLIT } from '../../src-shared/records';
import {
  MAX_SHARED_MEMORY_WORKERS,
  MAX_SYNTHETIC_ROWS,
  MAX_VALIDATION_FRACTION,
  MAX_WORKERS,
  TrainingRequestSchema,
  validationRowCount,
} from '../../src-shared/run-config';
import { parseCommand } from '../../src-main/cli/args';
import { parseWorkerCounts } from '../../src-main/cli/commands/bench';
import { trainSpec } from '../../src-main/cli/commands/train';
import { splitTrainValidation } from '../../src-main/data/split';
import { parseSyntheticSpec } from '../../src-main/data/synthetic';
import { createSharedExchange } from '../../src-main/training/shared-exchange';
import { wholeNumberList } from '../../src-renderer/components/benchmarks/suite-fields';
import { TrainWizard } from '../../src-renderer/components/train/wizard-state.svelte';
import { FakeApi } from '../renderer/fake-api';
import { NEW_RUN, testStore } from '../store/helpers';

/**
 * Each rule both ends enforce lives once in src-shared; here every end meets the same boundary:
 * the limit itself is taken, one past it refused, by the API, the service, the CLI and the renderer.
 */

const accepts = (fn: () => unknown) => {
  try {
    fn();
    return true;
  } catch {
    return false;
  }
};

const START = { mode: 'multi-cpu', backend: 'auto', engine: {}, epochs: 1, dataset: 'synthetic:64' } as const;

function wizard(): TrainWizard {
  return new TrainWizard(new FakeApi());
}

/** Whether each end takes `value`, by name: they must all agree. */
function verdicts(ends: Record<string, (value: number) => boolean>, value: number): Record<string, boolean> {
  return Object.fromEntries(Object.entries(ends).map(([end, takes]) => [end, takes(value)]));
}

const every = (ends: Record<string, unknown>, verdict: boolean) => Object.fromEntries(Object.keys(ends).map((end) => [end, verdict]));

describe('the worker limit (MAX_WORKERS)', () => {
  const ends: Record<string, (workers: number) => boolean> = {
    'API startRun': (workers) => accepts(() => validateRequest('startRun', { ...START, workers })),
    'training service': (workers) => TrainingRequestSchema.safeParse({ ...START, workers }).success,
    'quadra train --workers': (workers) => accepts(() => parseCommand(trainSpec, ['--epochs', '1', '--workers', String(workers)])),
    'quadra bench --workers': (workers) => accepts(() => parseWorkerCounts(`1,${workers}`)),
    'API runBenchmarkSuite': (workers) =>
      accepts(() => validateRequest('runBenchmarkSuite', { name: 'limits', backends: ['simd'], workerCounts: [workers], batchSizes: [8] })),
    'suite form': (workers) => wholeNumberList(`1, ${workers}`, BENCHMARK_SUITE_LIMITS.workers).ok,
    wizard: (workers) => {
      const w = wizard();
      w.mode = 'multi-cpu';
      w.workers = workers;
      w.batchSize = MAX_WORKERS * 2;
      return w.errors.workers === null;
    },
  };

  it('is taken by every end, and one more is refused by every end', () => {
    expect(verdicts(ends, MAX_WORKERS)).toEqual(every(ends, true));
    expect(verdicts(ends, MAX_WORKERS + 1)).toEqual(every(ends, false));
  });

  it('is one bound for runs and benchmarks', () => {
    expect(BENCHMARK_SUITE_LIMITS.workers.max).toBe(MAX_WORKERS);
    expect(MAX_SHARED_MEMORY_WORKERS).toBeLessThanOrEqual(MAX_WORKERS);
  });

  it("simd's shared-memory limit: the exchange and the wizard agree", () => {
    const simdWizard = (workers: number) => {
      const w = wizard();
      w.backend = 'simd';
      w.mode = 'multi-cpu';
      w.workers = workers;
      w.batchSize = MAX_WORKERS * 2;
      return w.errors.workers;
    };
    expect(accepts(() => createSharedExchange(MAX_SHARED_MEMORY_WORKERS, 4))).toBe(true);
    expect(simdWizard(MAX_SHARED_MEMORY_WORKERS)).toBeNull();
    expect(() => createSharedExchange(MAX_SHARED_MEMORY_WORKERS + 1, 4)).toThrow(`holds 1 to ${MAX_SHARED_MEMORY_WORKERS} workers`);
    expect(simdWizard(MAX_SHARED_MEMORY_WORKERS + 1)).toBe(
      `workers must be at most ${MAX_SHARED_MEMORY_WORKERS} with the simd backend: its worker threads share one memory for the gradient exchange`,
    );
  });
});

describe('the validation fraction maximum (MAX_VALIDATION_FRACTION)', () => {
  const ends: Record<string, (fraction: number) => boolean> = {
    'API startRun': (validationFraction) => accepts(() => validateRequest('startRun', { ...START, validationFraction })),
    'training service': (validationFraction) => TrainingRequestSchema.safeParse({ ...START, validationFraction }).success,
    'quadra train --validation-fraction': (fraction) => accepts(() => parseCommand(trainSpec, ['--epochs', '1', `--validation-fraction=${fraction}`])),
    'the split': (fraction) => accepts(() => splitTrainValidation(100, fraction)),
    wizard: (fraction) => {
      const w = wizard();
      w.validationFraction = fraction;
      return w.errors.validationFraction === null;
    },
  };

  it('is taken by every end, and anything over it is refused by every end', () => {
    expect(verdicts(ends, MAX_VALIDATION_FRACTION)).toEqual(every(ends, true));
    expect(verdicts(ends, MAX_VALIDATION_FRACTION + 0.01)).toEqual(every(ends, false));
    expect(verdicts(ends, -0.01)).toEqual(every(ends, false));
  });
});

describe('the synthetic rows bound (MAX_SYNTHETIC_ROWS)', () => {
  const ends: Record<string, (rows: number) => boolean> = {
    'API startRun': (rows) => accepts(() => validateRequest('startRun', { ...START, dataset: `synthetic:${rows}` })),
    'CLI and service (parseSyntheticSpec)': (rows) => accepts(() => parseSyntheticSpec(`synthetic:${rows}`)),
    wizard: (rows) => {
      const w = wizard();
      w.syntheticRows = rows;
      return w.errors.syntheticRows === null;
    },
  };

  it('is taken by every end, and one more row is refused by every end', () => {
    expect(verdicts(ends, MAX_SYNTHETIC_ROWS)).toEqual(every(ends, true));
    expect(verdicts(ends, MAX_SYNTHETIC_ROWS + 1)).toEqual(every(ends, false));
    expect(verdicts(ends, 0)).toEqual(every(ends, false));
  });
});

describe('the validation split arithmetic (validationRowCount)', () => {
  it("the wizard's training rows are the split's, for small and odd row counts", () => {
    const w = wizard();
    for (const rows of [1, 2, 3, 7, 10, 19, 100, 1001]) {
      for (const fraction of [0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.9]) {
        const split = splitTrainValidation(rows, fraction, 3);
        expect(split.validation.length).toBe(validationRowCount(rows, fraction));
        w.syntheticRows = rows;
        w.validationFraction = fraction;
        expect(w.trainingRows, `${rows} rows, fraction ${fraction}`).toBe(split.train.length);
      }
    }
  });

  it('holds out at least one row when asked to, and never every row', () => {
    expect(validationRowCount(2, 0.01)).toBe(1);
    expect(validationRowCount(1, 0.9)).toBe(0);
    expect(validationRowCount(10, 0)).toBe(0);
    expect(validationRowCount(10, 0.9)).toBe(9);
    expect(() => validationRowCount(0, 0.1)).toThrow('row count must be a whole number ≥ 1, got 0');
    expect(() => validationRowCount(10, 0.95)).toThrow(`validation fraction must be between 0 and ${MAX_VALIDATION_FRACTION}, got 0.95`);
  });
});

describe('the live statuses (LIVE_RUN_STATUSES)', () => {
  it('with the finished ones, split every status in two', () => {
    expect(RUN_STATUSES_SPLIT).toBe(true);
    expect([...LIVE_RUN_STATUSES, ...FINISHED_RUN_STATUSES].sort()).toEqual([...RUN_STATUSES].sort());
  });

  it('are the ones the store interrupts when the owner is gone, and the ones that take a control request', () => {
    const store = testStore();
    for (const status of RUN_STATUSES) {
      const run = store.runs.create(NEW_RUN);
      if (status !== 'queued') store.runs.setStatus(run.id, status);
      expect(store.runs.markInterruptedRuns(() => false).includes(run.id), `${status}: interrupted`).toBe(isLiveStatus(status));
      const other = store.runs.create(NEW_RUN);
      if (status !== 'queued') store.runs.setStatus(other.id, status);
      expect(accepts(() => store.runs.requestControl(other.id, 'pause', () => true)), `${status}: takes a pause`).toBe(isLiveStatus(status));
    }
  });
});
