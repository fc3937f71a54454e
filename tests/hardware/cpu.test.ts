import { readFileSync } from 'node:fs';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { countPhysicalCores, detectCpu } from '../../src-main/hardware/cpu';

/** One /proc/cpuinfo processor block in the x86 kernel's layout (tab before the colon). */
function x86Block(processor: number, physicalId: number, coreId: number, siblings: number, cpuCores: number): string {
  return [
    `processor\t: ${processor}`,
    'vendor_id\t: GenuineIntel',
    'model name\t: Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz',
    `physical id\t: ${physicalId}`,
    `siblings\t: ${siblings}`,
    `core id\t\t: ${coreId}`,
    `cpu cores\t: ${cpuCores}`,
    `apicid\t\t: ${physicalId * 64 + coreId * 2}`,
    'flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep ht',
  ].join('\n');
}

describe('countPhysicalCores', () => {
  it('counts (physical id, core id) pairs on a two-socket hyperthreaded machine', () => {
    // 2 sockets × 4 cores × 2 threads, listed the way Linux numbers them: the first thread of
    // every core on both sockets, then the second threads. Core ids 0, 1, 4, 5 repeat on each socket.
    const coreIds = [0, 1, 4, 5];
    const blocks: string[] = [];
    let processor = 0;
    for (let thread = 0; thread < 2; thread++) {
      for (const physicalId of [0, 1]) {
        for (const coreId of coreIds) blocks.push(x86Block(processor++, physicalId, coreId, 8, 4));
      }
    }
    const text = `${blocks.join('\n\n')}\n\n`;
    expect(processor).toBe(16);
    expect(countPhysicalCores(text)).toBe(8);
  });

  it('counts a one-socket VM whose vCPUs are separate cores, as on this build machine', () => {
    const text = [
      'processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nphysical id\t: 0\nsiblings\t: 2\ncore id\t\t: 0\ncpu cores\t: 2',
      'processor\t: 1\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nphysical id\t: 0\nsiblings\t: 2\ncore id\t\t: 1\ncpu cores\t: 2',
    ].join('\n\n');
    expect(countPhysicalCores(`${text}\n`)).toBe(2);
  });

  it('counts two hyperthreads of one core once', () => {
    const text = `${x86Block(0, 0, 0, 2, 1)}\n\n${x86Block(1, 0, 0, 2, 1)}\n`;
    expect(countPhysicalCores(text)).toBe(1);
  });

  it('returns null for an ARM kernel that has no physical id / core id', () => {
    const arm = [
      'processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3',
      'processor\t: 1\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3',
      'Hardware\t: BCM2835\nRevision\t: c03111\nSerial\t\t: 100000000000000a\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1',
    ].join('\n\n');
    expect(countPhysicalCores(`${arm}\n`)).toBeNull();
  });

  it('returns null when only some processors have the fields, and for an empty file', () => {
    const partial = `${x86Block(0, 0, 0, 2, 2)}\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n`;
    expect(countPhysicalCores(partial)).toBeNull();
    expect(countPhysicalCores('')).toBeNull();
  });

  it('reads Windows-style line endings', () => {
    const text = `${x86Block(0, 0, 0, 2, 2)}\n\n${x86Block(1, 0, 1, 2, 2)}\n`.replace(/\n/g, '\r\n');
    expect(countPhysicalCores(text)).toBe(2);
  });
});

describe('detectCpu', () => {
  it('reports this machine: model, logical cores from os.cpus(), physical cores within them', () => {
    const cpu = detectCpu();
    expect(cpu.logicalCores).toBe(os.cpus().length || os.availableParallelism());
    expect(cpu.model).toBe(os.cpus()[0]?.model.trim() || 'unknown CPU');
    expect(cpu.physicalCores).toBeGreaterThanOrEqual(1);
    expect(cpu.physicalCores).toBeLessThanOrEqual(cpu.logicalCores);
  });

  it.runIf(process.platform === 'linux')('on Linux, counts physical cores from /proc/cpuinfo', () => {
    const fromFile = countPhysicalCores(readFileSync('/proc/cpuinfo', 'utf8'));
    const cpu = detectCpu();
    expect(cpu.physicalCores).toBe(Math.min(fromFile ?? cpu.logicalCores, cpu.logicalCores));
  });
});
