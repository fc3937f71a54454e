import type { CommandSpec, Parsed } from '../args';
import { BACKEND_OPTION, engineFor, hardware, JSON_OPTION } from '../common';
import { formatBytes, formatRate, type Output } from '../output';
import { getOptimalConfig } from '../../engine/auto-config';

export const demoSpec: CommandSpec = {
  name: 'demo',
  summary: 'Auto-configure for this machine, build the engine and run the reference benchmark (10 warm-up batches, then timed training steps).',
  usage: 'quadra demo [--backend B] [--iterations N] [--json]',
  options: {
    backend: BACKEND_OPTION,
    iterations: { kind: 'int', description: 'timed training steps (default 100)', max: 1_000_000, placeholder: 'N' },
    json: JSON_OPTION,
  },
};

export async function demo({ options }: Parsed, output: Output): Promise<number> {
  const hw = await hardware();
  const recommended = getOptimalConfig(hw);
  if (!output.json) output.note(`recommended: batch ${recommended.batchSize} — ${recommended.reasons.batchSize}`);
  const engine = await engineFor(options, { batchSize: recommended.batchSize }, output);
  try {
    const iterations = (options.iterations as number | undefined) ?? 100;
    const result = engine.benchmark(iterations);
    const memory = engine.memoryStats();
    if (output.json) {
      output.out(JSON.stringify({ ...result, backendReport: engine.backend.report, recommended, memory }));
    } else {
      output.out(`backend      ${result.backend}`);
      output.out(`batch size   ${result.batchSize}`);
      output.out(`throughput   ${formatRate(result.samplesPerSec)} (training, ${iterations} steps)`);
      output.out(`step time    ${result.msPerStep.toFixed(2)} ms`);
      output.out(`memory       ${memory.tensors} tensors, ${formatBytes(memory.tensorBytes)} in tensors, ${formatBytes(memory.rssBytes)} RSS`);
    }
  } finally {
    engine.dispose();
  }
  return 0;
}
