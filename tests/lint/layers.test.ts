import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const eslint = new ESLint({ cwd: process.cwd() });

async function importErrors(filePath: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('import layers (DESIGN.md §2)', () => {
  it('src-shared may not import node built-ins, electron or our other folders', async () => {
    expect(await importErrors('src-shared/x.ts', "import fs from 'node:fs';\nexport const a = fs;")).toHaveLength(1);
    expect(await importErrors('src-shared/x.ts', "import path from 'path';\nexport const a = path;")).toHaveLength(1);
    expect(await importErrors('src-shared/x.ts', "import { app } from 'electron';\nexport const a = app;")).toHaveLength(1);
    expect(await importErrors('src-shared/x.ts', "import { a } from '../src-main/engine/model';\nexport const b = a;")).toHaveLength(1);
    expect(await importErrors('src-shared/x.ts', "import { a } from '../src-renderer/lib/x';\nexport const b = a;")).toHaveLength(1);
    expect(await importErrors('src-shared/x.ts', "import { a } from './errors';\nexport const b = a;")).toEqual([]);
    // Its own files may share names with folders elsewhere (src-shared/hardware.ts).
    expect(await importErrors('src-shared/x.ts', "import type { A } from './hardware';\nexport type B = A;")).toEqual([]);
  });

  it('only src-main/electron may import electron', async () => {
    expect(await importErrors('src-main/cli/x.ts', "import { app } from 'electron';\nexport const a = app;")).toHaveLength(1);
    expect(await importErrors('src-main/engine/x.ts', "import { app } from 'electron';\nexport const a = app;")).toHaveLength(1);
    expect(await importErrors('src-main/electron/x.ts', "import { app } from 'electron';\nexport const a = app;")).toEqual([]);
  });

  it('engine, data, store and hardware never import services, server, cli or electron', async () => {
    expect(await importErrors('src-main/engine/x.ts', "import { a } from '../cli/args';\nexport const b = a;")).toHaveLength(1);
    expect(await importErrors('src-main/data/x.ts', "import { a } from '../services/api';\nexport const b = a;")).toHaveLength(1);
    expect(await importErrors('src-main/hardware/x.ts', "import { a } from '../server/http';\nexport const b = a;")).toHaveLength(1);
    expect(await importErrors('src-main/engine/x.ts', "import { a } from '../data/npy';\nexport const b = a;")).toEqual([]);
    expect(await importErrors('src-main/cli/x.ts', "import { a } from '../engine/engine';\nexport const b = a;")).toEqual([]);
  });

  it("what the webgpu worker's page bundles imports no Node built-ins, and keeps its folder's rules", async () => {
    expect(await importErrors('src-main/training/worker-runtime.ts', "import fs from 'node:fs';\nexport const a = fs;")).toHaveLength(1);
    expect(await importErrors('src-main/engine/engine-core.ts', "import * as tf from '@tensorflow/tfjs';\nexport const a = tf;")).toHaveLength(1);
    expect(await importErrors('src-main/training/browser-worker.ts', "import { a } from '../services/api';\nexport const b = a;")).toHaveLength(1);
    expect(await importErrors('src-main/training/browser-worker.ts', "import { a } from '../engine/engine-core';\nexport const b = a;")).toEqual([]);
    // The Node side of the same folders may.
    expect(await importErrors('src-main/training/worker-main.ts', "import fs from 'node:fs';\nexport const a = fs;")).toEqual([]);
  });

  it('the renderer imports only src-shared and its own files', async () => {
    expect(await importErrors('src-renderer/lib/x.ts', "import { a } from '../../src-main/engine/engine';\nexport const b = a;")).toHaveLength(1);
    expect(await importErrors('src-renderer/lib/x.ts', "import os from 'node:os';\nexport const b = os;")).toHaveLength(1);
    expect(await importErrors('src-renderer/lib/x.ts', "import { a } from '../../src-shared/errors';\nexport const b = a;")).toEqual([]);
  });
});
