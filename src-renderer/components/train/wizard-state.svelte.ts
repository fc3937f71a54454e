import type { WarmStart } from '../../lib/state/warm-start.svelte';
import { API_REQUESTS, type ApiRequest, type DatasetPreview, type HardwareReport } from '../../../src-shared/api';
import { EngineConfigSchema, ModelConfigSchema, type BackendId, type SpikeGradient } from '../../../src-shared/engine-config';
import { RUN_MODES, type DatasetRecord, type RunMode } from '../../../src-shared/records';
import { DEFAULT_VALIDATION_FRACTION, MAX_SHARED_MEMORY_WORKERS, SyntheticRowsSchema, validationRowCount } from '../../../src-shared/run-config';
import type { ApiClient, UploadedFile } from '../../lib/api';
import { Loadable } from '../../lib/state/loadable.svelte';
import { errorMessage } from '../../lib/errors';
import { fieldError } from './field-rules';

export const STEPS = [
  { id: 'data', label: 'Data' },
  { id: 'model', label: 'Model' },
  { id: 'hardware', label: 'Hardware' },
  { id: 'schedule', label: 'Schedule' },
  { id: 'review', label: 'Review' },
] as const;
export type StepId = (typeof STEPS)[number]['id'];

export type DataSource = 'synthetic' | 'registered' | 'file';

/** What the file chosen for import holds once the workstation has checked it. */
export interface CheckedFile {
  name: string;
  /** The file as the workstation has it: uploaded (serve mode) or its bytes (the app). */
  source: UploadedFile;
  preview: DatasetPreview;
}

const START = API_REQUESTS.startRun.shape;
const MODEL = ModelConfigSchema.shape;
const IMPORT_NAME = API_REQUESTS.importDataset.shape.name;

type Field =
  | 'syntheticRows'
  | 'dataset'
  | 'file'
  | 'importName'
  | 'fieldSize'
  | 'hiddenSize'
  | 'spikingHiddenSize'
  | 'spikingSteps'
  | 'dropout'
  | 'backend'
  | 'precision'
  | 'mode'
  | 'workers'
  | 'batchSize'
  | 'epochs'
  | 'checkpointEveryEpochs'
  | 'keepLastCheckpoints'
  | 'validationFraction'
  | 'runName';

const FIELDS_BY_STEP: Record<StepId, readonly Field[]> = {
  data: ['syntheticRows', 'dataset', 'file', 'importName'],
  model: ['fieldSize', 'hiddenSize', 'spikingHiddenSize', 'spikingSteps', 'dropout'],
  hardware: ['backend', 'precision', 'mode', 'workers', 'batchSize'],
  schedule: ['epochs', 'checkpointEveryEpochs', 'keepLastCheckpoints', 'validationFraction', 'runName'],
  review: [],
};

/**
 * The training wizard: every choice, each field's error (from the same zod schemas the
 * workstation validates with, plus the checks that span steps), and starting the run.
 */
export class TrainWizard {
  #api: ApiClient;
  readonly hardware = new Loadable<HardwareReport>(() => this.#api.call('getHardware', {}));
  readonly datasets = new Loadable<DatasetRecord[]>(() => this.#api.call('listDatasets', {}));

  step = $state(0);
  /** The furthest step reached: the indicator lets the user jump back to any step up to it. */
  reached = $state(0);

  source = $state<DataSource>('synthetic');
  syntheticRows = $state<number | null>(1024);
  datasetName = $state('');
  checkedFile = $state.raw<CheckedFile | null>(null);
  fileError = $state<string | null>(null);
  checkingFile = $state<string | null>(null);
  importName = $state('');

  fieldSize = $state<number | null>(100);
  hiddenSize = $state<number | null>(256);
  spikingHiddenSize = $state<number | null>(128);
  spikingSteps = $state<number | null>(10);
  dropout = $state<number | null>(0.1);
  spikeGradient = $state<SpikeGradient>('surrogate');

  backend = $state<'auto' | BackendId>('auto');
  /** 'mixed': f16 matrix products with f32 accumulation and loss scaling (webgpu only). */
  precision = $state<'fp32' | 'mixed'>('fp32');
  mode = $state<RunMode>('single');
  workers = $state<number | null>(1);
  batchSize = $state<number | null>(64);

  epochs = $state<number | null>(10);
  checkpointEveryEpochs = $state<number | null>(5);
  keepLastCheckpoints = $state<number | null>(3);
  validationFraction = $state<number | null>(DEFAULT_VALIDATION_FRACTION);
  runName = $state('');

  /** Train from a checkpoint's weights (Checkpoints → Train from this checkpoint), or from scratch. */
  warmStart = $state.raw<WarmStart | null>(null);
  /** With a warm start: weights only, fresh AdamW moments and step 0. */
  resetOptimizer = $state(false);

  /** What Start is doing right now ("Importing file…"), or null. */
  starting = $state<string | null>(null);
  startError = $state<string | null>(null);
  startedRunId = $state<number | null>(null);

  #hardwareTouched = false;
  #fileCheck = 0;

  constructor(api: ApiClient) {
    this.#api = api;
  }

  /** Loads the machine's report (pre-filling the hardware step once) and the registered datasets. */
  async load(): Promise<void> {
    await Promise.all([this.datasets.refresh(), this.loadHardware()]);
  }

  async loadHardware(): Promise<void> {
    await this.hardware.refresh();
    if (!this.#hardwareTouched && this.hardware.value) this.useRecommended();
  }

  /** Registered datasets that can be trained on by name (synthetic records are made from synthetic:N). */
  readonly trainableDatasets = $derived((this.datasets.value ?? []).filter((d) => d.kind !== 'synthetic'));
  readonly selectedDataset = $derived(this.trainableDatasets.find((d) => d.name === this.datasetName) ?? null);
  readonly gpuCount = $derived(this.hardware.value?.hardware.gpus.length ?? 0);

  /** The chosen data's name, row count and (for numbers, not text) fixed row width. */
  readonly data = $derived.by((): { label: string; rows: number | null; fixedWidth: number | null } => {
    if (this.source === 'synthetic') return { label: `synthetic:${this.syntheticRows ?? '?'}`, rows: this.syntheticRows, fixedWidth: null };
    if (this.source === 'registered') {
      const d = this.selectedDataset;
      return d ? { label: d.name, rows: d.rows, fixedWidth: d.kind === 'text' ? null : d.width } : { label: '—', rows: null, fixedWidth: null };
    }
    const f = this.checkedFile;
    return f ? { label: f.name, rows: f.preview.rows, fixedWidth: f.preview.kind === 'text' ? null : f.preview.width } : { label: '—', rows: null, fixedWidth: null };
  });

  /** Numbers files fix the field size; text is hashed to whatever width the model has. */
  readonly widthMismatch = $derived(
    this.data.fixedWidth !== null && typeof this.fieldSize === 'number' && this.data.fixedWidth !== this.fieldSize
      ? { width: this.data.fixedWidth, fieldSize: this.fieldSize }
      : null,
  );

  /** Rows left for training after the validation split (the split's own arithmetic). */
  readonly trainingRows = $derived.by(() => {
    const { rows } = this.data;
    if (rows === null || this.validationFraction === null) return null;
    try {
      return rows - validationRowCount(rows, this.validationFraction);
    } catch {
      return null; // the rows' or the fraction's own field error says what is wrong
    }
  });

  /** One batch must fit in the training rows (the sampler refuses less, with lastBatch 'drop'). */
  readonly #tooFewRows = $derived(
    this.trainingRows !== null && typeof this.batchSize === 'number' && Number.isInteger(this.batchSize) && this.batchSize > this.trainingRows
      ? { rows: this.trainingRows.toLocaleString('en-US'), batch: this.batchSize }
      : null,
  );

  readonly errors = $derived.by((): Record<Field, string | null> => {
    const report = this.hardware.value;
    const multiWorker = this.mode !== 'single';
    const workersError = multiWorker ? fieldError(START.workers, this.workers, 'workers') : null;
    const batchError = fieldError(EngineConfigSchema.shape.batchSize, this.batchSize, 'batchSize');
    const mismatch = this.widthMismatch;
    return {
      syntheticRows: this.source === 'synthetic' ? fieldError(SyntheticRowsSchema, this.syntheticRows, 'rows') : null,
      dataset:
        this.source !== 'registered'
          ? null
          : !this.selectedDataset
            ? 'choose a registered dataset'
            : mismatch
              ? `${this.selectedDataset.name} has rows of ${mismatch.width} values but the field size is ${mismatch.fieldSize}`
              : null,
      file:
        this.source !== 'file'
          ? null
          : this.checkingFile
            ? 'the file is still being checked'
            : this.fileError
              ? this.fileError
              : !this.checkedFile
                ? 'choose a file to import'
                : mismatch
                  ? `${this.checkedFile.name}: rows have ${mismatch.width} values but the field size is ${mismatch.fieldSize}`
                  : null,
      importName: this.source === 'file' && this.importName !== '' ? fieldError(IMPORT_NAME, this.importName, 'name') : null,
      fieldSize:
        fieldError(MODEL.fieldSize, this.fieldSize, 'fieldSize') ??
        (mismatch ? `fieldSize must be ${mismatch.width}: ${this.data.label} has rows of ${mismatch.width} values` : null),
      hiddenSize: fieldError(MODEL.hiddenSize, this.hiddenSize, 'hiddenSize'),
      spikingHiddenSize: fieldError(MODEL.spikingHiddenSize, this.spikingHiddenSize, 'spikingHiddenSize'),
      spikingSteps: fieldError(MODEL.spikingSteps, this.spikingSteps, 'spikingSteps'),
      dropout: fieldError(MODEL.dropout, this.dropout, 'dropout'),
      backend:
        this.backend !== 'auto' && report && !report.backends.some((b) => b.id === this.backend && b.available)
          ? `the ${this.backend} backend is not available on this machine`
          : null,
      precision:
        this.precision === 'mixed' && this.backend !== 'webgpu'
          ? 'mixed precision runs on the webgpu backend only: choose webgpu above, or fp32'
          : null,
      mode:
        this.mode === 'multi-gpu' && report && this.gpuCount === 0
          ? `multi-gpu mode needs NVIDIA GPUs: ${report.hardware.nvidiaSmi.available ? 'nvidia-smi lists none' : report.hardware.nvidiaSmi.reason}`
          : null,
      workers:
        workersError ??
        (this.mode === 'multi-gpu' && report && typeof this.workers === 'number' && this.workers > this.gpuCount
          ? `workers must be at most ${this.gpuCount} in multi-gpu mode: one worker per GPU`
          : multiWorker && this.backend === 'simd' && typeof this.workers === 'number' && this.workers > MAX_SHARED_MEMORY_WORKERS
            ? `workers must be at most ${MAX_SHARED_MEMORY_WORKERS} with the simd backend: its worker threads share one memory for the gradient exchange`
            : null),
      batchSize:
        batchError ??
        (multiWorker && !workersError && typeof this.workers === 'number' && typeof this.batchSize === 'number' && this.batchSize < this.workers
          ? `batchSize must be at least ${this.workers}: the batch is split across the workers and each needs a row per step`
          : this.#tooFewRows && `batchSize must be at most ${this.#tooFewRows.rows}: that many rows are left for training after the validation split`),
      epochs: fieldError(START.epochs, this.epochs, 'epochs'),
      checkpointEveryEpochs: fieldError(START.checkpointEveryEpochs, this.checkpointEveryEpochs, 'checkpointEveryEpochs'),
      keepLastCheckpoints: fieldError(START.keepLastCheckpoints, this.keepLastCheckpoints, 'keepLastCheckpoints'),
      validationFraction:
        fieldError(START.validationFraction, this.validationFraction, 'validationFraction') ??
        (this.#tooFewRows && `validationFraction leaves ${this.#tooFewRows.rows} training rows, fewer than one batch of ${this.#tooFewRows.batch}`),
      runName: fieldError(START.name, this.runName, 'name'),
    };
  });

  /** Each step's first problem (null when all its fields are valid). */
  readonly stepProblems = $derived(STEPS.map((s) => FIELDS_BY_STEP[s.id].map((field) => this.errors[field]).find((e) => e !== null) ?? null));
  readonly stepValid = $derived(this.stepProblems.map((problem) => problem === null));
  readonly currentStep = $derived(STEPS[this.step]!.id);
  readonly allValid = $derived(this.stepValid.every(Boolean));
  /** Why Next (or, on the review, Start) is disabled: the first problem in the way, or null. */
  readonly blockedBy = $derived(
    this.currentStep === 'review'
      ? this.allValid
        ? null
        : 'an earlier step has a problem — open it from the steps above'
      : (this.stepProblems[this.step] ?? null),
  );

  /** A step can be opened when every step before it is valid and it has been reached (or is next). */
  canVisit(index: number): boolean {
    return index <= this.reached + 1 && this.stepValid.slice(0, index).every(Boolean);
  }

  goTo(index: number): void {
    if (index < 0 || index >= STEPS.length || !this.canVisit(index)) return;
    this.step = index;
    this.reached = Math.max(this.reached, index);
  }

  next(): void {
    if (this.stepValid[this.step]) this.goTo(this.step + 1);
  }

  back(): void {
    this.goTo(this.step - 1);
  }

  setMode(mode: RunMode): void {
    this.#hardwareTouched = true;
    this.mode = mode;
    const report = this.hardware.value;
    if (mode === 'single') this.workers = 1;
    else if (mode === 'multi-gpu') this.workers = Math.max(1, this.gpuCount);
    else this.workers = report ? (report.recommended.mode === 'multi-cpu' ? report.recommended.workers : Math.max(2, report.hardware.cpu.physicalCores)) : 2;
  }

  /** Marks the hardware step as edited, so a late hardware report does not overwrite it. */
  touchHardware(): void {
    this.#hardwareTouched = true;
  }

  useRecommended(): void {
    const recommended = this.hardware.value?.recommended;
    if (!recommended) return;
    this.mode = (RUN_MODES as readonly string[]).includes(recommended.mode) ? (recommended.mode as RunMode) : 'single';
    this.workers = this.mode === 'single' ? 1 : recommended.workers;
    this.batchSize = recommended.batchSize;
  }

  chooseSource(source: DataSource): void {
    this.source = source;
    if (source === 'registered' && !this.datasetName) this.datasetName = this.trainableDatasets[0]?.name ?? '';
  }

  /** Reads the chosen file and has the workstation check it completely (nothing is imported yet). */
  async checkFile(file: File | null): Promise<void> {
    const check = ++this.#fileCheck;
    this.checkedFile = null;
    this.fileError = null;
    if (!file) return;
    this.checkingFile = `Checking ${file.name}…`;
    try {
      // Streamed to the server once (serve mode); the preview and the import both read that upload.
      const source = await this.#api.upload(file);
      const fieldSize = typeof this.fieldSize === 'number' && Number.isInteger(this.fieldSize) && this.fieldSize >= 1 ? this.fieldSize : undefined;
      const preview = await this.#api.call('previewDataset', { fileName: file.name, ...source, ...(fieldSize === undefined ? {} : { fieldSize }) });
      if (check !== this.#fileCheck) return;
      this.checkedFile = { name: file.name, source, preview };
      if (this.importName === '') this.importName = file.name;
    } catch (error) {
      if (check !== this.#fileCheck) return;
      this.fileError = errorMessage(error);
    } finally {
      if (check === this.#fileCheck) this.checkingFile = null;
    }
  }

  /** Starts the next run from `warm`: its model sizes are taken over (the weights fix them). */
  useWarmStart(warm: WarmStart): void {
    this.warmStart = warm;
    this.resetOptimizer = false;
    const m = warm.model;
    if (m.fieldSize !== undefined) this.fieldSize = m.fieldSize;
    if (m.hiddenSize !== undefined) this.hiddenSize = m.hiddenSize;
    if (m.spikingHiddenSize !== undefined) this.spikingHiddenSize = m.spikingHiddenSize;
    if (m.spikingSteps !== undefined) this.spikingSteps = m.spikingSteps;
    if (m.dropout !== undefined) this.dropout = m.dropout;
    if (m.spikeGradient !== undefined) this.spikeGradient = m.spikeGradient;
    this.startedRunId = null;
    this.step = 0;
  }

  clearWarmStart(): void {
    this.warmStart = null;
    this.resetOptimizer = false;
  }

  useDataWidth(): void {
    if (this.widthMismatch) this.fieldSize = this.widthMismatch.width;
  }

  /** The startRun request for the chosen settings: `dataset` is synthetic:N or a registered dataset's id. */
  request(dataset: ApiRequest<'startRun'>['dataset']): ApiRequest<'startRun'> {
    const n = (value: number | null) => value ?? Number.NaN;
    return {
      ...(this.runName.trim() ? { name: this.runName.trim() } : {}),
      mode: this.mode,
      workers: this.mode === 'single' ? 1 : n(this.workers),
      backend: this.backend,
      engine: {
        batchSize: n(this.batchSize),
        precision: this.precision,
        model: {
          fieldSize: n(this.fieldSize),
          hiddenSize: n(this.hiddenSize),
          spikingHiddenSize: n(this.spikingHiddenSize),
          spikingSteps: n(this.spikingSteps),
          dropout: n(this.dropout),
          spikeGradient: this.spikeGradient,
        },
      },
      epochs: n(this.epochs),
      dataset,
      validationFraction: n(this.validationFraction),
      checkpointEveryEpochs: n(this.checkpointEveryEpochs),
      keepLastCheckpoints: n(this.keepLastCheckpoints),
      ...(this.warmStart ? { initFrom: { checkpointId: this.warmStart.checkpointId }, resetOptimizer: this.resetOptimizer } : {}),
    };
  }

  /** Imports the chosen file if there is one, then starts the run; resolves with its id, or null when it did not start. */
  async start(): Promise<number | null> {
    if (!this.allValid || this.starting) return null;
    this.startError = null;
    try {
      let dataset: ApiRequest<'startRun'>['dataset'];
      if (this.source === 'synthetic') dataset = `synthetic:${this.syntheticRows}`;
      else if (this.source === 'registered') dataset = { datasetId: this.selectedDataset!.id };
      else {
        const file = this.checkedFile!;
        this.starting = `Importing ${file.name}…`;
        const record = await this.#api.call('importDataset', {
          fileName: file.name,
          ...file.source,
          name: this.importName.trim() || file.name,
          fieldSize: this.fieldSize!,
        });
        dataset = { datasetId: record.id };
        void this.datasets.refresh();
      }
      this.starting = 'Starting the run…';
      const { runId } = await this.#api.call('startRun', this.request(dataset));
      this.startedRunId = runId;
      return runId;
    } catch (error) {
      this.startError = errorMessage(error);
      return null;
    } finally {
      this.starting = null;
    }
  }

  /** After a start: set up another run, keeping every choice. */
  another(): void {
    this.startedRunId = null;
    this.startError = null;
    this.step = 0;
  }
}
