import os from 'node:os';
import type { CpuSample } from '../../src-shared/monitor';

type CoreTimes = Pick<os.CpuInfo, 'times'>;

/** Busy share per core between two os.cpus() readings, and the time the kernel counted in between. */
function measure(before: ReadonlyArray<CoreTimes>, after: ReadonlyArray<CoreTimes>): { usage: CpuSample; countedMs: number } {
  const totalOf = (times: os.CpuInfo['times']) => times.user + times.nice + times.sys + times.idle + times.irq;
  const busyShare = (busy: number, total: number) => (total > 0 ? Math.min(100, Math.max(0, (100 * busy) / total)) : 0);
  let busySum = 0;
  let totalSum = 0;
  const perCorePercent = after.map((core, index) => {
    const previous = before[index];
    if (previous === undefined || before.length !== after.length) return 0;
    const total = totalOf(core.times) - totalOf(previous.times);
    const busy = total - (core.times.idle - previous.times.idle);
    busySum += busy;
    totalSum += total;
    return busyShare(busy, total);
  });
  return { usage: { perCorePercent, totalPercent: busyShare(busySum, totalSum) }, countedMs: totalSum };
}

/** Busy share per core between two os.cpus() readings; cores that appeared or vanished in between read 0. */
export function cpuUsageBetween(before: ReadonlyArray<CoreTimes>, after: ReadonlyArray<CoreTimes>): CpuSample {
  return measure(before, after).usage;
}

/** Whole-machine CPU use since the previous reading (or since it was made), from the kernel's per-core counters. */
export class CpuUsageSampler {
  #before: CoreTimes[] = os.cpus();

  /** Each core's and all cores' busy share since the previous reading. */
  sample(): CpuSample {
    return this.#next().usage;
  }

  /** All cores' busy share since the previous reading; null when the kernel counted no time in between (two readings within one clock tick). */
  totalPercent(): number | null {
    const { usage, countedMs } = this.#next();
    return countedMs > 0 ? usage.totalPercent : null;
  }

  #next(): { usage: CpuSample; countedMs: number } {
    const now = os.cpus();
    const measured = measure(this.#before, now);
    this.#before = now;
    return measured;
  }
}
