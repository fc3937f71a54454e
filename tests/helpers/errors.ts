import { expect } from 'vitest';
import { QuadraError } from '../../src-shared/errors';

/** `caught` checked to be a QuadraError with this code and every fragment in its message. */
function expectQuadraErrorValue(caught: unknown, code: string, fragments: readonly string[]): QuadraError {
  expect(caught).toBeInstanceOf(QuadraError);
  const error = caught as QuadraError;
  expect(error.code, error.message).toBe(code);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
  return error;
}

/** The QuadraError `action` throws or rejects with, checked for its code and every message fragment. */
export async function expectQuadraError(action: () => unknown, code: string, ...fragments: string[]): Promise<QuadraError> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  return expectQuadraErrorValue(caught, code, fragments);
}

/** The same for a function that throws synchronously, for tests that stay synchronous. */
export function expectQuadraErrorSync(action: () => unknown, code: string, ...fragments: string[]): QuadraError {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  return expectQuadraErrorValue(caught, code, fragments);
}
