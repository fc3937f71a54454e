import { RUN_CONTROL_ACTIONS, type RunControlAction } from '../../../src-shared/api';
import { isLiveStatus, type RunRecord } from '../../../src-shared/records';
import { loadDatasetFile } from '../../data/dataset-file';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { readCheckpointFile, writeFileAtomic, type CheckpointContents } from '../../engine/checkpoint';
import { EXPORT_FORMATS, type ExportFormat } from '../../engine/export/formats';
import { exportStoredCheckpoint, formatFromPath } from '../../services/export-service';
import { importedRecord } from '../../services/datasets';
import { requestRunControl } from '../../services/training-service';
import type { Store } from '../../store/database';
import { importCheckpointBytes } from '../../services/workstation';
import { UsageError, type CommandSpec, type Parsed } from '../args';
import { DB_OPTION, JSON_OPTION, openCliStore } from '../common';
import { formatBytes, type Output } from '../output';

export const runsSpec: CommandSpec = {
  name: 'runs',
  summary:
    'List training runs, or show one (config, status, summary, checkpoints, recent metrics); pause, resume or cancel a live one, whichever process trains it (quadra train, the app, quadra serve).',
  usage: 'quadra runs [list|show ID|pause ID|resume ID|cancel ID] [--limit N] [--db FILE] [--json]',
  options: { limit: { kind: 'int', description: 'newest N runs (default 50)', max: 100_000, placeholder: 'N' }, db: DB_OPTION, json: JSON_OPTION },
  positionals: [
    { name: 'list|show|pause|resume|cancel', required: false },
    { name: 'ID', required: false },
  ],
};

export const checkpointsSpec: CommandSpec = {
  name: 'checkpoints',
  summary:
    'List checkpoints (best marked); export one to where the model goes next — .safetensors (optionally F16), the original project\'s .pth, ONNX, or a torchrun package; or import a .safetensors/.pth file as a new "imported" run.',
  usage: 'quadra checkpoints list [RUN_ID] | export ID --out PATH [--format safetensors|pth|onnx|torchrun] [--fp16] | import FILE [--name N]  [--db FILE] [--json]',
  options: {
    out: { kind: 'string', description: 'export: the file to write (a folder for torchrun)', placeholder: 'PATH' },
    format: { kind: 'string', choices: EXPORT_FORMATS, description: 'export: the format (default: from --out\'s extension; no extension is a torchrun folder)', placeholder: 'FORMAT' },
    fp16: { kind: 'boolean', description: 'export: F16 weights (safetensors: weights and field state only; onnx: float16 initializers)' },
    name: { kind: 'string', description: 'import: a name for the new run', placeholder: 'TEXT' },
    db: DB_OPTION,
    json: JSON_OPTION,
  },
  positionals: [
    { name: 'list|export|import', required: true },
    { name: 'ID or FILE', required: false },
  ],
};

export const datasetsSpec: CommandSpec = {
  name: 'datasets',
  summary: 'List registered datasets, or import a .npy/.csv/.txt file (validated completely, then registered with its sha256).',
  usage: 'quadra datasets list | import FILE [--name N] [--field-size N] [--db FILE] [--json]',
  options: {
    name: { kind: 'string', description: 'import: the dataset name (default: the file name)', placeholder: 'TEXT' },
    'field-size': { kind: 'int', description: 'import: the width rows must have (text files are hashed to this width; default 100 for text, any width otherwise)', max: 65_536, placeholder: 'N' },
    db: DB_OPTION,
    json: JSON_OPTION,
  },
  positionals: [
    { name: 'list|import', required: true },
    { name: 'FILE', required: false },
  ],
};

function idArgument(text: string | undefined, what: string): number {
  const id = Number(text);
  if (text === undefined || !Number.isSafeInteger(id) || id < 1) throw new UsageError(`${what} must be a number${text === undefined ? '' : `, got '${text}'`}`);
  return id;
}

const fmt = (x: number | null | undefined, digits = 6) => (x === null || x === undefined ? '—' : x.toFixed(digits));

export async function runs({ options, positionals }: Parsed, output: Output): Promise<number> {
  const [sub = 'list', id] = positionals;
  const store = openCliStore(options);
  try {
    if (sub === 'list') {
      const list = store.runs.list({ limit: (options.limit as number | undefined) ?? 50 });
      if (output.json) return output.out(JSON.stringify(list)), 0;
      if (list.length === 0) return output.out('no runs yet — start one with `quadra train --epochs 5`'), 0;
      output.out(`${'id'.padStart(4)}  ${'status'.padEnd(11)} ${'mode'.padEnd(9)} ${'best val'.padStart(10)} ${'last loss'.padStart(10)} ${'samples/s'.padStart(10)}  created           name`);
      for (const r of list) {
        const rate = r.summary.samplesPerSec === null ? '—' : Math.round(r.summary.samplesPerSec).toString();
        output.out(`${String(r.id).padStart(4)}  ${r.status.padEnd(11)} ${r.mode.padEnd(9)} ${fmt(r.summary.bestValidationLoss).padStart(10)} ${fmt(r.summary.lastTrainLoss).padStart(10)} ${rate.padStart(10)}  ${r.createdAt.slice(0, 16).replace('T', ' ')}  ${r.name}`);
      }
      return 0;
    }
    if ((RUN_CONTROL_ACTIONS as readonly string[]).includes(sub)) return await controlRun(store, idArgument(id, 'ID'), sub as RunControlAction, output);
    if (sub !== 'show') throw new UsageError(`unknown subcommand '${sub}' (list, show, pause, resume or cancel)`);
    const run = store.runs.get(idArgument(id, 'ID'));
    const checkpoints = store.checkpoints.listByRun(run.id);
    const metrics = store.metrics.range(run.id, { maxPoints: 20 });
    if (output.json) return output.out(JSON.stringify({ ...run, checkpoints, metrics })), 0;
    showRun(run, output);
    output.out(`checkpoints (${checkpoints.length})`);
    for (const c of checkpoints) output.out(`  ${String(c.id).padStart(4)}  epoch ${c.epoch} step ${c.step}  validation ${fmt(c.validationLoss)}  ${formatBytes(c.sizeBytes)}${c.isBest ? '  ← best' : ''}`);
    output.out(`loss curve (${metrics.length} points, downsampled)`);
    for (const m of metrics) output.out(`  step ${String(m.step).padStart(7)}  train ${fmt(m.trainLoss)}  validation ${fmt(m.validationLoss)}`);
    return 0;
  } finally {
    store.close();
  }
}

/** How long `quadra runs pause` waits for the process training the run to take the request (it looks twice a second). */
const CONTROL_WAIT_MS = 5000;

/** Asks the process that trains the run, through the database, and says what became of it. */
async function controlRun(store: Store, runId: number, action: RunControlAction, output: Output): Promise<number> {
  const { run, taken } = await requestRunControl(store, runId, action, { waitMs: CONTROL_WAIT_MS });
  if (output.json) return output.out(JSON.stringify({ ...run, action, taken })), 0;
  const owner = run.ownerPid === null ? 'its process' : `its process (pid ${run.ownerPid})`;
  if (!taken) output.out(`run ${run.id}: asked to ${action}; ${owner} has not taken the request yet, and will when it next looks`);
  else if (action === 'cancel' && isLiveStatus(run.status)) {
    output.out(`run ${run.id}: cancelling — ${owner} stops it after the current step and keeps a checkpoint`);
  } else output.out(`run ${run.id}: ${run.status}`);
  return 0;
}

const ORIGIN_LABELS: Record<CheckpointContents['origin'], string> = {
  quadra: 'Quadra checkpoint',
  pytorch: 'PyTorch state_dict',
  pth: "the original project's .pth",
};

function showRun(run: RunRecord, output: Output): void {
  const s = run.summary;
  output.out(`run ${run.id}: ${run.name}`);
  output.out(`  status     ${run.status}${s.failureReason ? ` — ${s.failureReason}` : ''}`);
  const config = run.config as { importedFrom?: unknown; origin?: unknown; engine?: { model?: Record<string, unknown> } } | null;
  if (config && typeof config.importedFrom === 'string') {
    const m = config.engine?.model ?? {};
    output.out(`  imported   from ${config.importedFrom} (${String(config.origin)}); model fieldSize ${String(m.fieldSize)}, hiddenSize ${String(m.hiddenSize)}, spikingHiddenSize ${String(m.spikingHiddenSize)}`);
  } else {
    output.out(`  mode       ${run.mode}, ${run.workers} worker(s), backend ${run.backend}, devices ${run.devices.join('; ')}`);
  }
  output.out(`  created    ${run.createdAt}${run.startedAt ? `, started ${run.startedAt}` : ''}${run.endedAt ? `, ended ${run.endedAt}` : ''}`);
  output.out(`  progress   ${s.steps} steps, ${s.epochs} epochs${s.durationS === null ? '' : ` in ${s.durationS.toFixed(1)} s`}${s.samplesPerSec === null ? '' : `, ${Math.round(s.samplesPerSec)} samples/s`}`);
  output.out(`  loss       last ${fmt(s.lastTrainLoss)}, best validation ${fmt(s.bestValidationLoss)}`);
  output.out(`  config     ${JSON.stringify(run.config)}`);
}

export async function checkpoints({ options, positionals }: Parsed, output: Output): Promise<number> {
  const [sub, arg] = positionals;
  const store = openCliStore(options);
  try {
    if (sub === 'list') {
      const runIds = arg === undefined ? store.runs.list().map((r) => r.id) : [idArgument(arg, 'RUN_ID')];
      const list = runIds.flatMap((id) => store.checkpoints.listByRun(id));
      if (output.json) return output.out(JSON.stringify(list)), 0;
      if (list.length === 0) return output.out('no checkpoints yet'), 0;
      for (const c of list) output.out(`${String(c.id).padStart(4)}  run ${c.runId}  epoch ${c.epoch} step ${c.step}  validation ${fmt(c.validationLoss)}  ${formatBytes(c.sizeBytes)}  ${c.createdAt.slice(0, 19)}${c.isBest ? '  ← best' : ''}`);
      return 0;
    }
    if (sub === 'export') {
      const id = idArgument(arg, 'ID');
      const out = options.out as string | undefined;
      if (!out) throw new UsageError('export needs --out PATH');
      const format = (options.format as ExportFormat | undefined) ?? formatFromPath(out);
      const { files } = await exportStoredCheckpoint(store, id, format, Boolean(options.fp16));
      const bytes = files.reduce((sum, f) => sum + f.bytes.length, 0);
      if (format === 'torchrun') {
        mkdirSync(out, { recursive: true });
        for (const f of files) {
          mkdirSync(path.dirname(path.join(out, f.path)), { recursive: true });
          await writeFileAtomic(path.join(out, f.path), f.bytes);
        }
      } else {
        await writeFileAtomic(out, files[0]!.bytes);
      }
      if (output.json) output.out(JSON.stringify({ id, out, format, bytes, files: files.map((f) => f.path), dtype: options.fp16 ? 'F16' : 'F32' }));
      else output.out(`checkpoint ${id} written to ${out} as ${format} (${format === 'torchrun' ? `${files.length} files, ` : ''}${formatBytes(bytes)}${options.fp16 ? ', F16' : ''})`);
      return 0;
    }
    if (sub === 'import') {
      if (!arg) throw new UsageError('import needs a FILE');
      const { contents, bytes } = await readCheckpointFile(arg);
      const imported = importCheckpointBytes(store, arg, bytes, options.name as string | undefined);
      if (output.json) output.out(JSON.stringify({ ...imported, origin: contents.origin, model: contents.model }));
      else output.out(`imported ${arg} (${ORIGIN_LABELS[contents.origin]}) as checkpoint ${imported.checkpointId} of run ${imported.runId}`);
      return 0;
    }
    throw new UsageError(`unknown subcommand '${sub}' (list, export or import)`);
  } finally {
    store.close();
  }
}

export async function datasets({ options, positionals }: Parsed, output: Output): Promise<number> {
  const [sub, file] = positionals;
  const store = openCliStore(options);
  try {
    if (sub === 'list') {
      const list = store.datasets.list();
      if (output.json) return output.out(JSON.stringify(list)), 0;
      if (list.length === 0) return output.out('no datasets yet — `quadra datasets import FILE` (samples: resources/datasets/)'), 0;
      for (const d of list) output.out(`${String(d.id).padStart(4)}  ${d.name.padEnd(32)} ${d.kind.padEnd(9)} ${String(d.rows).padStart(8)} × ${String(d.width).padEnd(5)} ${d.sha256.slice(0, 12)}  ${d.sourcePath ?? ''}`);
      return 0;
    }
    if (sub === 'import') {
      if (!file) throw new UsageError('import needs a FILE');
      const width = options['field-size'] as number | undefined;
      const loaded = await loadDatasetFile(file, { ...(width === undefined ? {} : { expectedWidth: width, textWidth: width }) });
      const record = importedRecord(store, loaded, options.name as string | undefined);
      if (output.json) output.out(JSON.stringify(record));
      else output.out(`dataset ${record.id} "${record.name}": ${record.rows} rows × ${record.width} (${record.kind})${loaded.skippedLines ? `, ${loaded.skippedLines} lines without words skipped` : ''}`);
      return 0;
    }
    throw new UsageError(`unknown subcommand '${sub}' (list or import)`);
  } finally {
    store.close();
  }
}
