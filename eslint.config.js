// Import layers of DESIGN.md §2, enforced here rather than by hope (like VS Code's code-layering rule).
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';
import { parse } from 'svelte/compiler';

const NODE_BUILTINS = [...builtinModules, ...builtinModules.map((name) => `node:${name}`)];

// Matches relative imports that pass through one of our folders, e.g. '../cli/args' or '../../src-main/x'.
const ourFolder = (folders) => `^\\.\\.?/(.*/)?(${folders.join('|')})(/|$)`;

/** One no-restricted-imports config per layer: what that layer may not import, and why. */
const layer = (files, { paths = [], regexes = [], ignores = [] }) => ({
  files,
  ignores,
  rules: {
    'no-restricted-imports': [
      'error',
      {
        paths: paths.map(({ name, message }) => ({ name, message })),
        patterns: regexes.map(({ regex, message }) => ({ regex, message })),
      },
    ],
  },
});

/** Files a page bundles (the webgpu worker in a hidden window): engine-core, the worker runtime, their helpers. */
const BROWSER_SAFE = [
  'src-main/engine/{engine-core,kernel,layout,init,random,lif-host,precision,webgpu-device}.ts',
  'src-main/training/{browser-worker,browser-worker-platform,message-port-channel,worker-runtime,protocol,shared-exchange,chunk-exchange,spin-wait,weighted-sum}.ts',
];

/**
 * Lints the <script> blocks of .svelte files with the TypeScript rules, import layers included
 * (eslint-plugin-svelte is not among our dependencies). Svelte's own parser finds the blocks; the
 * rest of the file is blanked to spaces, line breaks kept, so every message and fix points at the
 * .svelte file's own line and column. The markup is checked by svelte-check (compiler warnings,
 * accessibility, and with noUnusedLocals what the script declares and nothing uses).
 */
const svelteScripts = {
  meta: { name: 'quadra/svelte-scripts' },
  preprocess(text, filename) {
    const { module, instance } = parse(text, { modern: true, filename });
    let code = text.replace(/[^\r\n]/g, ' ');
    for (const script of [module, instance]) {
      if (script) code = code.slice(0, script.content.start) + text.slice(script.content.start, script.content.end) + code.slice(script.content.end);
    }
    return [{ text: code, filename: 'script.ts' }];
  },
  postprocess: (messages) => messages.flat(),
  supportsAutofix: true,
};

const NO_ELECTRON = { name: 'electron', message: "Only src-main/electron may import 'electron' (DESIGN.md §2)." };

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'out/**', 'release/**', 'tests/fixtures/**', '.scratch/**', 'src-main/engine/simd/assembly/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  { files: ['**/*.svelte'], processor: svelteScripts },
  {
    files: ['**/*.svelte/*.ts'],
    rules: {
      // `let { … } = $props()` is how Svelte declares props (bindable ones must be `let`).
      'prefer-const': 'off',
      // Imports and functions used only by the markup look unused from the script alone: svelte-check reports the truly unused.
      '@typescript-eslint/no-unused-vars': 'off',
    },
  },
  layer(['src-shared/**'], {
    paths: [
      NO_ELECTRON,
      ...NODE_BUILTINS.map((name) => ({ name, message: 'src-shared is pure TypeScript: no Node built-ins.' })),
    ],
    // src-shared is one flat folder, so any import that climbs out of it ('../…') leaves it.
    regexes: [{ regex: '^\\.\\./', message: 'src-shared imports nothing of ours outside src-shared.' }],
  }),
  // The renderer's build config runs in Node, not in the sandboxed page.
  layer(['src-renderer/**'], {
    ignores: ['src-renderer/vite.config.ts'],
    paths: [
      NO_ELECTRON,
      ...NODE_BUILTINS.map((name) => ({ name, message: 'The renderer is sandboxed: no Node built-ins.' })),
    ],
    regexes: [{ regex: ourFolder(['src-main']), message: 'src-renderer imports only src-shared and its own files.' }],
  }),
  layer(['src-main/**'], {
    paths: [NO_ELECTRON],
    regexes: [{ regex: ourFolder(['src-renderer']), message: 'src-main never imports the renderer.' }],
  }),
  layer(['src-main/{engine,data,store,hardware,bench,training}/**'], {
    paths: [NO_ELECTRON],
    regexes: [
      { regex: ourFolder(['src-renderer']), message: 'src-main never imports the renderer.' },
      { regex: ourFolder(['services', 'server', 'cli', 'electron']), message: 'engine/data/store/hardware/bench/training never import services, server, cli or electron (DESIGN.md §2).' },
    ],
  }),
  // What the webgpu worker's page bundles (browser-worker.ts and below): the rules of its folders plus
  // no Node built-ins. After the block above, so it replaces it for these files. build.mjs's browser
  // bundle checks the same for everything they import.
  layer(BROWSER_SAFE, {
    paths: [
      NO_ELECTRON,
      ...NODE_BUILTINS.map((name) => ({ name, message: 'This file runs in a page too (the webgpu worker): no Node built-ins.' })),
      ...['@tensorflow/tfjs', 'webgpu'].map((name) => ({ name, message: 'This file runs in a page too (the webgpu worker): no Node-only packages.' })),
    ],
    regexes: [
      { regex: ourFolder(['src-renderer']), message: 'src-main never imports the renderer.' },
      { regex: ourFolder(['services', 'server', 'cli', 'electron']), message: 'engine/data/store/hardware/bench/training never import services, server, cli or electron (DESIGN.md §2).' },
    ],
  }),
  // Last, so it wins over the src-main/** block: the one folder allowed to import electron.
  layer(['src-main/electron/**'], {
    regexes: [{ regex: ourFolder(['src-renderer']), message: 'src-main never imports the renderer.' }],
  }),
);
