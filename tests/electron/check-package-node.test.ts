import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(__dirname, '../..');
const SCRIPT = path.join(ROOT, 'src-main/electron/check-package-node.mjs');

function check(...args: string[]): { status: number | null; stderr: string } {
  const run = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: run.status, stderr: run.stderr };
}

describe('check-package-node (run first by npm run package)', () => {
  it.each(['18.20.4', '20.10.0', '20.16.0', '21.7.3', '22.8.0'])('refuses Node %s with what packaging needs and what it found', (version) => {
    const { status, stderr } = check('--node-version', version);
    expect(status).toBe(1);
    expect(stderr).toContain("packaging needs Node ≥ 22.12 (electron-builder's @electron/rebuild 4.x");
    expect(stderr).toContain(`you have v${version}`);
  });

  it.each(['20.17.0', '20.20.2', '22.9.0'])('lets Node %s through with a note that @electron/rebuild does not support it', (version) => {
    const { status, stderr } = check('--node-version', version);
    expect(status).toBe(0);
    expect(stderr).toContain(`packaging on Node v${version}`);
    expect(stderr).toContain('declares Node ≥ 22.12');
  });

  it.each(['22.12.0', 'v24.1.0', '26.0.0'])('passes Node %s silently', (version) => {
    expect(check('--node-version', version)).toEqual({ status: 0, stderr: '' });
  });

  it('says so when the version cannot be read', () => {
    const { status, stderr } = check('--node-version', 'twenty');
    expect(status).toBe(2);
    expect(stderr).toContain('cannot read a Node version from "twenty"');
  });

  it("checks this process's Node without the flag: any Node package.json's engines allow can package", () => {
    expect(check().status).toBe(0);
  });

  it('is what npm run package runs first', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.package).toMatch(/^node src-main\/electron\/check-package-node\.mjs && /);
  });

  // The thresholds above come from these; an upgrade that moves them should revisit the script.
  it('matches the engines of the installed @electron/rebuild and node-gyp', () => {
    // Found as Node finds them from app-builder-lib (their exports hide package.json from require.resolve).
    const packageJson = (name: string, from: string): { file: string; engines: { node: string } } => {
      for (const dir of createRequire(from).resolve.paths(name) ?? []) {
        const file = path.join(dir, name, 'package.json');
        if (existsSync(file)) return { file, ...(JSON.parse(readFileSync(file, 'utf8')) as { engines: { node: string } }) };
      }
      throw new Error(`${name} is not installed`);
    };
    const rebuild = packageJson('@electron/rebuild', require.resolve('app-builder-lib/package.json'));
    const nodeGyp = packageJson('node-gyp', rebuild.file);
    expect(rebuild.engines.node).toBe('>=22.12.0');
    expect(nodeGyp.engines.node).toBe('^20.17.0 || >=22.9.0');
  });
});
