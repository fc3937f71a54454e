/** Error codes shared by every process; errors cross boundaries as `{ code, message, details }`. */
export const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'INVALID_CONFIG',
  'INVALID_FILE',
  'SHAPE_MISMATCH',
  'BACKEND_UNAVAILABLE',
  'UNSUPPORTED',
  'NOT_FOUND',
  /** Someone else holds it (e.g. another process trains that run). */
  'CONFLICT',
  'IO_ERROR',
  'DIVERGED',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorData {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export class QuadraError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'QuadraError';
    this.code = code;
    this.details = details;
  }

  toData(): ErrorData {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** Turns anything thrown into error data; unknown errors keep their message under INTERNAL. */
export function toErrorData(error: unknown): ErrorData {
  if (error instanceof QuadraError) return error.toData();
  if (error instanceof Error) return { code: 'INTERNAL', message: error.message };
  return { code: 'INTERNAL', message: String(error) };
}
