import { QuadraError } from '../../../src-shared/errors';
import { readCheckpointFile, writeFileAtomic } from '../../engine/checkpoint';
import { serializeNpy } from '../../data/npy';
import type { CommandSpec, Parsed } from '../args';
import { UsageError } from '../args';
import { loadDatasetFile } from '../../data/dataset-file';
import { BACKEND_OPTION, engineFor, JSON_OPTION } from '../common';
import type { Output } from '../output';

export const predictSpec: CommandSpec = {
  name: 'predict',
  summary: 'Run the field network (eval mode) of a checkpoint on every row of an input file; write the outputs (and spike rates) as float32 .npy.',
  usage: 'quadra predict --checkpoint C.safetensors --input X.npy|X.csv|X.txt --output Y.npy [--spikes S.npy] [--batch-size N] [--backend B] [--json]',
  options: {
    checkpoint: { kind: 'string', description: 'a .safetensors checkpoint (ours or a PyTorch state_dict)', placeholder: 'FILE' },
    input: { kind: 'string', description: 'rows to run: .npy (float32/float64, 1-D or 2-D), numeric .csv, or text (one row per line, hashed to the field size)', placeholder: 'FILE' },
    output: { kind: 'string', description: 'where to write the field outputs (.npy, float32, rows × fieldSize)', placeholder: 'FILE' },
    spikes: { kind: 'string', description: 'also write the spike rates here (.npy)', placeholder: 'FILE' },
    'batch-size': { kind: 'int', description: 'rows per forward pass (default 256)', max: 65_536, placeholder: 'N' },
    backend: BACKEND_OPTION,
    json: JSON_OPTION,
  },
};

export async function predict({ options }: Parsed, output: Output): Promise<number> {
  for (const required of ['checkpoint', 'input', 'output'] as const) {
    if (options[required] === undefined) throw new UsageError(`--${required} is required`);
  }
  const checkpointPath = options.checkpoint as string;
  const inputPath = options.input as string;
  const outputPath = options.output as string;
  const spikesPath = options.spikes as string | undefined;
  // Validate both files completely before building anything.
  const { contents } = await readCheckpointFile(checkpointPath);
  const F = contents.model.fieldSize;
  // The same reader and checks as dataset import (NaN/Inf, ragged rows…); text is hashed to width F.
  const input = await loadDatasetFile(inputPath, { textWidth: F });
  if (input.width !== F) {
    throw new QuadraError('SHAPE_MISMATCH', `${inputPath}: rows have ${input.width} values, but the checkpoint's field size is ${F}`, {
      file: inputPath,
      expected: F,
      found: input.width,
    });
  }
  const chunk = (options['batch-size'] as number | undefined) ?? 256;
  const engine = await engineFor(options, { model: contents.model, batchSize: Math.min(chunk, input.rows) }, output);
  try {
    engine.loadCheckpoint(contents);
    const fieldOut = new Float32Array(input.rows * F);
    const rates = new Float32Array(input.rows * F);
    const progress = output.progress('predict');
    for (let start = 0; start < input.rows; start += chunk) {
      const rows = Math.min(chunk, input.rows - start);
      const result = engine.processBatch(input.data.subarray(start * F, (start + rows) * F), rows);
      fieldOut.set(result.fieldOutput, start * F);
      rates.set(result.spikeRates, start * F);
      progress.update(start + rows, input.rows);
    }
    progress.done();
    await writeFileAtomic(outputPath, serializeNpy(fieldOut, [input.rows, F]));
    if (spikesPath) await writeFileAtomic(spikesPath, serializeNpy(rates, [input.rows, F]));
    const summary = { rows: input.rows, fieldSize: F, backend: engine.backend.id, output: outputPath, spikes: spikesPath ?? null, origin: contents.origin };
    if (output.json) output.out(JSON.stringify(summary));
    else output.out(`wrote ${input.rows} × ${F} field outputs to ${outputPath}${spikesPath ? ` and spike rates to ${spikesPath}` : ''}`);
  } finally {
    engine.dispose();
  }
  return 0;
}
