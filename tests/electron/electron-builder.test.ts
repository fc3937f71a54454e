import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import Ajv from 'ajv';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(__dirname, '../..');

/** Parses the YAML subset our config uses (maps, lists, scalars) — enough to hand it to the real schema. */
async function loadYaml(file: string): Promise<unknown> {
  const { load } = (await import('js-yaml')) as { load: (text: string) => unknown };
  return load(readFileSync(file, 'utf8'));
}

describe('electron-builder.yml', () => {
  it("validates against electron-builder's own schema (app-builder-lib/scheme.json)", async () => {
    const schema = JSON.parse(readFileSync(require.resolve('app-builder-lib/scheme.json'), 'utf8'));
    const ajv = new Ajv({ allErrors: true });
    const validate = ajv.compile(schema);
    const config = await loadYaml(path.join(ROOT, 'electron-builder.yml'));
    const ok = validate(config);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(ok).toBe(true);
    // The schema catches real mistakes: an unknown key and a wrong type fail.
    expect(validate({ ...(config as object), asarUnpackk: [] })).toBe(false);
    expect(validate({ ...(config as object), asar: 'yes' })).toBe(false);
  });

  it('packages what the app needs at run time', async () => {
    const config = (await loadYaml(path.join(ROOT, 'electron-builder.yml'))) as { files: string[]; asarUnpack: string[]; extraMetadata: { main: string } };
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { main: string };
    expect(config.extraMetadata.main).toBe(pkg.main);
    expect(config.files).toEqual(expect.arrayContaining(['dist/renderer/**', 'dist/electron/**']));
    expect(config.asarUnpack.some((p) => p.includes('better-sqlite3'))).toBe(true);
    expect(config.asarUnpack.some((p) => p.includes('tfjs-backend-wasm') && p.endsWith('.wasm'))).toBe(true);
  });
});
