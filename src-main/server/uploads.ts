import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { UPLOAD_ID_PATTERN } from '../../src-shared/api';
import { QuadraError } from '../../src-shared/errors';
import { formatBytes } from '../../src-shared/format';

/**
 * Serve mode's upload folder: `POST /upload` streams a request body to `<id>.upload` in a folder
 * the server chose, and API calls then name the file by that random id, never by a path. The store
 * keeps no state beyond the folder (a restarted server still finds a finished upload); files not
 * consumed within `ttlMs` are deleted.
 */

export const DEFAULT_UPLOAD_LIMIT_BYTES = 8 * 1024 ** 3;
export const DEFAULT_UPLOAD_TTL_MS = 60 * 60 * 1000;
/** An upload that sends nothing for this long is dropped (its partial file deleted). */
const IDLE_MS = 2 * 60 * 1000;

export interface UploadStoreOptions {
  dir: string;
  maxBytes?: number;
  ttlMs?: number;
}

/** What an upload ended as: the id, or why not (the HTTP status to answer with). */
export type UploadOutcome = { ok: true; uploadId: string; bytes: number } | { ok: false; status: 400 | 413 | 500; message: string };

export class UploadStore {
  readonly dir: string;
  readonly maxBytes: number;
  readonly ttlMs: number;
  #sweeper: NodeJS.Timeout;

  constructor(options: UploadStoreOptions) {
    this.dir = path.resolve(options.dir);
    this.maxBytes = options.maxBytes ?? DEFAULT_UPLOAD_LIMIT_BYTES;
    this.ttlMs = options.ttlMs ?? DEFAULT_UPLOAD_TTL_MS;
    mkdirSync(this.dir, { recursive: true });
    this.sweep();
    this.#sweeper = setInterval(() => this.sweep(), Math.max(1000, Math.min(this.ttlMs / 4, 10 * 60 * 1000)));
    this.#sweeper.unref();
  }

  /** The finished upload's file; NOT_FOUND for an id that never was, was consumed, or expired. */
  path(uploadId: string): string {
    const file = this.#file(uploadId, '.upload');
    let modified: number;
    try {
      modified = statSync(file).mtimeMs;
    } catch {
      throw notFound(uploadId);
    }
    if (Date.now() - modified > this.ttlMs) {
      rmSync(file, { force: true });
      throw notFound(uploadId);
    }
    return file;
  }

  /** The upload has been used (or moved away): forget it, deleting its file if still there. */
  consume(uploadId: string): void {
    rmSync(this.#file(uploadId, '.upload'), { force: true });
  }

  /**
   * Streams a request body into a new upload. Over `maxBytes` (by Content-Length, or counted as it
   * arrives) the partial file is deleted and the outcome is 413; an aborted body leaves nothing.
   */
  receive(req: IncomingMessage): Promise<UploadOutcome> {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > this.maxBytes) {
      return Promise.resolve(tooLarge(this.maxBytes));
    }
    const uploadId = randomBytes(16).toString('hex');
    const part = this.#file(uploadId, '.part');
    return new Promise((resolve) => {
      let received = 0;
      let settled = false;
      const out = createWriteStream(part, { flags: 'wx' });
      const finish = (outcome: UploadOutcome) => {
        if (settled) return;
        settled = true;
        req.setTimeout(0);
        if (outcome.ok) return resolve(outcome);
        // Answer only once the partial file is gone: the stream may still be opening it.
        req.unpipe(out);
        const removePart = () => {
          rmSync(part, { force: true });
          resolve(outcome);
        };
        if (out.closed) removePart();
        else {
          out.once('close', removePart);
          out.destroy();
        }
      };
      req.setTimeout(IDLE_MS, () => {
        finish({ ok: false, status: 400, message: `the upload sent nothing for ${IDLE_MS / 1000} s` });
        req.destroy();
      });
      req.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > this.maxBytes) finish(tooLarge(this.maxBytes));
      });
      req.on('aborted', () => finish({ ok: false, status: 400, message: 'the upload was aborted' }));
      req.on('error', () => finish({ ok: false, status: 400, message: 'the upload was aborted' }));
      req.on('close', () => {
        if (!req.complete) finish({ ok: false, status: 400, message: 'the upload was aborted' });
      });
      out.on('error', (error) => finish({ ok: false, status: 500, message: `could not store the upload (${(error as NodeJS.ErrnoException).code ?? error.message})` }));
      out.on('finish', () => {
        if (settled) return;
        if (!req.complete) return finish({ ok: false, status: 400, message: 'the upload was aborted' });
        try {
          renameSync(part, this.#file(uploadId, '.upload'));
          finish({ ok: true, uploadId, bytes: received });
        } catch (error) {
          finish({ ok: false, status: 500, message: `could not store the upload (${(error as NodeJS.ErrnoException).code ?? String(error)})` });
        }
      });
      req.pipe(out);
    });
  }

  /** Deletes uploads (and partial ones) older than the time to live. */
  sweep(): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    const now = Date.now();
    for (const name of names) {
      if (!/^[0-9a-f]{32}\.(upload|part)$/.test(name)) continue;
      const file = path.join(this.dir, name);
      try {
        if (now - statSync(file).mtimeMs > this.ttlMs) rmSync(file, { force: true });
      } catch {
        // Gone already (consumed, or another server sharing the folder swept it).
      }
    }
  }

  close(): void {
    clearInterval(this.#sweeper);
  }

  #file(uploadId: string, extension: '.upload' | '.part'): string {
    // The id is checked here as well as by the API's schema: it is the only part of the name a client gives.
    if (!UPLOAD_ID_PATTERN.test(uploadId)) throw new QuadraError('INVALID_ARGUMENT', 'uploadId: expected the id answered by POST /upload (32 hex digits)');
    return path.join(this.dir, `${uploadId}${extension}`);
  }
}

function notFound(uploadId: string): QuadraError {
  return new QuadraError('NOT_FOUND', `upload ${uploadId} does not exist (an upload is used once, and deleted when unused for a while): upload the file again`, { uploadId });
}

function tooLarge(maxBytes: number): UploadOutcome {
  return { ok: false, status: 413, message: `the file is larger than this server's upload limit of ${formatBytes(maxBytes)} (quadra serve --max-upload-mib)` };
}
