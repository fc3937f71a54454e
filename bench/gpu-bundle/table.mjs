// Part of the GPU benchmark bundle: run.sh calls it last, on the bundled Node.
//   node table.mjs LOGS_DIR RESULTS_JSON [BUILD_INFO_JSON]
// Reads LOGS_DIR/cases.tsv (one line per command: name, backend, precision, batch, exit code,
// seconds, note) and each command's NAME.json / NAME.log; prints one table and writes RESULTS_JSON.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [logs, resultsFile, buildInfoFile] = process.argv.slice(2);
if (!logs || !resultsFile) {
  process.stderr.write('usage: node table.mjs LOGS_DIR RESULTS_JSON [BUILD_INFO_JSON]\n');
  process.exit(2);
}

const read = (file) => (existsSync(file) ? readFileSync(file, 'utf8') : '');

/** The last line of a command's stdout that parses as a JSON object (both CLIs print exactly one). */
function lastJson(text) {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('{'));
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      return JSON.parse(lines[i]);
    } catch {
      // not this line
    }
  }
  return null;
}

/** The last meaningful stderr line, for a failure without a JSON error. */
function lastLogLine(text) {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !/^bench\b.*(%|done)$/.test(l) && !/XDG_RUNTIME_DIR/.test(l));
  return lines.at(-1) ?? '';
}

function row(fields) {
  const [name, backend, precision, batchText, rcText, secondsText, note] = fields;
  const base = { backend, precision, batch: Number(batchText), seconds: Number(secondsText) };
  if (rcText === 'skip') return { ...base, status: 'skipped', note };
  const rc = Number(rcText);
  const out = lastJson(read(path.join(logs, `${name}.json`)));
  if (rc === 124 || rc === 137) return { ...base, status: 'timed out', note: `killed after ${secondsText}s` };
  if (out?.error) return { ...base, status: 'failed', note: `${out.error.code}: ${out.error.message}` };
  // quadra bench --backend webgpu reports per worker count; the PyTorch reference reports directly.
  const result = out?.results?.[0] ?? out;
  if (rc !== 0 || !result?.trainSamplesPerSec) {
    return { ...base, status: 'failed', note: `exit ${rc}: ${lastLogLine(read(path.join(logs, `${name}.log`)))}` };
  }
  // quadra bench times steps from one to the next: with no warm-up step one repeat has no start.
  if (!Number.isFinite(result.trainSamplesPerSec.median)) {
    return { ...base, status: 'failed', note: 'no training time measured (QUADRA_BENCH_WARMUP must be at least 1)' };
  }
  return {
    ...base,
    status: 'ok',
    train: result.trainSamplesPerSec,
    forward: result.forwardSamplesPerSec,
    msPerStep: (result.msPerStep ?? result.msPerTrainStep)?.median,
    ...(out.device ? { device: out.device } : {}),
    ...(out.torch ? { torch: out.torch } : {}),
  };
}

const cases = read(path.join(logs, 'cases.tsv'))
  .split('\n')
  .filter(Boolean)
  .map((line) => row(line.split('\t')));

const hardware = lastJson(read(path.join(logs, 'hardware.json')));
const webgpuStatus = hardware?.backends?.find?.((b) => b.id === 'webgpu') ?? null;
const nvidiaSmi = read(path.join(logs, 'nvidia-smi.txt')).trim();

/** The table stays readable; the whole message is in the JSON and the command's log. */
const clip = (text, max = 110) => (text.length <= max ? text : `${text.slice(0, max - 1)}…`);
const fmt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '');
const header = ['backend', 'precision', 'batch', 'train samples/s (median)', 'min–max', 'forward samples/s', 'ms/step', 'status'];
const body = cases.map((r) => [
  r.backend,
  r.precision,
  String(r.batch),
  fmt(r.train?.median),
  r.train ? `${fmt(r.train.min)}–${fmt(r.train.max)}` : '',
  fmt(r.forward?.median),
  Number.isFinite(r.msPerStep) ? r.msPerStep.toFixed(2) : '',
  r.status === 'ok' ? 'ok' : clip(`${r.status}${r.note ? `: ${r.note}` : ''}`),
]);
const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
const numeric = new Set([2, 3, 4, 5, 6]);
const line = (cells) => `| ${cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`;
const settings = {
  iterations: Number(process.env.QUADRA_BENCH_ITERATIONS),
  repeats: Number(process.env.QUADRA_BENCH_REPEATS),
  warmup: Number(process.env.QUADRA_BENCH_WARMUP),
  spikeGradient: process.env.QUADRA_BENCH_SPIKE_GRADIENT,
  batches: process.env.QUADRA_BENCH_BATCHES,
  precisions: process.env.QUADRA_BENCH_PRECISIONS,
};

const out = [];
out.push(`== Results: ${os.hostname()}; ${settings.repeats} × ${settings.iterations} steps after ${settings.warmup} warm-up; spike gradient ${settings.spikeGradient}`);
if (nvidiaSmi) out.push(`GPU: ${nvidiaSmi.split('\n').join('; ')}`);
if (webgpuStatus) out.push(`webgpu (quadra hardware): ${webgpuStatus.reason}`);
out.push(`Vulkan: ${process.env.QUADRA_BENCH_ICD_NOTE ?? 'unknown'}`);
out.push('');
out.push(line(header));
out.push(`|${widths.map((w, i) => (numeric.has(i) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`);
for (const b of body) out.push(line(b));
process.stdout.write(`${out.join('\n')}\n`);

const buildInfo = buildInfoFile && existsSync(buildInfoFile) ? JSON.parse(readFileSync(buildInfoFile, 'utf8')) : null;
const results = {
  generatedAt: new Date().toISOString(),
  host: os.hostname(),
  cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
  nvidiaSmi: nvidiaSmi || null,
  vulkan: process.env.QUADRA_BENCH_ICD_NOTE ?? null,
  webgpu: webgpuStatus,
  settings,
  build: buildInfo,
  rows: cases,
  hardware,
};
writeFileSync(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
process.stdout.write(`\nwritten: ${resultsFile} (each command's output and stderr: ${logs})\n`);
process.exit(cases.some((r) => r.status === 'ok') ? 0 : 1);
