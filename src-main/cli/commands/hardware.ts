import { probeBackends } from '../../engine/backends';
import { getOptimalConfig } from '../../engine/auto-config';
import type { CommandSpec, Parsed } from '../args';
import { hardware, JSON_OPTION } from '../common';
import { formatBytes, type Output } from '../output';

export const hardwareSpec: CommandSpec = {
  name: 'hardware',
  summary: 'Show the CPU, memory and NVIDIA GPUs, which compute backends work here (or why not), and the recommended configuration.',
  usage: 'quadra hardware [--json]',
  options: { json: JSON_OPTION },
};

export async function hardwareCommand(_parsed: Parsed, output: Output): Promise<number> {
  const hw = await hardware();
  const backends = await probeBackends({ gpus: hw.gpus, nvidiaSmi: hw.nvidiaSmi });
  const recommended = getOptimalConfig(hw);
  if (output.json) {
    output.out(JSON.stringify({ ...hw, backends, recommended }));
    return 0;
  }
  output.out(`CPU       ${hw.cpu.model} — ${hw.cpu.physicalCores} physical / ${hw.cpu.logicalCores} logical cores`);
  output.out(`memory    ${formatBytes(hw.memoryTotalBytes)} total, ${formatBytes(hw.memoryFreeBytes)} free`);
  output.out(`platform  ${hw.platform} ${hw.arch}`);
  if (hw.gpus.length === 0) {
    output.out(`GPUs      none — ${hw.nvidiaSmi.available ? 'nvidia-smi lists no GPU' : hw.nvidiaSmi.reason}`);
  } else {
    for (const gpu of hw.gpus) {
      const used = gpu.memoryUsedMiB === null ? 'N/A' : `${gpu.memoryUsedMiB} MiB`;
      output.out(`GPU ${gpu.index}     ${gpu.name} — ${gpu.memoryTotalMiB} MiB (${used} used), driver ${gpu.driverVersion}, CUDA ${gpu.cudaVersion ?? 'N/A'}`);
    }
  }
  output.out('backends');
  for (const b of backends) output.out(`  ${b.available ? '✓' : '✗'} ${b.id.padEnd(15)} ${b.reason}`);
  output.out('recommended');
  output.out(`  batch size ${recommended.batchSize} — ${recommended.reasons.batchSize}`);
  output.out(`  workers    ${recommended.workers} — ${recommended.reasons.workers}`);
  output.out(`  mode       ${recommended.mode} — ${recommended.reasons.mode}`);
  return 0;
}
