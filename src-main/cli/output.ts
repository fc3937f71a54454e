import { QuadraError } from '../../src-shared/errors';
export { formatBytes } from '../../src-shared/format';

/**
 * Where a command writes. Results go to stdout; progress and notes to stderr, so `--json` leaves
 * stdout with exactly one JSON document and pipes stay clean.
 */
export interface Output {
  json: boolean;
  out: (line: string) => void;
  note: (line: string) => void;
  progress: (label: string) => Progress;
}

export interface Progress {
  update(done: number, total: number, detail?: string): void;
  done(detail?: string): void;
}

export function createOutput(json: boolean, stream: NodeJS.WriteStream = process.stderr): Output {
  let bar: BarProgress | null = null;
  return {
    json,
    out: (line) => process.stdout.write(`${line}\n`),
    // A note printed while a bar is showing goes above it: clear the bar's line, print, redraw.
    note: (line) => {
      if (bar?.visible) {
        stream.write(`\r\x1b[2K${line}\n`);
        bar.redraw();
      } else {
        stream.write(`${line}\n`);
      }
    },
    progress: (label) => {
      if (!stream.isTTY) return new LineProgress(label, stream);
      bar = new BarProgress(label, stream);
      return bar;
    },
  };
}

/** A redrawn bar on a terminal, at most ~10 redraws a second. */
class BarProgress implements Progress {
  #last = 0;
  #line = '';
  visible = false;
  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream,
  ) {}

  redraw(): void {
    if (this.visible) this.stream.write(this.#line);
  }

  update(done: number, total: number, detail = ''): void {
    const now = Date.now();
    if (now - this.#last < 100 && done < total) return;
    this.#last = now;
    const width = 28;
    const fraction = total > 0 ? Math.min(1, done / total) : 0;
    const filled = Math.round(fraction * width);
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
    const pct = `${Math.floor(fraction * 100)}`.padStart(3);
    this.#line = `\r\x1b[2K${this.label} ${bar} ${pct}% ${detail}`;
    this.visible = true;
    this.stream.write(this.#line);
  }

  done(detail = ''): void {
    this.visible = false;
    this.stream.write(`\r\x1b[2K${this.label} done ${detail}\n`);
  }
}

/** Plain lines when not a terminal (logs, CI): one at each 10% and at the end. */
class LineProgress implements Progress {
  #lastDecile = -1;
  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream,
  ) {}

  update(done: number, total: number, detail = ''): void {
    const decile = total > 0 ? Math.floor((done / total) * 10) : 0;
    if (decile === this.#lastDecile || decile >= 10) return;
    this.#lastDecile = decile;
    this.stream.write(`${this.label}: ${decile * 10}% ${detail}`.trimEnd() + '\n');
  }

  done(detail = ''): void {
    this.stream.write(`${this.label}: done ${detail}`.trimEnd() + '\n');
  }
}

export function formatRate(samplesPerSec: number): string {
  return `${Math.round(samplesPerSec).toLocaleString('en-US')} samples/s`;
}

/** For errors thrown by our own checks that should read as file problems. */
export function fileError(file: string, problem: string): QuadraError {
  return new QuadraError('INVALID_FILE', `${file}: ${problem}`, { file });
}
