import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { CpuInfo } from '../../src-shared/hardware';

const SYSCTL_TIMEOUT_MS = 2000;

/**
 * Physical cores in a Linux /proc/cpuinfo text: the number of unique (physical id, core id) pairs.
 * Core ids repeat on every socket, so both are needed. Returns null when any processor lacks
 * those fields (many ARM and some VM kernels), because then the file cannot tell.
 */
export function countPhysicalCores(procCpuinfoText: string): number | null {
  const cores = new Set<string>();
  let processors = 0;
  for (const block of procCpuinfoText.split(/\r?\n[ \t]*\r?\n/)) {
    const fields = new Map<string, string>();
    for (const line of block.split(/\r?\n/)) {
      const colon = line.indexOf(':');
      if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    // ARM kernels end the file with a machine-wide block (Hardware, Revision, Serial): not a processor.
    if (!fields.has('processor')) continue;
    processors += 1;
    const physicalId = fields.get('physical id');
    const coreId = fields.get('core id');
    if (physicalId === undefined || coreId === undefined) return null;
    cores.add(`${physicalId}:${coreId}`);
  }
  return processors > 0 ? cores.size : null;
}

function linuxPhysicalCores(): number | null {
  try {
    return countPhysicalCores(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return null;
  }
}

function macPhysicalCores(): number | null {
  try {
    // Absolute path: apps started from Finder get a minimal PATH.
    const text = execFileSync('/usr/sbin/sysctl', ['-n', 'hw.physicalcpu'], {
      encoding: 'utf8',
      timeout: SYSCTL_TIMEOUT_MS,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const cores = Number.parseInt(text.trim(), 10);
    return Number.isInteger(cores) && cores > 0 ? cores : null;
  } catch {
    return null;
  }
}

function physicalCoresFor(platform: NodeJS.Platform): number | null {
  switch (platform) {
    case 'linux':
      return linuxPhysicalCores();
    case 'darwin':
      return macPhysicalCores();
    default:
      // Windows only tells physical cores through WMI/CIM: wmic is removed from current Windows 11
      // and starting PowerShell for Get-CimInstance costs about a second at every launch, so we
      // count logical cores there (as on other platforms Node knows nothing more about).
      return null;
  }
}

export function detectCpu(): CpuInfo {
  const cpus = os.cpus();
  // os.cpus() is empty where /proc or sysfs is hidden (some sandboxes); availableParallelism never is.
  const logicalCores = cpus.length > 0 ? cpus.length : os.availableParallelism();
  const model = cpus[0]?.model.trim() || 'unknown CPU';
  const physical = physicalCoresFor(process.platform);
  // A count above the logical one would be a misread file, never a real machine.
  const physicalCores = physical === null ? logicalCores : Math.min(physical, logicalCores);
  return { model, logicalCores, physicalCores };
}
