import { describe, expect, it } from 'vitest';
import { API_METHOD_NAMES, API_METHODS_MATCH, isApiMethod, validateRequest } from '../../src-shared/api';
import { QuadraError } from '../../src-shared/errors';

describe('WorkstationApi requests', () => {
  it('lists the same methods in the schema table and the interface', () => {
    expect(API_METHODS_MATCH).toBe(true);
    expect(API_METHOD_NAMES).toContain('startRun');
    expect(isApiMethod('startRun')).toBe(true);
    expect(isApiMethod('toString')).toBe(false);
  });

  it('accepts a wizard request and fills nothing it was not given', () => {
    const request = validateRequest('startRun', { mode: 'multi-cpu', backend: 'auto', engine: { batchSize: 64 }, epochs: 5, dataset: 'synthetic:1024' });
    expect(request).toMatchObject({ mode: 'multi-cpu', epochs: 5, engine: { batchSize: 64 } });
    expect(request.workers).toBeUndefined();
  });

  it('refuses bad requests naming every field at fault', () => {
    try {
      validateRequest('startRun', { mode: 'quantum', backend: 'auto', engine: { batchSize: 0 }, epochs: 1.5, dataset: '' });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(QuadraError);
      const e = error as QuadraError;
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toContain('startRun: ');
      for (const field of ['mode', 'engine.batchSize', 'epochs', 'dataset']) expect(e.details?.fields).toContain(field);
    }
    expect(() => validateRequest('controlRun', { runId: 3, action: 'explode' })).toThrow(/action/);
  });

  it('never lets a client name a server path or a dataset by name: synthetic:N or { datasetId } only', () => {
    const base = { mode: 'single', backend: 'auto', engine: {}, epochs: 1 };
    for (const dataset of ['/any/path/secret.csv', '../../etc/passwd', 'C:\\Users\\me\\data.npy', 'numeric', 'synthetic:0', 'synthetic:1e9', { datasetId: 0 }, { path: '/x' }]) {
      expect(() => validateRequest('startRun', { ...base, dataset }), JSON.stringify(dataset)).toThrow(/dataset/);
    }
    expect(validateRequest('startRun', { ...base, dataset: { datasetId: 3 } }).dataset).toEqual({ datasetId: 3 });
    expect(validateRequest('startRun', { ...base, dataset: 'synthetic:512' }).dataset).toBe('synthetic:512');
    expect(() => validateRequest('startRun', { ...base, dataset: 'synthetic:8', initFrom: { file: '/home/me/x.pth' } })).toThrow(/initFrom/);
    expect(() => validateRequest('startRun', { ...base, dataset: 'synthetic:8', workers: 30.5 })).toThrow(/workers must be a whole number/);
    expect(() => validateRequest('importDataset', { fileName: 'a.csv', bytes: 'not bytes' })).toThrow(/bytes/);
  });
});
